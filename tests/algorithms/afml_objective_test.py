"""AFML's gradients against an independent float64 NumPy reference.

The reference evaluates the objective of eq. (4) forward only, in NumPy
(a linear Gaussian encoder, a softmax-regression head whose inner step uses
the closed-form gradient Z^T (P - Y) / n), and differentiates it by central
finite differences. The KL terms are checked against their closed forms, and
with alpha = beta = 0 and sigma ~ 0 the head's gradient is checked against
Per-FedAvg's exact meta-gradient with D'' = D: a MAML step on the head.
"""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.algorithms import afml_objective
from tff_perfed.algorithms import meta_gradients

X_DIM, Z_DIM, CLASSES, N = 3, 2, 3, 4
ETA = 0.4


def _softplus(r):
  return np.log1p(np.exp(r))


def _softmax(logits):
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def np_encode(theta, x):
  kernel, bias, scale_kernel, scale_bias = theta
  z_mean = x @ kernel + bias
  return z_mean, z_mean @ scale_kernel + scale_bias


def np_head_loss(head, z, y):
  kernel, bias = head
  p = _softmax(z @ kernel + bias)
  return -np.mean(np.log(p[np.arange(len(y)), y]))


def np_head_gradient(head, z, y):
  kernel, bias = head
  residual = (_softmax(z @ kernel + bias) - np.eye(CLASSES)[y]) / len(y)
  return z.T @ residual, residual.sum(axis=0)


def np_kl(mean, log_scale):
  return 0.5 * (mean**2 + np.exp(2 * log_scale) - 1) - log_scale


def np_losses(mean, rho, head, eps, support, query, z_noise, alpha, beta):
  """Every loss term and the encoder objective, forward, in float64."""
  theta = [m + _softplus(r) * e for m, r, e in zip(mean, rho, eps)]
  (xs, ys), (xq, yq) = support, query
  zs_mean, zs_log_scale = np_encode(theta, xs)
  zs = zs_mean + np.exp(zs_log_scale) * z_noise[0]
  zq_mean, zq_log_scale = np_encode(theta, xq)
  zq = zq_mean + np.exp(zq_log_scale) * z_noise[1]
  adapted = [w - ETA * g
             for w, g in zip(head, np_head_gradient(head, zs, ys))]
  query_loss = np_head_loss(adapted, zq, yq)
  enc = np_head_loss(head, zq, yq)
  cons = np.mean(np_kl(zq_mean, zq_log_scale).sum(axis=1))
  cmpx = sum(np_kl(m, np.log(_softplus(r))).sum() for m, r in zip(mean, rho))
  objective = query_loss + alpha * (enc + cons) + beta * cmpx
  return dict(query=query_loss, enc=enc, cons=cons, cmpx=cmpx,
              objective=objective)


def finite_difference(fn, weights, h=1e-6):
  """Central differences of scalar fn(weights) for every entry."""
  gradients = []
  for i, w in enumerate(weights):
    g = np.zeros_like(w)
    for index in np.ndindex(w.shape):
      plus = [v.copy() for v in weights]
      minus = [v.copy() for v in weights]
      plus[i][index] += h
      minus[i][index] -= h
      g[index] = (fn(plus) - fn(minus)) / (2 * h)
    gradients.append(g)
  return gradients


def tf_encode(theta, x):
  kernel, bias, scale_kernel, scale_bias = theta
  z_mean = tf.matmul(x, kernel) + bias
  return z_mean, tf.matmul(z_mean, scale_kernel) + scale_bias


def tf_head_loss(head, z, y):
  kernel, bias = head
  return tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=tf.matmul(z, kernel) + bias))


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  mean = [rng.normal(size=(X_DIM, Z_DIM)), rng.normal(size=Z_DIM) * 0.1,
          rng.normal(size=(Z_DIM, Z_DIM)) * 0.3, np.full(Z_DIM, -1.0)]
  rho = [rng.normal(size=m.shape) - 2.0 for m in mean]
  head = [rng.normal(size=(Z_DIM, CLASSES)), rng.normal(size=CLASSES) * 0.1]
  eps = [rng.normal(size=m.shape) for m in mean]
  support = (rng.normal(size=(N, X_DIM)), rng.integers(0, CLASSES, N))
  query = (rng.normal(size=(N, X_DIM)), rng.integers(0, CLASSES, N))
  z_noise = (rng.normal(size=(N, Z_DIM)), rng.normal(size=(N, Z_DIM)))
  return mean, rho, head, eps, support, query, z_noise


