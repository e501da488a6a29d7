"""Per-FedAvg meta-gradients against a float64 closed-form reference.

The reference uses softmax regression, whose gradient X^T (P - Y) / n and
full Hessian (1/n) sum_i (diag p_i - p_i p_i^T) kron x_i x_i^T are known in
closed form, evaluated in NumPy float64, independent of TensorFlow.
"""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms.meta_gradients import HessianMode

DIM, CLASSES, ALPHA = 5, 3, 0.3


def _softmax(z):
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def _augment(x):
  return np.hstack([x, np.ones((x.shape[0], 1))])


def np_gradient(theta, batch):
  """theta is vec of W_aug [DIM + 1, CLASSES] (bias as last row)."""
  x, y = batch
  xa = _augment(x)
  p = _softmax(xa @ theta.reshape(DIM + 1, CLASSES))
  return (xa.T @ (p - np.eye(CLASSES)[y]) / len(y)).reshape(-1)


def np_hessian(theta, batch):
  x, _ = batch
  xa = _augment(x)
  p = _softmax(xa @ theta.reshape(DIM + 1, CLASSES))
  h = np.zeros((theta.size, theta.size))
  for xi, pi in zip(xa, p):
    # Row-major vec of W_aug[j, c] is index j * CLASSES + c.
    h += np.kron(np.outer(xi, xi), np.diag(pi) - np.outer(pi, pi))
  return h / len(x)


def np_meta_gradient(theta, batches, mode):
  d, d_prime, d_double_prime = batches
  adapted = theta - ALPHA * np_gradient(theta, d)
  outer = np_gradient(adapted, d_prime)
  if mode is HessianMode.FIRST_ORDER:
    return outer
  return outer - ALPHA * np_hessian(theta, d_double_prime) @ outer


def tf_loss(weights, batch):
  w, b = weights
  x, y = batch
  logits = tf.matmul(x, w) + b
  return tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  theta = rng.normal(scale=0.5, size=(DIM + 1) * CLASSES)
  batches = tuple((rng.normal(size=(n, DIM)), rng.integers(0, CLASSES, n))
                  for n in (7, 6, 8))
  return theta, batches


def _tf_meta_gradient(theta, batches, mode, delta=1e-3, alpha=ALPHA):
  w_aug = theta.reshape(DIM + 1, CLASSES)
  weights = (tf.constant(w_aug[:DIM]), tf.constant(w_aug[DIM]))
  tf_batches = tuple((tf.constant(x), tf.constant(y, tf.int32))
                     for x, y in batches)
  w_grad, b_grad = meta_gradients.per_fedavg_meta_gradient(
      tf_loss, weights, tf_batches, inner_learning_rate=alpha,
      hessian_mode=mode, hessian_free_delta=delta)
  return np.vstack([w_grad.numpy(), b_grad.numpy()[None]]).reshape(-1)


@pytest.mark.parametrize('mode,tolerance', [
    (HessianMode.FIRST_ORDER, 1e-12),
    (HessianMode.EXACT, 1e-12),
    (HessianMode.HESSIAN_FREE, 1e-7),
])
def test_meta_gradient_matches_float64_closed_form(mode, tolerance):
  theta, batches = _problem()
  expected = np_meta_gradient(theta, batches, mode)
  actual = _tf_meta_gradient(theta, batches, mode, delta=1e-4)
  np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


def test_exact_and_first_order_differ_by_the_hessian_term():
  theta, batches = _problem(seed=1)
  difference = (_tf_meta_gradient(theta, batches, HessianMode.FIRST_ORDER) -
                _tf_meta_gradient(theta, batches, HessianMode.EXACT))
  outer = np_meta_gradient(theta, batches, HessianMode.FIRST_ORDER)
  np.testing.assert_allclose(
      difference, ALPHA * np_hessian(theta, batches[2]) @ outer, atol=1e-12)


def test_hessian_free_error_shrinks_like_delta_squared():
  theta, batches = _problem(seed=2)
  exact = np_meta_gradient(theta, batches, HessianMode.EXACT)
  deltas = [0.4, 0.2, 0.1, 0.05]
  errors = [np.linalg.norm(
      _tf_meta_gradient(theta, batches, HessianMode.HESSIAN_FREE, delta=d) -
      exact) for d in deltas]
  ratios = np.array(errors[:-1]) / np.array(errors[1:])
  # Halving d divides a central difference's O(d^2) error by 4.
  np.testing.assert_allclose(ratios, 4.0, rtol=0.1)


@pytest.mark.parametrize('mode', list(HessianMode))
def test_zero_inner_rate_gives_the_plain_gradient_on_d_prime(mode):
  theta, batches = _problem(seed=3)
  np.testing.assert_allclose(
      _tf_meta_gradient(theta, batches, mode, alpha=0.0),
      np_gradient(theta, batches[1]), atol=1e-12)


def test_rejects_a_mode_that_is_not_a_hessian_mode():
  theta, batches = _problem()
  with pytest.raises(TypeError, match='hessian_mode'):
    _tf_meta_gradient(theta, batches, 'exact')


def test_rejects_fewer_than_three_batches():
  with pytest.raises(ValueError, match='batches'):
    meta_gradients.per_fedavg_meta_gradient(
        tf_loss, (tf.zeros([DIM, CLASSES]), tf.zeros([CLASSES])), [None] * 2,
        inner_learning_rate=0.1, hessian_mode=HessianMode.EXACT)


def test_rejects_negative_inner_rate_and_non_positive_delta():
  theta, batches = _problem()
  with pytest.raises(ValueError, match='inner_learning_rate'):
    _tf_meta_gradient(theta, batches, HessianMode.EXACT, alpha=-1.0)
  with pytest.raises(ValueError, match='hessian_free_delta'):
    _tf_meta_gradient(theta, batches, HessianMode.HESSIAN_FREE, delta=0.0)
