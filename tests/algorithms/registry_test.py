"""The algorithm registry: names, owned settings, builders, batch layout."""

import collections
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed import models
from tff_perfed import templates
from tff_perfed import validation
from tff_perfed.algorithms import fedavg
from tff_perfed.algorithms import per_fedavg
from tff_perfed.algorithms import registry


@dataclasses.dataclass
class Run:
  """The batch sizes the registry reads (a stand-in for RunConfig)."""
  batch_size: int = 4
  batch_size_prime: int = 3
  batch_size_double_prime: int = 2


RUN_FIELDS = {'local_steps': 2, 'noise_seed': 0}


def test_unknown_algorithm_fails_listing_the_known_ones():
  with pytest.raises(validation.ArgumentValueError) as error:
    registry.get('fedprox')
  assert "'fedprox'" in str(error.value)
  for name in registry.names():
    assert name in str(error.value)


def test_settings_become_each_algorithms_hyperparameters():
  assert registry.get('per_fedavg').params(
      {'inner_learning_rate': 0.05, 'hessian_mode': per_fedavg.HessianMode.EXACT},
      RUN_FIELDS) == per_fedavg.PerFedAvgParams(
          inner_learning_rate=0.05, outer_learning_rate=0.05,
          hessian_mode=per_fedavg.HessianMode.EXACT, local_steps=2)
  # FedAvg has no local_steps: the run's is not passed.
  assert registry.get('fedavg').params({}, RUN_FIELDS) == (
      fedavg.FedAvgParams(client_learning_rate=0.05))


def test_every_setting_is_a_documented_field_with_a_default():
  for algorithm in registry.ALGORITHMS.values():
    fields = {f.name: f for f in dataclasses.fields(algorithm.params_type)}
    settings = algorithm.settings()
    assert [s.field for s in settings] == [
        name for name in fields if name not in registry.RUN_FIELDS]
    for setting in settings:
      assert setting.name == f'{algorithm.name}.{setting.field}'
      assert setting.default == fields[setting.field].default
      assert len(setting.help) > 10, setting.name
    # The defaults are valid hyperparameters.
    algorithm.params({}, RUN_FIELDS)


def test_a_docstring_continuation_line_joins_its_settings_help():
  (inner,) = [s for s in registry.get('per_fedavg').settings()
              if s.field == 'inner_learning_rate']
  assert inner.help.startswith('alpha >= 0, the adaptation step of eq. (4).')
  assert inner.help.endswith('(a warning says so).')


def test_invalid_setting_is_named_by_algorithm_and_field():
  with pytest.raises(validation.ArgumentValueError) as error:
    registry.get('per_fedavg').params({'inner_learning_rate': -1.0},
                                      RUN_FIELDS)
  assert error.value.argument == 'per_fedavg.inner_learning_rate'
  assert '-1.0' in str(error.value)
  with pytest.raises(validation.ArgumentValueError) as error:
    registry.get('per_fedavg').params({}, dict(RUN_FIELDS, local_steps=0))
  assert error.value.argument == 'local_steps'  # The run's own setting.


def test_alpha_zero_is_accepted_as_the_library_documents():
  params = registry.get('per_fedavg').params({'inner_learning_rate': 0.0},
                                             RUN_FIELDS)
  assert params.inner_learning_rate == 0.0


def test_batch_layout_is_what_one_local_step_reads():
  assert registry.get('fedavg').batch_sizes(Run()) == (4,)
  assert registry.get('per_fedavg').batch_sizes(Run()) == (4, 3, 2)


@pytest.mark.parametrize('name', registry.names())
def test_every_algorithm_builds_and_trains_from_run_settings(name):
  algorithm = registry.get(name)
  build = (models.build_mlp_split if algorithm.uses_split_model else
           models.build_mlp)
  model_fn = lambda: build(input_dim=3, num_classes=2, seed=0,
                           hidden_units=(4,))
  process = algorithm.build_process(model_fn,
                                    algorithm.params({}, RUN_FIELDS))
  rng = np.random.default_rng(0)
  sizes = algorithm.batch_sizes(Run()) * 2
  batches = [collections.OrderedDict(
      x=rng.normal(size=(b, 3)).astype(np.float32),
      y=rng.integers(0, 2, b).astype(np.int32)) for b in sizes]
  dataset = tf.data.Dataset.from_tensors(batches[0])
  for batch in batches[1:]:  # Batches of different sizes, in order.
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
  state = process.initialize()
  before = process.get_model_weights(state).trainable
  if isinstance(process, templates.ClientStateLearningProcess):
    first = process.initial_client_state(process.get_model_weights(state))
    state = process.next(state, [dataset], [first]).state
  else:
    state = process.next(state, [dataset]).state
  after = process.get_model_weights(state)
  assert any(not np.allclose(b, a) for b, a in zip(before, after.trainable))


def test_afml_reads_its_own_settings_and_evaluates_the_head_on_the_encoder():
  params = registry.get('afml').params({'inner_learning_rate': 0.03},
                                       RUN_FIELDS)
  assert (params.inner_learning_rate, params.alpha, params.beta) == (
      0.03, 1e-3, 1e-6)
  split_model = models.build_mlp_split(input_dim=3, num_classes=2, seed=0,
                                       hidden_units=(4,))
  evaluated = registry.get('afml').evaluation_model(split_model)
  assert len(evaluated.initial_weights[0]) == len(
      split_model.head.initial_weights[0])
  whole = models.build_mlp(input_dim=3, num_classes=2, seed=0,
                           hidden_units=(4,))
  assert registry.get('fedavg').evaluation_model(whole) is whole
