"""Models as `tff.learning.models.FunctionalModel`s built from pure functions.

Each model is a tuple of weight arrays and a `predict(weights, x)` written
directly in TensorFlow ops, so that gradients, Hessian-vector products and
finite differences are taken on plain tensors (no `tf.Variable`s, no hidden
randomness: dropout would make f(w + dv; D'') and f(w - dv; D'') see
different masks and break the Hessian-free difference).

* `build_mlp`: the Per-FedAvg paper's MLP (section 5: hidden layers of 80 and
  60 units, ELU).
* `build_emnist_cnn`: the CNN of TFF's EMNIST baseline
  (`create_original_fedavg_cnn_model`: two 5x5 conv + max-pool, dense 512).
* `build_char_lstm`: TFF's Shakespeare baseline (embedding 8, two LSTM
  layers of 256 units, dense over the vocabulary), padding masked out.
"""

import collections
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

PAD_TOKEN = 0  # Label id masked out of the character model's loss/metrics.


def _glorot_uniform(rng: np.random.Generator, shape: Sequence[int], fan_in: int,
                    fan_out: int) -> np.ndarray:
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def masked_cross_entropy(logits: tf.Tensor,
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


def _metrics_fns(mask_padding: bool):
  """Pure metric functions: summable state of loss, correct and count."""

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


def _functional_model(weights: Tuple[np.ndarray, ...],
                      predict: Callable[[Tuple[tf.Tensor, ...], tf.Tensor],
                                        tf.Tensor], x_spec: tf.TensorSpec,
                      y_spec: tf.TensorSpec,
                      mask_padding: bool = False) -> tff.learning.models.FunctionalModel:

  @tf.function
  def predict_on_batch(model_weights, x, training=True):
    del training  # No layer behaves differently in training.
    trainable, _ = model_weights
    return predict(tuple(trainable), x)

  def loss(output, label, sample_weight=None):
    if mask_padding and sample_weight is None:
      sample_weight = tf.not_equal(tf.cast(label, tf.int32), PAD_TOKEN)
    return masked_cross_entropy(output, label, sample_weight)

  return tff.learning.models.FunctionalModel(
      initial_weights=(tuple(weights), ()),
      predict_on_batch_fn=predict_on_batch,
      loss_fn=loss,
      metrics_fns=_metrics_fns(mask_padding),
      input_spec=collections.OrderedDict(x=x_spec, y=y_spec))


def build_mlp(*,
              input_dim: int,
              num_classes: int,
              seed: int,
              hidden_units: Sequence[int] = (80, 60)) -> tff.learning.models.FunctionalModel:
  """The Per-FedAvg paper's MLP: dense layers with ELU, then logits.

  Args:
    input_dim: Size of the flattened input.
    num_classes: Number of output classes.
    seed: Seed of the Glorot-uniform initialization (biases start at zero).
    hidden_units: Widths of the hidden layers; the paper uses (80, 60).

  Returns:
    A `FunctionalModel` taking `x` of shape [batch, input_dim] float32 and
    `y` of shape [batch] int32.
  """
  rng = np.random.default_rng(seed)
  sizes = [input_dim, *hidden_units, num_classes]
  weights = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    weights += [
        _glorot_uniform(rng, (fan_in, fan_out), fan_in, fan_out),
        np.zeros([fan_out], np.float32)
    ]

  def predict(w, x):
    h = tf.reshape(tf.cast(x, tf.float32), [-1, input_dim])
    for i in range(0, len(w) - 2, 2):
      h = tf.nn.elu(tf.matmul(h, w[i]) + w[i + 1])
    return tf.matmul(h, w[-2]) + w[-1]

  return _functional_model(
      tuple(weights), predict, tf.TensorSpec([None, input_dim], tf.float32),
      tf.TensorSpec([None], tf.int32))


def build_emnist_cnn(*, num_classes: int, seed: int) -> tff.learning.models.FunctionalModel:
  """TFF's EMNIST baseline CNN (McMahan et al. 2017), without dropout.

  conv 5x5x32 (same, ReLU) -> max-pool 2 -> conv 5x5x64 (same, ReLU) ->
  max-pool 2 -> dense 512 (ReLU) -> dense num_classes.

  Args:
    num_classes: 10 for EMNIST digits, 62 for all characters.
    seed: Seed of the Glorot-uniform initialization.

  Returns:
    A `FunctionalModel` on `x` [batch, 28, 28, 1] float32, `y` [batch] int32.
  """
  rng = np.random.default_rng(seed)
  weights = (
      _glorot_uniform(rng, (5, 5, 1, 32), 25, 25 * 32),
      np.zeros([32], np.float32),
      _glorot_uniform(rng, (5, 5, 32, 64), 25 * 32, 25 * 64),
      np.zeros([64], np.float32),
      _glorot_uniform(rng, (7 * 7 * 64, 512), 7 * 7 * 64, 512),
      np.zeros([512], np.float32),
      _glorot_uniform(rng, (512, num_classes), 512, num_classes),
      np.zeros([num_classes], np.float32),
  )

  def predict(w, x):
    h = tf.reshape(tf.cast(x, tf.float32), [-1, 28, 28, 1])
    for kernel, bias in ((w[0], w[1]), (w[2], w[3])):
      h = tf.nn.relu(tf.nn.conv2d(h, kernel, 1, 'SAME') + bias)
      h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    h = tf.reshape(h, [-1, 7 * 7 * 64])
    h = tf.nn.relu(tf.matmul(h, w[4]) + w[5])
    return tf.matmul(h, w[6]) + w[7]

  return _functional_model(weights, predict,
                           tf.TensorSpec([None, 28, 28, 1], tf.float32),
                           tf.TensorSpec([None], tf.int32))


def _lstm_layer(inputs: tf.Tensor, kernel: tf.Tensor, recurrent: tf.Tensor,
                bias: tf.Tensor) -> tf.Tensor:
  """Runs an LSTM over batch-major `inputs` [batch, time, features]."""
  units = recurrent.shape[0]
  batch = tf.shape(inputs)[0]
  # Input projections for every step at once; only the recurrence is serial.
  projected = tf.einsum('btf,fg->tbg', inputs, kernel) + bias

  def step(carry, x_t):
    h, c = carry
    gates = x_t + tf.matmul(h, recurrent)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, c

  zeros = tf.zeros([batch, units], inputs.dtype)
  hidden, _ = tf.scan(step, projected, initializer=(zeros, zeros))
  return tf.transpose(hidden, [1, 0, 2])


def build_char_lstm(*,
                    vocab_size: int,
                    seed: int,
                    embedding_dim: int = 8,
                    lstm_units: int = 256,
                    num_lstm_layers: int = 2) -> tff.learning.models.FunctionalModel:
  """TFF's Shakespeare baseline: embedding, stacked LSTMs, dense logits.

  Args:
    vocab_size: Number of token ids, padding (id 0) included.
    seed: Seed of the initialization.
    embedding_dim: Width of the character embedding (8 in the baseline).
    lstm_units: Units per LSTM layer (256 in the baseline).
    num_lstm_layers: Number of stacked LSTM layers (2 in the baseline).

  Returns:
    A `FunctionalModel` on `x`, `y` of shape [batch, time] int32; positions
    whose label is the padding id are excluded from loss and metrics.
  """
  rng = np.random.default_rng(seed)
  weights = [rng.uniform(-0.05, 0.05, (vocab_size, embedding_dim)).astype(
      np.float32)]
  fan_in = embedding_dim
  for _ in range(num_lstm_layers):
    bias = np.zeros([4 * lstm_units], np.float32)
    bias[lstm_units:2 * lstm_units] = 1.0  # Forget-gate bias 1, as Keras.
    weights += [
        _glorot_uniform(rng, (fan_in, 4 * lstm_units), fan_in, 4 * lstm_units),
        _glorot_uniform(rng, (lstm_units, 4 * lstm_units), lstm_units,
                        4 * lstm_units), bias
    ]
    fan_in = lstm_units
  weights += [
      _glorot_uniform(rng, (lstm_units, vocab_size), lstm_units, vocab_size),
      np.zeros([vocab_size], np.float32)
  ]

  def predict(w, x):
    h = tf.gather(w[0], tf.cast(x, tf.int32))
    for layer in range(num_lstm_layers):
      kernel, recurrent, bias = w[1 + 3 * layer:4 + 3 * layer]
      h = _lstm_layer(h, kernel, recurrent, bias)
    return tf.einsum('btu,uv->btv', h, w[-2]) + w[-1]

  return _functional_model(
      tuple(weights),
      predict,
      tf.TensorSpec([None, None], tf.int32),
      tf.TensorSpec([None, None], tf.int32),
      mask_padding=True)


def batch_loss_fn(model: tff.learning.models.FunctionalModel,
                  non_trainable_weights: Sequence[Any] = ()):
  """Adapts a `FunctionalModel` to `loss_fn(trainable_weights, batch)`.

  This is the form `tff_perfed.meta_gradients` differentiates; `batch` is the
  model's `OrderedDict(x=..., y=...)` element.
  """
  non_trainable_weights = tuple(non_trainable_weights)

  def loss_fn(trainable_weights, batch):
    output = model.predict_on_batch(
        (tuple(trainable_weights), non_trainable_weights),
        batch['x'],
        training=True)
    return model.loss(output, batch['y'])

  return loss_fn
