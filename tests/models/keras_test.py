"""Keras models in Per-FedAvg and personalization, against the built-in MLP.

A Keras `Sequential` of ELU `Dense` layers computes the same function as
`models.build_mlp` when given the same weights, so every result of the
algorithms on it (trained weights, train metrics, personalized scores) must
equal the built-in model's, whose own results are verified by hand and
against NumPy in `tests/algorithms` and `tests/evaluation`.

Models converted from Keras only run in graph mode (inside TFF computations
or a `tf.Graph`), never eagerly.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms.meta_gradients import HessianMode

DIM, HIDDEN, CLASSES, BATCH = 4, (6, 5), 3, 5
SEED = 3


def builtin_mlp():
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=SEED,
                          hidden_units=HIDDEN)


def keras_mlp():
  """The MLP in Keras, holding exactly the built-in MLP's initial weights."""
  keras_model = tf.keras.Sequential(
      [tf.keras.Input(shape=(DIM,))] +
      [tf.keras.layers.Dense(units, activation='elu') for units in HIDDEN] +
      [tf.keras.layers.Dense(CLASSES)])
  # Keras orders the weights (kernel, bias) per layer, like build_mlp.
  keras_model.set_weights(list(builtin_mlp().initial_weights[0]))
  return keras_model


def from_keras_mlp():
  return models.from_keras(keras_mlp(), input_spec=builtin_mlp().input_spec)


def raw_keras_mlp():
  """`functional_model_from_keras` with Keras' own loss and metrics."""
  return tff.learning.models.functional_model_from_keras(
      keras_mlp(),
      loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      input_spec=builtin_mlp().input_spec,
      metrics_constructor=lambda: collections.OrderedDict(
          accuracy=tf.keras.metrics.SparseCategoricalAccuracy(),
          loss=tf.keras.metrics.SparseCategoricalCrossentropy(
              from_logits=True),
          num_examples=tff.learning.metrics.NumExamplesCounter()))


def random_client_data(rng, num_batches):
  x = rng.normal(size=(num_batches * BATCH, DIM)).astype(np.float32)
  y = rng.integers(0, CLASSES, size=num_batches * BATCH).astype(np.int32)
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(x=x, y=y)).batch(BATCH)


def one_round(model_fn, mode, client_data):
  process = tff_perfed.build_per_fedavg(
      model_fn, inner_learning_rate=0.05, outer_learning_rate=0.2,
      hessian_mode=mode, local_steps=2)
  state = process.initialize()
  output = process.next(state, client_data)
  initial = [np.asarray(w) for w in process.get_model_weights(state).trainable]
  trained = [
      np.asarray(w) for w in process.get_model_weights(output.state).trainable
  ]
  return initial, trained, output.metrics['client_work']['train']


@pytest.mark.parametrize('mode', list(HessianMode))
def test_keras_mlp_round_equals_builtin_mlp_round(mode):
  rng = np.random.default_rng(0)
  # Two clients with data for 2 local steps of 3 batches each.
  client_data = [random_client_data(rng, 6), random_client_data(rng, 6)]
  keras_initial, keras_trained, keras_metrics = one_round(
      from_keras_mlp, mode, client_data)
  builtin_initial, builtin_trained, builtin_metrics = one_round(
      builtin_mlp, mode, client_data)
  for k, b in zip(keras_initial, builtin_initial):
    np.testing.assert_array_equal(k, b)
  # Keras' Dense runs the same float32 ops as build_mlp, so the rounds agree
  # to round-off in every mode (measured: at most 3e-8, for EXACT), even
  # HESSIAN_FREE's gradient difference divided by 2 * delta.
  for k, b, initial in zip(keras_trained, builtin_trained, builtin_initial):
    assert not np.allclose(b, initial)  # The round really trained.
    np.testing.assert_allclose(k, b, atol=1e-6)
  for name in ('loss', 'accuracy'):
    np.testing.assert_allclose(keras_metrics[name], builtin_metrics[name],
                               rtol=1e-6)
  assert keras_metrics['num_examples'] == builtin_metrics['num_examples'] == (
      2 * 2 * BATCH)  # The D batch of each of 2 steps on 2 clients.


