"""Per-FedAvg meta-gradients as pure TensorFlow functions.

Fallah, Mokhtari, Ozdaglar, "Personalized Federated Learning: A Meta-Learning
Approach" (2020). Each user i holds a loss f_i and the personalized problem is

    (4)  min_w F(w) = 1/n sum_i f_i(w - alpha * grad f_i(w)),

whose local meta-function F_i(w) = f_i(w - alpha grad f_i(w)) (5) has gradient

    (6)  grad F_i(w) = (I - alpha hess f_i(w)) grad f_i(w - alpha grad f_i(w)).

With three independent batches D, D', D'' the stochastic estimate is

    (9)  g~ = (I - alpha hess~ f_i(w; D'')) grad~ f_i(w - alpha grad~ f_i(w; D); D'),

and each local step is w <- w - beta g~ (8). The Hessian-vector product is
either dropped (first-order, eq. 23), approximated by a central difference of
gradients on D'' (Hessian-free), or computed exactly with nested tapes.

Everything here works on tuples of tensors and a `loss_fn(weights, batch)`,
so it is testable without TFF and usable from any TF program.
"""

import enum
import numbers
from typing import Any, Callable, Sequence, Tuple

import tensorflow as tf

Weights = Tuple[tf.Tensor, ...]
LossFn = Callable[[Weights, Any], tf.Tensor]


class HessianMode(enum.Enum):
  """How the Hessian term of eq. (9) is evaluated."""

  # Drop the Hessian term: g~ = grad f(w - alpha grad f(w; D); D') (eq. 23).
  FIRST_ORDER = 'first_order'
  # hess f(w; D'') v ~ [grad f(w + d v; D'') - grad f(w - d v; D'')] / (2 d).
  HESSIAN_FREE = 'hessian_free'
  # Exact Hessian-vector product by differentiating <grad f(w; D''), v>.
  EXACT = 'exact'


