"""FedRep and FedPer on a bilinear least-squares model, against float64.

Body z = x B (a linear `GaussianEncoder`, used at its mean), head y = z h,
loss 1/(2n) ||x B h - y||^2, on the clients of `least_squares`. Gradients:
grad_h = B^T x^T r / n and grad_B = x^T r h^T / n, r = x B h - y.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed import validation
from tff_perfed.algorithms import personal_heads
import least_squares

CLIENTS, DIM = least_squares.CLIENTS, least_squares.DIM
RANK = 2
B0 = np.random.default_rng(11).normal(size=(DIM, RANK)).astype(np.float32)
H0 = np.random.default_rng(12).normal(size=(RANK, 1)).astype(np.float32)


def body_fn():
  return models.GaussianEncoder(
      initial_weights=(B0,),
      encode=lambda theta, x: (tf.matmul(x, theta[0]),
                               tf.zeros([tf.shape(x)[0], RANK])),
      input_spec=tf.TensorSpec([None, DIM], tf.float32))


def head_fn():
  @tf.function
  def predict_on_batch(weights, z, training=True):
    del training
    (h,), _ = weights
    return tf.matmul(z, h)

  @tf.function
  def loss(output, label, sample_weight=None):
    del sample_weight
    return 0.5 * tf.reduce_mean(tf.square(output - label))

  return tff.learning.models.FunctionalModel(
      initial_weights=((H0,), ()), predict_on_batch_fn=predict_on_batch,
      loss_fn=loss, input_spec=collections.OrderedDict(
          x=tf.TensorSpec([None, RANK], tf.float32),
          y=tf.TensorSpec([None, 1], tf.float32)))


def gradients(b, h, x, y):
  r = x @ b @ h - y
  return x.T @ r @ h.T / len(x), b.T @ x.T @ r / len(x)  # (grad_B, grad_h)


def run(process, arrays, rounds, heads=None):
  datasets = [least_squares.full_batch(x, y) for x, y in arrays]
  state = process.initialize()
  first = process.initial_client_state(process.get_model_weights(state))
  states = [first] * CLIENTS if heads is None else [
      (h.astype(np.float32),) for h in heads]
  for _ in range(rounds):
    state, states, _ = process.next(state, datasets, states)
  return state, states


def test_one_fedrep_round_trains_the_head_then_the_body_by_hand():
  arrays = least_squares.client_arrays(13)
  lr, head_steps, body_steps = 0.05, 3, 2
  rng = np.random.default_rng(14)
  heads = [rng.normal(size=(RANK, 1)) for _ in range(CLIENTS)]
  process = tff_perfed.build_fedrep(body_fn, head_fn, learning_rate=lr,
                                    head_steps=head_steps,
                                    body_steps=body_steps)
  state, states = run(process, arrays, 1, heads)
  bodies = []
  for i, (x, y) in enumerate(arrays):
    b, h = B0.astype(np.float64), heads[i]
    for _ in range(head_steps):
      h = h - lr * gradients(b, h, x, y)[1]
    for _ in range(body_steps):
      b = b - lr * gradients(b, h, x, y)[0]
    bodies.append(b)
    np.testing.assert_allclose(states[i][0], h, rtol=1e-5, atol=1e-6)
  global_weights = process.get_model_weights(state).trainable
  np.testing.assert_allclose(global_weights[0], np.mean(bodies, axis=0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(global_weights[1], H0)  # Never averaged.
  mine = process.personalized_weights(state, states[2]).trainable
  np.testing.assert_allclose(mine[0], global_weights[0])
  np.testing.assert_allclose(mine[1], states[2][0])


def test_one_fedper_round_trains_body_and_head_together_by_hand():
  arrays = least_squares.client_arrays(15)
  lr, steps = 0.05, 3
  process = tff_perfed.build_fedper(body_fn, head_fn, learning_rate=lr,
                                    local_steps=steps)
  state, states = run(process, arrays, 1)
  bodies = []
  for i, (x, y) in enumerate(arrays):
    b, h = B0.astype(np.float64), H0.astype(np.float64)
    for _ in range(steps):
      grad_b, grad_h = gradients(b, h, x, y)
      b, h = b - lr * grad_b, h - lr * grad_h
    bodies.append(b)
    np.testing.assert_allclose(states[i][0], h, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             np.mean(bodies, axis=0), rtol=1e-5, atol=1e-6)


def test_fedrep_without_body_steps_fits_each_head_on_the_fixed_body():
  arrays = least_squares.client_arrays(16)
  b = B0.astype(np.float64)
  curvatures = [np.linalg.eigvalsh(b.T @ x.T @ x @ b / len(x))
                for x, _ in arrays]
  # Steps of 1 / (largest curvature): contraction 1 - smallest / largest.
  process = tff_perfed.build_fedrep(
      body_fn, head_fn, learning_rate=1 / max(c.max() for c in curvatures),
      head_steps=50, body_steps=0)
  state, states = run(process, arrays, 10)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             B0)
  for i, (x, y) in enumerate(arrays):
    a_i, b_i = x.T @ x / len(x), x.T @ y / len(x)
    want = np.linalg.solve(b.T @ a_i @ b, b.T @ b_i)
    np.testing.assert_allclose(states[i][0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('params, name, value', [
    (personal_heads.FedRepParams, 'learning_rate', 0.0),
    (personal_heads.FedRepParams, 'head_steps', 0),
    (personal_heads.FedRepParams, 'body_steps', -1),
    (personal_heads.FedPerParams, 'learning_rate', -1.0),
    (personal_heads.FedPerParams, 'local_steps', 0),
])
def test_bad_hyperparameters_are_refused_naming_the_argument(params, name,
                                                             value):
  with pytest.raises(validation.ArgumentError, match=name):
    params(**dict(dict(learning_rate=0.1), **{name: value}))


def test_a_body_that_is_not_an_encoder_is_refused():
  with pytest.raises(validation.ArgumentError, match='body_fn'):
    tff_perfed.build_fedper(head_fn, head_fn, learning_rate=0.1)


def test_a_head_that_is_not_a_functional_model_is_refused():
  with pytest.raises(validation.ArgumentError, match='head_fn'):
    tff_perfed.build_fedrep(body_fn, body_fn, learning_rate=0.1)
