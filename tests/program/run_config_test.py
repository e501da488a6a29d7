"""RunConfig: validation in one place, seeds, and what a resume may change."""

import dataclasses

import pytest

from tff_perfed.data_utils import client_datasets
from tff_perfed import validation
from tff_perfed.algorithms import meta_gradients
from tff_perfed.program import run_config

RunConfig = run_config.RunConfig
SeedKind = run_config.SeedKind


def test_defaults_are_valid_and_resolve_the_batch_sizes():
  config = RunConfig(batch_size=7)
  assert (config.batch_size_prime, config.batch_size_double_prime) == (7, 7)
  assert config.batch_sizes() == (7, 7, 7)
  assert config.replace(algorithm='fedavg').batch_sizes() == (7,)


@pytest.mark.parametrize('settings,argument', [
    (dict(algorithm='fedprox'), 'algorithm'),
    (dict(dataset='mnist_fashion'), 'dataset'),
    (dict(rounds=0), 'rounds'),
    (dict(rounds=2.5), 'rounds'),
    (dict(clients_per_round=True), 'clients_per_round'),
    (dict(batch_size_prime=0), 'batch_size_prime'),
    (dict(personalization_steps=-1), 'personalization_steps'),
    (dict(adaptation_draws=0), 'adaptation_draws'),
    (dict(eval_every=0), 'eval_every'),
    (dict(rounds_per_checkpoint=0), 'rounds_per_checkpoint'),
    (dict(seed=-1), 'seed'),
    (dict(sampling_seed=-1), 'sampling_seed'),
    (dict(output_dir=''), 'output_dir'),
    # Checked by the algorithm's and the evaluation's own dataclasses:
    (dict(personalization_learning_rate=-0.1),
     'personalization_learning_rate'),
    (dict(local_steps=0), 'local_steps'),
    ({'per_fedavg.inner_learning_rate': -0.1},
     'per_fedavg.inner_learning_rate'),
    ({'fedavg.client_learning_rate': 0.0}, 'fedavg.client_learning_rate'),
    ({'per_fedavg.hessian_free_delta': -1.0},
     'per_fedavg.hessian_free_delta'),
    ({'per_fedavg.hessian_mode': 'second_order'}, 'per_fedavg.hessian_mode'),
    # Another algorithm's settings are checked too, though unused.
    ({'afml.beta': -1.0, 'algorithm': 'fedavg'}, 'afml.beta'),
])
def test_invalid_settings_name_the_setting(settings, argument):
  with pytest.raises(validation.ArgumentError) as error:
    RunConfig().replace(**settings)
  assert error.value.argument == argument
  assert f'`{argument}` must be' in str(error.value)


def test_unknown_setting_names_are_rejected_listing_the_known_ones():
  with pytest.raises(validation.ArgumentValueError, match='lerning_rate'):
    RunConfig.from_settings({'lerning_rate': 0.1})
  with pytest.raises(validation.ArgumentValueError) as error:
    RunConfig.from_settings({'afml.lerning_rate': 0.1})
  assert "afml's settings: afml.inner_learning_rate" in str(error.value)
  with pytest.raises(validation.ArgumentValueError, match='per_fedavg, afml'):
    RunConfig(algorithm_settings={'fedprox.mu': 0.1})
  # The run gives local_steps; it is no algorithm's own setting.
  with pytest.raises(validation.ArgumentValueError, match='per_fedavg.local'):
    RunConfig.from_settings({'per_fedavg.local_steps': 2})


def test_settings_saved_before_algorithms_owned_them_still_load():
  """tff_perfed 0.1's names, as flags.json and old flagfiles have them."""
  old = {'algorithm': 'per_fedavg', 'alpha': 0.03, 'beta': 0.07,
         'hessian_mode': 'exact', 'afml_alpha': 0.01}
  config = RunConfig.from_settings(old)
  params = config.algorithm_params()
  assert (params.inner_learning_rate, params.outer_learning_rate,
          params.hessian_mode) == (0.03, 0.07,
                                   meta_gradients.HessianMode.EXACT)
  assert config.personalization_learning_rate == 0.03  # alpha's third use.
  assert config.params_for('afml').alpha == 0.01
  assert config.params_for('fedavg').client_learning_rate == 0.07
  # A run directory written then resumes: no setting changed.
  saved_then = {name: value for name, value in RunConfig().to_json().items()
                if '.' not in name and name != 'personalization_learning_rate'}
  assert not config.changed_settings(dict(saved_then, **old))
  assert config.replace(**{'per_fedavg.outer_learning_rate': 0.05}
                       ).changed_settings(dict(saved_then, **old)) == [
                           'per_fedavg.outer_learning_rate']


def test_only_the_runs_own_algorithm_settings_are_saved():
  config = RunConfig(algorithm='fedavg', algorithm_settings={
      'afml.beta': 0.5, 'fedavg.client_learning_rate': 0.2})
  saved = config.to_json()
  assert saved['fedavg.client_learning_rate'] == 0.2
  assert saved['fedavg.client_weighting'] == 1  # Defaults are saved too.
  assert not any(name.startswith('afml.') for name in saved)
  assert 'algorithm_settings' not in saved
  assert RunConfig.from_settings(saved).to_json() == saved
  # Changing another algorithm's setting does not change the run.
  assert not config.replace(**{'afml.beta': 0.1}).changed_settings(saved)


def test_every_seed_kind_is_derived_from_the_seed_unless_pinned():
  config = RunConfig(seed=3)
  seeds = {kind: config.seed_for(kind) for kind in SeedKind}
  assert len(set(seeds.values())) == len(SeedKind)  # Independent streams.
  assert seeds[SeedKind.MODEL] == client_datasets.derive_seed(3, 'model')
  pinned = config.replace(partition_seed=11)
  assert pinned.seed_for(SeedKind.PARTITION) == 11
  assert pinned.seed_for(SeedKind.MODEL) == seeds[SeedKind.MODEL]


def test_resume_may_change_only_what_does_not_alter_the_computation():
  config = RunConfig().replace(
      **{'per_fedavg.hessian_mode': meta_gradients.HessianMode.EXACT})
  previous = config.to_json()
  assert previous['per_fedavg.hessian_mode'] == 'exact'
  longer = config.replace(rounds=500, eval_every=5, data_dir='/data',
                          rounds_per_checkpoint=7, output_dir='elsewhere')
  assert not longer.changed_settings(previous)
  assert config.replace(**{'per_fedavg.inner_learning_rate': 0.03},
                        seed=2).changed_settings(previous) == [
                            'per_fedavg.inner_learning_rate', 'seed']


def test_settings_missing_from_an_older_run_count_as_their_defaults():
  previous = RunConfig().to_json()
  del previous['adaptation_draws']
  assert not RunConfig().changed_settings(previous)
  assert RunConfig(adaptation_draws=4).changed_settings(previous) == [
      'adaptation_draws']


def test_every_field_is_a_setting_with_a_default():
  for field in dataclasses.fields(RunConfig):
    assert (field.default is not dataclasses.MISSING or
            field.default_factory is not dataclasses.MISSING), field.name


def test_strict_data_is_a_resumable_bool_setting():
  assert not RunConfig(strict_data=True).changed_settings(
      RunConfig().to_json())
  with pytest.raises(TypeError, match='strict_data'):
    RunConfig(strict_data='yes')