def _tf_gradients(mean, rho, head, eps, support, query, z_noise, alpha, beta,
                  with_z_noise=True):
  as_tf = lambda ws: tuple(tf.constant(w, tf.float64) for w in ws)
  batch = lambda b: (tf.constant(b[0], tf.float64), tf.constant(b[1]))
  return afml_objective.afml_gradients(
      tf_encode, tf_head_loss, as_tf(mean), as_tf(rho), as_tf(head),
      batch(support), batch(query), as_tf(eps),
      inner_learning_rate=ETA, alpha=alpha, beta=beta,
      support_z_noise=tf.constant(z_noise[0]) if with_z_noise else None,
      query_z_noise=tf.constant(z_noise[1]) if with_z_noise else None)


@pytest.mark.parametrize('alpha,beta', [(0.7, 0.05), (0.0, 0.0), (0.0, 0.3),
                                        (1.5, 0.0)])
def test_gradients_match_finite_differences_of_float64_objective(alpha, beta):
  mean, rho, head, eps, support, query, z_noise = _problem()
  head_grad, mean_grad, rho_grad, losses = _tf_gradients(
      mean, rho, head, eps, support, query, z_noise, alpha, beta)

  def objective(m, r, h, key='objective'):
    return np_losses(m, r, h, eps, support, query, z_noise, alpha,
                     beta)[key]

  expected_mean = finite_difference(lambda m: objective(m, rho, head), mean)
  expected_rho = finite_difference(lambda r: objective(mean, r, head), rho)
  # g_c differentiates L_query only (Algorithm 1, line 16).
  expected_head = finite_difference(
      lambda h: objective(mean, rho, h, 'query'), head)
  for got, expected in ((mean_grad, expected_mean), (rho_grad, expected_rho),
                        (head_grad, expected_head)):
    for g, e in zip(got, expected):
      np.testing.assert_allclose(g.numpy(), e, rtol=1e-6, atol=1e-7)
  reference = np_losses(mean, rho, head, eps, support, query, z_noise, alpha,
                        beta)
  for name in afml_objective.LOSS_NAMES:
    np.testing.assert_allclose(losses[name].numpy(), reference[name],
                               rtol=1e-12)


def test_alpha_and_beta_zero_switch_the_regularizers_off():
  mean, rho, head, eps, support, query, z_noise = _problem(seed=1)
  _, mean_grad, rho_grad, _ = _tf_gradients(mean, rho, head, eps, support,
                                            query, z_noise, 0.0, 0.0)
  query_only = lambda m, r: np_losses(m, r, head, eps, support, query,
                                      z_noise, 0.0, 0.0)['query']
  expected = finite_difference(lambda m: query_only(m, rho), mean)
  for g, e in zip(mean_grad, expected):
    np.testing.assert_allclose(g.numpy(), e, rtol=1e-6, atol=1e-7)
  expected = finite_difference(lambda r: query_only(mean, r), rho)
  for g, e in zip(rho_grad, expected):
    np.testing.assert_allclose(g.numpy(), e, rtol=1e-6, atol=1e-7)


def test_kl_terms_equal_closed_forms():
  mean = (tf.constant([[0.5, -1.0]], tf.float64), tf.constant([2.0],
                                                              tf.float64))
  scale = np.array([[0.3, 1.0]]), np.array([0.1])
  rho = tuple(tf.constant(np.log(np.expm1(s)), tf.float64) for s in scale)
  # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1) / 2 - log s, summed.
  expected = sum(
      np.sum((m.numpy()**2 + s**2 - 1) / 2 - np.log(s))
      for m, s in zip(mean, scale))
  np.testing.assert_allclose(
      afml_objective.complexity_loss(mean, rho).numpy(), expected,
      rtol=1e-12)
  z_mean = tf.constant([[1.0, 0.0], [0.0, 2.0]], tf.float64)
  z_log_scale = tf.constant([[0.0, np.log(0.5)], [np.log(2.0), 0.0]],
                            tf.float64)
  per_example = [0.5 * 1.0 + (0.25 - 1) / 2 - np.log(0.5),
                 (4.0 - 1) / 2 - np.log(2.0) + 2.0]
  np.testing.assert_allclose(
      afml_objective.consistency_loss(z_mean, z_log_scale).numpy(),
      np.mean(per_example), rtol=1e-12)


