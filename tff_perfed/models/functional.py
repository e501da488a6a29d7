"""Functional classifiers from pure functions, the pieces every model shares.

A model is a tuple of weight arrays and a `predict(weights, x)` written
directly in TensorFlow ops, so that gradients, Hessian-vector products and
finite differences are taken on plain tensors (no `tf.Variable`s, no hidden
randomness: dropout would make f(w + dv; D'') and f(w - dv; D'') see
different masks and break the Hessian-free difference).

`functional_model` wraps such a pair into a
`tff.learning.models.FunctionalModel` with a (padding-masked) softmax
cross-entropy loss and the metrics `loss`, `accuracy` and `num_examples`,
which personalization evaluation reports.
"""

import collections
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

PAD_TOKEN = 0  # Label id masked out of the character model's loss/metrics.


def glorot_uniform(rng: np.random.Generator, shape: Sequence[int], fan_in: int,
                    fan_out: int) -> np.ndarray:
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def masked_cross_entropy(
    logits: tf.Tensor,
    labels: tf.Tensor,
    sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Mean softmax cross-entropy over the examples whose weight is non-zero."""
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits)
  if sample_weight is None:
    return tf.reduce_mean(per_example)
  sample_weight = tf.cast(sample_weight, per_example.dtype)
  return tf.math.divide_no_nan(
      tf.reduce_sum(per_example * sample_weight), tf.reduce_sum(sample_weight))


def classification_loss_fn(mask_padding: bool = False):
  """`loss(logits, labels, sample_weight=None)`: mean softmax cross-entropy.

  With `mask_padding`, labels equal to `PAD_TOKEN` get weight zero unless a
  `sample_weight` is given.
  """

  def loss(output, label, sample_weight=None):
    if mask_padding and sample_weight is None:
      sample_weight = tf.not_equal(tf.cast(label, tf.int32), PAD_TOKEN)
    return masked_cross_entropy(output, label, sample_weight)

  return loss


def classification_metrics_fns(mask_padding: bool = False):
  """Pure metric functions: summable state of loss, correct and count.

  Finalized as `loss`, `accuracy` and `num_examples`; with `mask_padding`,
  labels equal to `PAD_TOKEN` are not counted.
  """

  def initialize():
    return collections.OrderedDict(
        loss_sum=tf.constant(0.0),
        num_correct=tf.constant(0.0),
        num_examples=tf.constant(0.0))

  def update(state, labels, batch_output, sample_weight=None):
    del sample_weight  # Padding is the only weighting our data uses.
    logits = batch_output.predictions
    labels = tf.cast(labels, tf.int32)
    weight = (tf.cast(tf.not_equal(labels, PAD_TOKEN), tf.float32)
              if mask_padding else tf.ones_like(labels, tf.float32))
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits)
    correct = tf.cast(
        tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
        tf.float32)
    return collections.OrderedDict(
        loss_sum=state['loss_sum'] + tf.reduce_sum(per_example * weight),
        num_correct=state['num_correct'] + tf.reduce_sum(correct * weight),
        num_examples=state['num_examples'] + tf.reduce_sum(weight))

  def finalize(state):
    return collections.OrderedDict(
        loss=tf.math.divide_no_nan(state['loss_sum'], state['num_examples']),
        accuracy=tf.math.divide_no_nan(state['num_correct'],
                                       state['num_examples']),
        num_examples=state['num_examples'])

  return initialize, update, finalize


def functional_model(
    weights: Tuple[np.ndarray, ...],
    predict: Callable[[Tuple[tf.Tensor, ...], tf.Tensor], tf.Tensor],
    x_spec: tf.TensorSpec,
    y_spec: tf.TensorSpec,
    mask_padding: bool = False) -> tff.learning.models.FunctionalModel:
  """A classifier `FunctionalModel` from weights and a pure `predict`.

  Args:
    weights: The initial trainable weights (there are no non-trainable ones).
    predict: `predict(weights, x) -> logits`, in TensorFlow ops.
    x_spec: Spec of a batch of inputs.
    y_spec: Spec of a batch of integer labels.
    mask_padding: Leave labels equal to `PAD_TOKEN` out of loss and metrics.

  Returns:
    A `FunctionalModel` on batches `OrderedDict(x=..., y=...)`.
  """

  @tf.function
  def predict_on_batch(model_weights, x, training=True):
    del training  # No layer behaves differently in training.
    trainable, _ = model_weights
    return predict(tuple(trainable), x)

  return tff.learning.models.FunctionalModel(
      initial_weights=(tuple(weights), ()),
      predict_on_batch_fn=predict_on_batch,
      loss_fn=classification_loss_fn(mask_padding),
      metrics_fns=classification_metrics_fns(mask_padding),
      input_spec=collections.OrderedDict(x=x_spec, y=y_spec))
