"""Per-FedAvg learning process: reductions, a hand-computed round, checks."""

import collections
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms.meta_gradients import HessianMode

DIM, CLASSES, BATCH = 4, 3, 5


def model_fn():
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=7,
                          hidden_units=(6,))


def random_batches(rng, count, nan=False):
  x = rng.normal(size=(count, BATCH, DIM)).astype(np.float32)
  if nan:
    x[:] = np.nan
  y = rng.integers(0, CLASSES, size=(count, BATCH)).astype(np.int32)
  return [collections.OrderedDict(x=x[i], y=y[i]) for i in range(count)]


def as_dataset(batches):
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(
          x=np.stack([b['x'] for b in batches]),
          y=np.stack([b['y'] for b in batches])))


def trainable(process, state):
  return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def local_training(weights, batches, steps, alpha, beta, mode):
  """Eq. (8) by hand with the (separately verified) pure meta-gradient."""
  loss_fn = learning_utils.batch_loss_fn(model_fn())
  weights = tuple(tf.constant(w) for w in weights)
  for step in range(steps):
    triple = tuple({k: tf.constant(v) for k, v in b.items()}
                   for b in batches[3 * step:3 * step + 3])
    if len(triple) < 3:
      break
    g = meta_gradients.per_fedavg_meta_gradient(
        loss_fn, weights, triple, inner_learning_rate=alpha,
        hessian_mode=mode)
    weights = meta_gradients.sgd_step(weights, g, beta)
  return [w.numpy() for w in weights]


@pytest.mark.parametrize('mode', [HessianMode.FIRST_ORDER, HessianMode.EXACT])
def test_zero_inner_rate_equals_tff_fedavg_on_the_d_prime_batches(mode):
  rng = np.random.default_rng(0)
  beta, rounds, steps = 0.1, 2, 2
  per_fedavg = tff_perfed.build_per_fedavg(
      model_fn, inner_learning_rate=0.0, outer_learning_rate=beta,
      hessian_mode=mode, local_steps=steps)
  fedavg = tff_perfed.build_fedavg(model_fn, client_learning_rate=beta)
  per_state, fed_state = per_fedavg.initialize(), fedavg.initialize()
  for _ in range(rounds):
    per_data, fed_data = [], []
    for _ in range(3):
      batches = random_batches(rng, 3 * steps)
      per_data.append(as_dataset(batches))
      fed_data.append(as_dataset(batches[1::3]))  # The D' batches only.
    per_state = per_fedavg.next(per_state, per_data).state
    fed_state = fedavg.next(fed_state, fed_data).state
  for p, f in zip(trainable(per_fedavg, per_state),
                  trainable(fedavg, fed_state)):
    np.testing.assert_allclose(p, f, atol=1e-6)


@pytest.mark.parametrize('mode', list(HessianMode))
def test_one_round_is_the_uniform_mean_of_local_meta_steps(mode):
  rng = np.random.default_rng(1)
  alpha, beta, steps = 0.05, 0.2, 2
  process = tff_perfed.build_per_fedavg(
      model_fn, inner_learning_rate=alpha, outer_learning_rate=beta,
      hessian_mode=mode, local_steps=steps)
  state = process.initialize()
  initial = trainable(process, state)
  # The second client has data for one step only and stops early.
  client_batches = [random_batches(rng, 6), random_batches(rng, 4)]
  output = process.next(state, [as_dataset(b) for b in client_batches])
  expected = [
      local_training(initial, b, steps, alpha, beta, mode)
      for b in client_batches
  ]
  for actual, *locals_ in zip(trainable(process, output.state), *expected):
    np.testing.assert_allclose(actual, np.mean(locals_, axis=0), atol=2e-6)
  train_metrics = output.metrics['client_work']['train']
  assert train_metrics['num_examples'] == 3 * BATCH  # D of 2 + 1 steps.


def test_non_finite_client_is_zeroed_counted_and_excluded():
  rng = np.random.default_rng(2)
  process = tff_perfed.build_per_fedavg(
      model_fn, inner_learning_rate=0.05, outer_learning_rate=0.2)
  state = process.initialize()
  initial = trainable(process, state)
  good = random_batches(rng, 3)
  output = process.next(
      state, [as_dataset(good), as_dataset(random_batches(rng, 3, nan=True))])
  assert output.metrics['client_work']['num_non_finite_updates'] == 1
  expected = local_training(initial, good, 1, 0.05, 0.2,
                            HessianMode.FIRST_ORDER)
  for actual, want in zip(trainable(process, output.state), expected):
    np.testing.assert_allclose(actual, want, atol=2e-6)


def test_type_signatures_follow_tff_learning_process_conventions():
  process = tff_perfed.build_per_fedavg(
      model_fn, inner_learning_rate=0.1, outer_learning_rate=0.1)
  model = model_fn()
  assert isinstance(process, tff.learning.templates.LearningProcess)
  state_type = process.initialize.type_signature.result
  assert state_type.placement is tff.SERVER
  weights_type = state_type.member.global_model_weights
  assert [t.shape for t in weights_type.trainable] == [
      tuple(np.shape(w)) for w in model.initial_weights[0]]
  data_type = process.next.type_signature.parameter[1]
  assert data_type.placement is tff.CLIENTS
  assert data_type.member == tff.SequenceType(
      tff.types.tensorflow_to_type(model.input_spec))
  metrics_type = process.next.type_signature.result.metrics.member
  assert set(tff.structure.name_list(metrics_type.client_work.train)) == {
      'loss', 'accuracy', 'num_examples'}
  assert 'num_non_finite_updates' in tff.structure.name_list(
      metrics_type.client_work)


@pytest.mark.parametrize('kwargs,error,name', [
    (dict(outer_learning_rate=0.0), ValueError, 'outer_learning_rate'),
    (dict(inner_learning_rate=-0.1), ValueError, 'inner_learning_rate'),
    (dict(hessian_mode='exact'), TypeError, 'hessian_mode'),
    (dict(local_steps=0), ValueError, 'local_steps'),
    (dict(hessian_free_delta=0.0), ValueError, 'hessian_free_delta'),
    (dict(client_weighting='uniform'), TypeError, 'client_weighting'),
    (dict(model_aggregator=tff.aggregators.SumFactory()), TypeError,
     'model_aggregator'),
])
def test_invalid_arguments_are_rejected_naming_the_argument(kwargs, error,
                                                            name):
  arguments = dict(inner_learning_rate=0.1, outer_learning_rate=0.1)
  arguments.update(kwargs)
  with pytest.raises(error, match=name):
    tff_perfed.build_per_fedavg(model_fn, **arguments)


def test_model_fn_must_return_a_functional_model():
  with pytest.raises(TypeError, match='model_fn'):
    tff_perfed.build_per_fedavg(lambda: object(), inner_learning_rate=0.1,
                                outer_learning_rate=0.1)


def test_degenerate_settings_log_a_warning(caplog):
  with caplog.at_level(logging.WARNING):
    tff_perfed.build_per_fedavg(
        model_fn, inner_learning_rate=0.0, outer_learning_rate=0.1,
        hessian_mode=HessianMode.HESSIAN_FREE, hessian_free_delta=1e-7)
  assert 'reduces to FedAvg' in caplog.text
  assert 'round-off' in caplog.text