def test_encoder_scale_is_softplus_and_positive():
  rho = (tf.constant([-50.0, 0.0, 3.0], tf.float64),)
  scale = afml_objective.encoder_scale(rho)[0].numpy()
  np.testing.assert_allclose(scale, _softplus(np.array([-50.0, 0.0, 3.0])),
                             rtol=1e-12)
  assert (scale > 0).all()


def test_head_gradient_is_a_maml_step_when_regularizers_off_and_sigma_zero():
  mean, rho, head, eps, support, query, _ = _problem(seed=2)
  rho = [np.full_like(r, -40.0) for r in rho]  # softplus(-40) ~ 4e-18.
  head_grad, _, _, _ = _tf_gradients(mean, rho, head, eps, support, query,
                                     None, 0.0, 0.0, with_z_noise=False)
  theta = tuple(tf.constant(m, tf.float64) for m in mean)

  def loss_fn(head_weights, batch):
    z, _ = tf_encode(theta, batch[0])
    return tf_head_loss(head_weights, z, batch[1])

  as_batch = lambda b: (tf.constant(b[0], tf.float64), tf.constant(b[1]))
  maml = meta_gradients.per_fedavg_meta_gradient(
      loss_fn, tuple(tf.constant(h, tf.float64) for h in head),
      (as_batch(support), as_batch(query), as_batch(support)),
      inner_learning_rate=ETA,
      hessian_mode=meta_gradients.HessianMode.EXACT)
  for g, e in zip(head_grad, maml):
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12)


def test_batches_may_be_ordered_dicts_and_weights_numpy():
  mean, rho, head, eps, support, query, z_noise = _problem(seed=3)
  as_dict = lambda b: {'x': tf.constant(b[0]), 'y': tf.constant(b[1])}
  got = afml_objective.afml_gradients(
      tf_encode, tf_head_loss, mean, rho, head, as_dict(support),
      as_dict(query), eps, inner_learning_rate=ETA, alpha=0.5, beta=0.1)
  expected = _tf_gradients(mean, rho, head, eps, support, query, z_noise, 0.5,
                           0.1, with_z_noise=False)
  for got_part, expected_part in zip(got[:3], expected[:3]):
    for g, e in zip(got_part, expected_part):
      np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-12)


def test_client_and_server_split_averages_to_the_mean_of_client_gradients():
  """Mean over clients of g_g == server chain rule on the mean dL/dtheta."""
  mean, rho, head, eps, _, _, _ = _problem(seed=4)
  as_tf = lambda ws: tuple(tf.constant(w, tf.float64) for w in ws)
  rng = np.random.default_rng(5)
  clients = [((rng.normal(size=(N, X_DIM)), rng.integers(0, CLASSES, N)),
              (rng.normal(size=(N, X_DIM)), rng.integers(0, CLASSES, N)))
             for _ in range(3)]
  full = [afml_objective.afml_gradients(
      tf_encode, tf_head_loss, mean, rho, head, s, q, eps,
      inner_learning_rate=ETA, alpha=0.3, beta=0.2) for s, q in clients]
  theta = afml_objective.sample_encoder_weights(as_tf(mean), as_tf(rho),
                                                as_tf(eps))
  sampled = [afml_objective.afml_client_gradients(
      tf_encode, tf_head_loss, theta, head, s, q, inner_learning_rate=ETA,
      alpha=0.3)[1] for s, q in clients]
  mean_sampled = [tf.add_n(g) / 3 for g in zip(*sampled)]
  mean_grad, rho_grad, _ = afml_objective.encoder_gradients_from_sampled(
      mean_sampled, as_tf(mean), as_tf(rho), as_tf(eps), beta=0.2)
  for index, server in ((1, mean_grad), (2, rho_grad)):
    for i, g in enumerate(server):
      np.testing.assert_allclose(
          g.numpy(), np.mean([f[index][i].numpy() for f in full], axis=0),
          rtol=1e-10, atol=1e-12)
