"""AFML's objective and gradients as pure TensorFlow functions.

Adaptive federated meta-learning (AFML; the paper in
../shared/seeds/002_9216229f1dade386.txt, sections 3.3-3.5, Algorithm 1).
The global model is an encoder f with Gaussian weights
theta ~ N(theta_u, sigma^2), sigma = softplus(rho), tau = (theta_u, rho), and
a classification head h with weights theta_hat. With this round's sampled
encoder weights theta = theta_u + sigma * eps (Algorithm 1, line 4), a client
holding a support batch D and a query batch D' computes (lines 12-18):

    z = f(x; theta) ~ N(z_mean, exp(z_log_scale)^2)   (reparameterized)
    phi = theta_hat - eta * grad_theta_hat L(theta_hat; z_D, y_D)
    L_query = L(phi; z_D', y_D')
    g_c = grad_theta_hat L_query                     (through the inner step)
    g_g = grad_tau [L_query + L_TOFF],

with the trade-off regularizer of eq. (4)

    L_TOFF = alpha * L_ENC + alpha * L_CONS + beta * L_CMPX,
    L_ENC  = 1/N' sum_{D'} -log q(y' | theta, x', eps) = L(theta_hat; z_D', y_D'),
    L_CONS = 1/N' sum_{D'} KL(p(z | x', theta) || N(0, I)),
    L_CMPX = KL(N(theta_u, sigma^2) || N(0, I)).

Choices the paper leaves open, made here:
* Coefficients follow eq. (4): alpha multiplies L_ENC and L_CONS, beta
  multiplies L_CMPX. Algorithm 1 line 17 writes alpha once more in front of
  L_TOFF (alpha * (L_ENC + L_CONS + beta L_CMPX)); we read that as a typo,
  since eq. (4) already carries the coefficients.
* L_ENC is the global head's negative log-likelihood on the query
  representations: the "information path theta -> y'" that does not go
  through the adapted phi.
* The head's gradient g_c is the derivative of L_query only (Algorithm 1,
  line 16); the regularizers shape the encoder (line 17; "we add the
  regularization on weights theta of the encoding network and leave the
  weights of h unrestricted", section 3.5).
* Second order: g_c and g_g differentiate through the inner step exactly
  (nested `tf.GradientTape`s); the inner step adapts the head only, so the
  Hessian involved is the head's, which is what keeps AFML cheap.
* L_CONS sums the KL over every dimension of z (all positions of a feature
  map or a sequence) and averages over the query examples. L_CMPX sums over
  every encoder parameter, as the prior r(theta) = N(0, I) is over all of
  them; it does not depend on data, so (as section 3.5 suggests) it can be
  computed at the server: `encoder_gradients_from_sampled` adds it there.
* The chain rule through the reparameterization is linear in the gradient
  with respect to the sampled theta, so the mean over clients of g_g equals
  `encoder_gradients_from_sampled` applied to the mean of the clients'
  gradients with respect to theta. `afml_gradients` is the composition, the
  reference for one client; the learning process splits it between clients
  and server.

Everything works on tuples of tensors of any float dtype.
"""

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import tensorflow as tf