def test_raw_functional_model_from_keras_trains_and_evaluates():
  rng = np.random.default_rng(1)
  # The raw model's loss is Keras' SparseCategoricalCrossentropy with the
  # default SUM_OVER_BATCH_SIZE reduction, i.e. the batch-mean cross-entropy
  # of the built-in loss, so an EXACT Per-FedAvg round must agree too.
  client_data = [random_client_data(rng, 6), random_client_data(rng, 3)]
  _, raw_trained, raw_metrics = one_round(raw_keras_mlp, HessianMode.EXACT,
                                          client_data)
  _, builtin_trained, builtin_metrics = one_round(
      builtin_mlp, HessianMode.EXACT, client_data)
  for r, b in zip(raw_trained, builtin_trained):
    np.testing.assert_allclose(r, b, atol=1e-6)
  # Keras' metrics are per-example means over all batches (total / count),
  # as are the built-in ones; NumExamplesCounter counts int64 examples where
  # the built-in counter is float32, so compare values, not dtypes.
  for name in ('loss', 'accuracy', 'num_examples'):
    np.testing.assert_allclose(raw_metrics[name], builtin_metrics[name],
                               rtol=1e-6)

  steps, alpha = 2, 0.3
  train = [random_client_data(rng, 2), random_client_data(rng, 1)]
  test = [random_client_data(rng, 2), random_client_data(rng, 3)]
  results = {}
  for name, model in (('raw', raw_keras_mlp()), ('builtin', builtin_mlp())):
    evaluate = tff_perfed.build_personalization_eval(
        model, personalization_steps=steps, learning_rate=alpha)
    weights = learning_utils.build_initial_weights_computation(model)()
    results[name] = evaluate(weights, train, test)
  for raw, builtin in zip(results['raw'], results['builtin']):
    # Both models name their finalized metrics accuracy, loss, num_examples
    # (the raw model after its metrics_constructor's keys).
    assert set(raw) == set(builtin) == {'accuracy', 'loss',
                                        'num_test_examples'}
    for name in ('accuracy', 'loss'):
      assert raw[name].shape == (steps + 1,)
      np.testing.assert_allclose(raw[name], builtin[name], rtol=1e-6,
                                 atol=1e-7)
    assert raw['num_test_examples'] == builtin['num_test_examples']
  # The second client has one train batch: its last step keeps the weights.
  np.testing.assert_array_equal(results['raw'][1]['loss'][1],
                                results['raw'][1]['loss'][2])
  assert not np.allclose(results['raw'][0]['loss'][0],
                         results['raw'][0]['loss'][1])


def test_from_keras_masks_padding_like_the_builtin_loss():
  length, vocab, features = 4, 5, 3
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, length, features)).astype(np.float32)
  y = np.array([[1, 4, 0, 0], [2, 0, 3, 1]], np.int32)  # 0 is the pad id.
  keras_model = tf.keras.Sequential(
      [tf.keras.Input(shape=(length, features)),
       tf.keras.layers.Dense(vocab)])
  kernel, bias = keras_model.get_weights()
  bias = rng.normal(size=bias.shape).astype(np.float32)
  keras_model.set_weights([kernel, bias])
  model = models.from_keras(
      keras_model,
      input_spec=collections.OrderedDict(
          x=tf.TensorSpec([None, length, features], tf.float32),
          y=tf.TensorSpec([None, length], tf.int32)),
      mask_padding=True)

  # The converted model refuses to run eagerly: evaluate it in a graph.
  with tf.Graph().as_default():
    logits = model.predict_on_batch(model.initial_weights, tf.constant(x))
    loss = model.loss(logits, tf.constant(y))
    metrics = model.finalize_metrics(model.update_metrics_state(
        model.initialize_metrics_state(), labels=tf.constant(y),
        batch_output=tff.learning.models.BatchOutput(predictions=logits)))
    with tf.compat.v1.Session() as session:
      loss, metrics = session.run((loss, metrics))

  z = x.astype(np.float64) @ kernel + bias
  log_p = z - z.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  per_token = -np.take_along_axis(log_p, y[..., None], -1)[..., 0]
  real = y != models.PAD_TOKEN
  np.testing.assert_allclose(loss, per_token[real].mean(), rtol=1e-6)
  assert not np.isclose(loss, per_token.mean())  # Padding would change it.
  np.testing.assert_allclose(metrics['loss'], per_token[real].mean(),
                             rtol=1e-6)
  assert metrics['num_examples'] == real.sum()
