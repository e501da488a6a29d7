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
    (dict(alpha=-0.1), 'alpha'),
    (dict(beta=0.0), 'beta'),
    (dict(hessian_free_delta=-1.0), 'hessian_free_delta'),
    (dict(hessian_mode='exact'), 'hessian_mode'),
    (dict(local_steps=0), 'local_steps'),
])
def test_invalid_settings_name_the_setting(settings, argument):
  with pytest.raises(validation.ArgumentError) as error:
    RunConfig(**settings)
  assert error.value.argument == argument
  assert f'`{argument}` must be' in str(error.value)


def test_unknown_setting_names_are_rejected():
  with pytest.raises(validation.ArgumentValueError, match='lerning_rate'):
    RunConfig.from_settings({'lerning_rate': 0.1})


def test_every_seed_kind_is_derived_from_the_seed_unless_pinned():
  config = RunConfig(seed=3)
  seeds = {kind: config.seed_for(kind) for kind in SeedKind}
  assert len(set(seeds.values())) == len(SeedKind)  # Independent streams.
  assert seeds[SeedKind.MODEL] == client_datasets.derive_seed(3, 'model')
  pinned = config.replace(partition_seed=11)
  assert pinned.seed_for(SeedKind.PARTITION) == 11
  assert pinned.seed_for(SeedKind.MODEL) == seeds[SeedKind.MODEL]


def test_resume_may_change_only_what_does_not_alter_the_computation():
  config = RunConfig(hessian_mode=meta_gradients.HessianMode.EXACT)
  previous = config.to_json()
  assert previous['hessian_mode'] == 'exact'
  longer = config.replace(rounds=500, eval_every=5, data_dir='/data',
                          rounds_per_checkpoint=7, output_dir='elsewhere')
  assert not longer.changed_settings(previous)
  assert config.replace(alpha=0.03, seed=2).changed_settings(previous) == [
      'alpha', 'seed']


def test_settings_missing_from_an_older_run_count_as_their_defaults():
  previous = RunConfig().to_json()
  del previous['adaptation_draws']
  assert not RunConfig().changed_settings(previous)
  assert RunConfig(adaptation_draws=4).changed_settings(previous) == [
      'adaptation_draws']


def test_every_field_is_a_setting_with_a_default():
  for field in dataclasses.fields(RunConfig):
    assert field.default is not dataclasses.MISSING, field.name


def test_strict_data_is_a_resumable_bool_setting():
  assert not RunConfig(strict_data=True).changed_settings(
      RunConfig().to_json())
  with pytest.raises(TypeError, match='strict_data'):
    RunConfig(strict_data='yes')