def loss_gradient(loss_fn: LossFn, weights: Sequence[tf.Tensor],
                  batch: Any) -> Weights:
  """Returns grad_w loss_fn(w, batch) as a tuple shaped like `weights`."""
  weights = tuple(weights)
  with tf.GradientTape() as tape:
    tape.watch(weights)
    loss = loss_fn(weights, batch)
  gradients = tape.gradient(
      loss, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
  # Embedding lookups give IndexedSlices; the update and the Hessian-vector
  # product need dense tensors shaped like the weights.
  return tuple(tf.convert_to_tensor(g) for g in gradients)


def _as_dtype(value, dtype) -> tf.Tensor:
  # tf.cast(0.3, tf.float64) would round 0.3 through float32 first.
  if tf.is_tensor(value):
    return tf.cast(value, dtype)
  return tf.constant(value, dtype)


def sgd_step(weights: Sequence[tf.Tensor], gradients: Sequence[tf.Tensor],
             learning_rate) -> Weights:
  """Returns w - learning_rate * g, element-wise over the weight tuple."""
  return tuple(w - _as_dtype(learning_rate, w.dtype) * g
               for w, g in zip(weights, gradients))


def hessian_vector_product(loss_fn: LossFn, weights: Sequence[tf.Tensor],
                           vector: Sequence[tf.Tensor], batch: Any) -> Weights:
  """Exact hess_w loss_fn(w, batch) @ vector with nested gradient tapes."""
  weights = tuple(weights)
  vector = tuple(tf.stop_gradient(v) for v in vector)
  with tf.GradientTape() as outer_tape:
    outer_tape.watch(weights)
    gradients = loss_gradient(loss_fn, weights, batch)
    # d/dw <grad f(w), v> = hess f(w) v, since v does not depend on w.
    inner_product = tf.add_n(
        [tf.reduce_sum(g * v) for g, v in zip(gradients, vector)])
  return tuple(
      outer_tape.gradient(
          inner_product,
          weights,
          unconnected_gradients=tf.UnconnectedGradients.ZERO))


def finite_difference_hessian_vector_product(loss_fn: LossFn,
                                             weights: Sequence[tf.Tensor],
                                             vector: Sequence[tf.Tensor],
                                             batch: Any, delta) -> Weights:
  """Central difference [grad f(w + d v) - grad f(w - d v)] / (2 d).

  Its error is O(d^2) for a loss with Lipschitz third derivatives, and it
  costs two gradients instead of a second-order backward pass.
  """
  weights = tuple(weights)
  grad_plus = loss_gradient(loss_fn, sgd_step(weights, vector, -delta), batch)
  grad_minus = loss_gradient(loss_fn, sgd_step(weights, vector, delta), batch)
  return tuple((gp - gm) / (2.0 * _as_dtype(delta, gp.dtype))
               for gp, gm in zip(grad_plus, grad_minus))


def _check_non_negative(name: str, value) -> None:
  # Tensors are checked by the builders that create them; Python numbers here.
  if isinstance(value, numbers.Number) and not value >= 0:
    raise ValueError(f'`{name}` must be a non-negative number, got {value!r}.')


def per_fedavg_meta_gradient(loss_fn: LossFn,
                             weights: Sequence[tf.Tensor],
                             batches: Sequence[Any],
                             *,
                             inner_learning_rate,
                             hessian_mode: HessianMode,
                             hessian_free_delta=1e-3) -> Weights:
  """The stochastic Per-FedAvg meta-gradient of eq. (9).

  Args:
    loss_fn: `loss_fn(weights, batch) -> scalar`, the local loss f_i on a
      batch. Must be twice differentiable for `HessianMode.EXACT`.
    weights: The point w, a sequence of float tensors.
    batches: The three independent batches `(D, D', D'')`. `D''` is ignored
      by `HessianMode.FIRST_ORDER`.
    inner_learning_rate: alpha, the step of the inner (adaptation) update.
    hessian_mode: A `HessianMode` choosing how hess f(w; D'') is applied.
    hessian_free_delta: d of the central difference, used by
      `HessianMode.HESSIAN_FREE` only.

  Returns:
    A tuple shaped like `weights`: (I - alpha H) grad f(w - alpha grad f(w; D);
    D'), where H is hess f(w; D'') (exact or finite-difference) or 0.

  Raises:
    TypeError: If `hessian_mode` is not a `HessianMode`.
    ValueError: If `batches` does not hold three batches, or a Python number
      rate or delta is out of range.
  """
  if not isinstance(hessian_mode, HessianMode):
    raise TypeError('`hessian_mode` must be a tff_perfed.HessianMode, got '
                    f'{hessian_mode!r}.')
  if len(batches) != 3:
    raise ValueError('`batches` must be the three batches (D, D\', D\'\'), got '
                     f'{len(batches)} batches.')
  _check_non_negative('inner_learning_rate', inner_learning_rate)
  if isinstance(hessian_free_delta, numbers.Number) and not hessian_free_delta > 0:
    raise ValueError('`hessian_free_delta` must be a positive number, got '
                     f'{hessian_free_delta!r}.')
  weights = tuple(weights)
  inner_batch, outer_batch, hessian_batch = batches

  inner_gradient = loss_gradient(loss_fn, weights, inner_batch)
  adapted_weights = sgd_step(weights, inner_gradient, inner_learning_rate)
  outer_gradient = loss_gradient(loss_fn, adapted_weights, outer_batch)
  if hessian_mode is HessianMode.FIRST_ORDER:
    return outer_gradient

  if hessian_mode is HessianMode.EXACT:
    hvp = hessian_vector_product(loss_fn, weights, outer_gradient,
                                 hessian_batch)
  else:
    hvp = finite_difference_hessian_vector_product(
        loss_fn, weights, outer_gradient, hessian_batch, hessian_free_delta)
  return sgd_step(outer_gradient, hvp, inner_learning_rate)