Weights = Tuple[tf.Tensor, ...]
EncodeFn = Callable[[Weights, tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]
HeadLossFn = Callable[[Weights, tf.Tensor, tf.Tensor], tf.Tensor]

# Keys of the losses dict, in the order the metrics report them.
LOSS_NAMES = ('query', 'enc', 'cons', 'cmpx')


def _batch(batch: Any) -> Tuple[tf.Tensor, tf.Tensor]:
  """(x, y) of an `OrderedDict(x=..., y=...)` batch or an (x, y) pair."""
  if hasattr(batch, 'keys'):
    return batch['x'], batch['y']
  x, y = batch
  return x, y


def _tensors(weights: Sequence[Any]) -> Weights:
  return tuple(tf.convert_to_tensor(w) for w in weights)


def _scalar(value, dtype) -> tf.Tensor:
  # tf.cast(0.3, tf.float64) would round 0.3 through float32 first.
  if isinstance(value, tf.Tensor):
    return tf.cast(value, dtype)
  return tf.constant(value, dtype)


def encoder_scale(encoder_rho: Sequence[tf.Tensor]) -> Weights:
  """sigma = softplus(rho), elementwise: always positive."""
  return tuple(tf.math.softplus(r) for r in encoder_rho)


def sample_encoder_weights(encoder_mean: Sequence[tf.Tensor],
                           encoder_rho: Sequence[tf.Tensor],
                           encoder_noise: Sequence[tf.Tensor]) -> Weights:
  """theta = theta_u + softplus(rho) * eps (Algorithm 1, line 4)."""
  return tuple(
      m + s * tf.cast(e, m.dtype) for m, s, e in zip(
          encoder_mean, encoder_scale(encoder_rho), encoder_noise))


def standard_normal_kl(mean: tf.Tensor, log_scale: tf.Tensor) -> tf.Tensor:
  """Elementwise KL(N(mean, exp(log_scale)^2) || N(0, 1)).

  = (mean^2 + exp(2 log_scale) - 1) / 2 - log_scale.
  """
  return 0.5 * (tf.square(mean) + tf.exp(2.0 * log_scale) - 1.0) - log_scale


def complexity_loss(encoder_mean: Sequence[tf.Tensor],
                    encoder_rho: Sequence[tf.Tensor]) -> tf.Tensor:
  """L_CMPX = KL(N(theta_u, sigma^2) || N(0, I)), summed over parameters."""
  return tf.add_n([
      tf.reduce_sum(standard_normal_kl(m, tf.math.log(s)))
      for m, s in zip(encoder_mean, encoder_scale(encoder_rho))
  ])


def consistency_loss(z_mean: tf.Tensor, z_log_scale: tf.Tensor) -> tf.Tensor:
  """L_CONS: KL(p(z|x) || N(0, I)) summed over z's dims, mean over examples."""
  per_example = tf.reshape(standard_normal_kl(z_mean, z_log_scale),
                           [tf.shape(z_mean)[0], -1])
  return tf.reduce_mean(tf.reduce_sum(per_example, axis=1))


def representation(encode_fn: EncodeFn, encoder_weights: Sequence[tf.Tensor],
                   x: tf.Tensor, z_noise: Optional[tf.Tensor] = None
                  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """`(z, z_mean, z_log_scale)`; z = z_mean + exp(z_log_scale) * z_noise.

  Without `z_noise`, z is z_mean. `z_noise` is a tensor shaped like z, or a
  callable `z_noise(shape) -> tensor` (the learning process draws its
  stateless noise that way, since z's shape is known only after encoding).
  """
  z_mean, z_log_scale = encode_fn(tuple(encoder_weights), x)
  if z_noise is None:
    return z_mean, z_mean, z_log_scale
  if callable(z_noise):
    z_noise = z_noise(tf.shape(z_mean))
  z = z_mean + tf.exp(z_log_scale) * tf.cast(z_noise, z_mean.dtype)
  return z, z_mean, z_log_scale


def afml_client_gradients(encode_fn: EncodeFn,
                          head_loss_fn: HeadLossFn,
                          encoder_weights: Sequence[tf.Tensor],
                          head_weights: Sequence[tf.Tensor],
                          support: Any,
                          query: Any,
                          *,
                          inner_learning_rate,
                          alpha,
                          support_z_noise: Optional[tf.Tensor] = None,
                          query_z_noise: Optional[tf.Tensor] = None
                         ) -> Tuple[Weights, Weights, Dict[str, tf.Tensor]]:
  """A client's part of Algorithm 1 at sampled encoder weights theta.

  Args:
    encode_fn: `encode_fn(theta, x) -> (z_mean, z_log_scale)`.
    head_loss_fn: `head_loss_fn(head_weights, z, y) -> scalar` mean loss.
    encoder_weights: theta, this round's sampled encoder weights.
    head_weights: theta_hat, the global head.
    support: The support batch D, `OrderedDict(x, y)` or `(x, y)`.
    query: The query batch D'.
    inner_learning_rate: eta, the head's inner step.
    alpha: The weight of L_ENC and L_CONS.
    support_z_noise: Standard normal noise shaped like z on D (a tensor or
      a callable of the shape; see `representation`), or None.
    query_z_noise: The same for z on D'.

  Returns:
    `(head_gradient, encoder_gradient, losses)`: g_c; the gradient of
    L_query + alpha (L_ENC + L_CONS) with respect to theta; and
    `{'query', 'enc', 'cons'}` scalars.
  """
  encoder_weights = _tensors(encoder_weights)
  head_weights = _tensors(head_weights)
  dtype = head_weights[0].dtype
  eta = _scalar(inner_learning_rate, dtype)
  alpha = _scalar(alpha, dtype)
  x_support, y_support = _batch(support)
  x_query, y_query = _batch(query)
  with tf.GradientTape(persistent=True) as outer:
    outer.watch(encoder_weights + head_weights)
    z_support, _, _ = representation(encode_fn, encoder_weights, x_support,
                                     support_z_noise)
    z_query, z_mean, z_log_scale = representation(encode_fn, encoder_weights,
                                                  x_query, query_z_noise)
    with tf.GradientTape() as inner:
      inner.watch(head_weights)
      support_loss = head_loss_fn(head_weights, z_support, y_support)
    inner_gradient = inner.gradient(
        support_loss, head_weights,
        unconnected_gradients=tf.UnconnectedGradients.ZERO)
    adapted = tuple(w - eta * tf.convert_to_tensor(g)
                    for w, g in zip(head_weights, inner_gradient))
    query_loss = head_loss_fn(adapted, z_query, y_query)
    encoding_loss = head_loss_fn(head_weights, z_query, y_query)
    consistency = consistency_loss(z_mean, z_log_scale)
    encoder_objective = query_loss + alpha * (encoding_loss + consistency)
  head_gradient = outer.gradient(
      query_loss, head_weights,
      unconnected_gradients=tf.UnconnectedGradients.ZERO)
  encoder_gradient = outer.gradient(
      encoder_objective, encoder_weights,
      unconnected_gradients=tf.UnconnectedGradients.ZERO)
  del outer
  losses = {'query': query_loss, 'enc': encoding_loss, 'cons': consistency}
  return (tuple(tf.convert_to_tensor(g) for g in head_gradient),
          tuple(tf.convert_to_tensor(g) for g in encoder_gradient), losses)


def encoder_gradients_from_sampled(sampled_gradient: Sequence[tf.Tensor],
                                   encoder_mean: Sequence[tf.Tensor],
                                   encoder_rho: Sequence[tf.Tensor],
                                   encoder_noise: Sequence[tf.Tensor], *,
                                   beta) -> Tuple[Weights, Weights, tf.Tensor]:
  """The gradient with respect to tau from the one at theta, plus L_CMPX.

  With theta = theta_u + softplus(rho) * eps and g = d objective / d theta:
  d/d theta_u = g + beta dL_CMPX/d theta_u and
  d/d rho = g * eps * sigmoid(rho) + beta dL_CMPX/d rho.

  Returns:
    `(mean_gradient, rho_gradient, l_cmpx)`.
  """
  encoder_mean = _tensors(encoder_mean)
  encoder_rho = _tensors(encoder_rho)
  dtype = encoder_mean[0].dtype
  beta = _scalar(beta, dtype)
  with tf.GradientTape() as tape:
    tape.watch(encoder_mean + encoder_rho)
    complexity = complexity_loss(encoder_mean, encoder_rho)
  complexity_mean, complexity_rho = tape.gradient(
      complexity, (encoder_mean, encoder_rho))
  mean_gradient = tuple(
      g + beta * c for g, c in zip(sampled_gradient, complexity_mean))
  rho_gradient = tuple(
      g * tf.cast(e, dtype) * tf.sigmoid(r) + beta * c
      for g, e, r, c in zip(sampled_gradient, encoder_noise, encoder_rho,
                            complexity_rho))
  return mean_gradient, rho_gradient, complexity


def afml_gradients(encode_fn: EncodeFn,
                   head_loss_fn: HeadLossFn,
                   encoder_mean: Sequence[tf.Tensor],
                   encoder_rho: Sequence[tf.Tensor],
                   head_weights: Sequence[tf.Tensor],
                   support: Any,
                   query: Any,
                   encoder_noise: Sequence[tf.Tensor],
                   *,
                   inner_learning_rate,
                   alpha,
                   beta,
                   support_z_noise: Optional[tf.Tensor] = None,
                   query_z_noise: Optional[tf.Tensor] = None
                  ) -> Tuple[Weights, Weights, Weights, Dict[str, tf.Tensor]]:
  """One client's AFML gradients (g_c, g_g) of Algorithm 1, eq. (4).

  Args:
    encode_fn: `encode_fn(theta, x) -> (z_mean, z_log_scale)`.
    head_loss_fn: `head_loss_fn(head_weights, z, y) -> scalar` mean loss of
      the head h.
    encoder_mean: theta_u, a tuple of tensors.
    encoder_rho: rho, shaped like theta_u; sigma = softplus(rho).
    head_weights: theta_hat, the head's weights.
    support: The support batch D, `OrderedDict(x=..., y=...)` or `(x, y)`.
    query: The query batch D'.
    encoder_noise: eps ~ N(0, I), shaped like theta_u.
    inner_learning_rate: eta, the inner step on the head.
    alpha: Weight of L_ENC and L_CONS; 0 switches them off.
    beta: Weight of L_CMPX; 0 switches it off.
    support_z_noise: Noise for z on D (None: z = z_mean).
    query_z_noise: Noise for z on D' (None: z = z_mean).

  Returns:
    `(head_gradient, encoder_mean_gradient, encoder_rho_gradient, losses)`:
    g_c = d L_query / d theta_hat through the inner step; the gradients of
    L_query + alpha (L_ENC + L_CONS) + beta L_CMPX with respect to theta_u
    and rho; and `losses` with the scalars `query`, `enc`, `cons`, `cmpx`.
  """
  encoder_mean = _tensors(encoder_mean)
  encoder_rho = _tensors(encoder_rho)
  theta = sample_encoder_weights(encoder_mean, encoder_rho, encoder_noise)
  head_gradient, sampled_gradient, losses = afml_client_gradients(
      encode_fn,
      head_loss_fn,
      theta,
      head_weights,
      support,
      query,
      inner_learning_rate=inner_learning_rate,
      alpha=alpha,
      support_z_noise=support_z_noise,
      query_z_noise=query_z_noise)
  mean_gradient, rho_gradient, complexity = encoder_gradients_from_sampled(
      sampled_gradient, encoder_mean, encoder_rho, encoder_noise, beta=beta)
  losses = dict(losses, cmpx=complexity)
  return head_gradient, mean_gradient, rho_gradient, losses
