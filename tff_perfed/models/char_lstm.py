"""TFF's Shakespeare baseline: character embedding, stacked LSTMs, logits.

Embedding 8, two LSTM layers of 256 units, dense over the vocabulary; the
padding id is masked out of loss and metrics. `build_char_lstm_split` cuts
it for AFML before the logits (`tff_perfed.models.split`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional
from tff_perfed.models import split


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
                    num_lstm_layers: int = 2
                   ) -> tff.learning.models.FunctionalModel:
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
        functional.glorot_uniform(rng, (fan_in, 4 * lstm_units), fan_in,
                                  4 * lstm_units),
        functional.glorot_uniform(rng, (lstm_units, 4 * lstm_units), lstm_units,
                        4 * lstm_units), bias
    ]
    fan_in = lstm_units
  weights += [
      functional.glorot_uniform(rng, (lstm_units, vocab_size), lstm_units,
                                vocab_size),
      np.zeros([vocab_size], np.float32)
  ]

  def predict(w, x):
    h = tf.gather(w[0], tf.cast(x, tf.int32))
    for layer in range(num_lstm_layers):
      kernel, recurrent, bias = w[1 + 3 * layer:4 + 3 * layer]
      h = _lstm_layer(h, kernel, recurrent, bias)
    return tf.einsum('btu,uv->btv', h, w[-2]) + w[-1]

  return functional.functional_model(
      tuple(weights),
      predict,
      tf.TensorSpec([None, None], tf.int32),
      tf.TensorSpec([None, None], tf.int32),
      mask_padding=True)


def build_char_lstm_split(*,
                          vocab_size: int,
                          seed: int,
                          embedding_dim: int = 8,
                          lstm_units: int = 256,
                          num_lstm_layers: int = 2) -> split.SplitModel:
  """`build_char_lstm` cut before its dense logits, for AFML.

  The encoder is the embedding and the LSTMs, whose last output is z_mean
  [batch, time, lstm_units], plus the log-scale map; the head is the dense
  logits (padding masked). At the means it computes `build_char_lstm` with
  the same seed.
  """
  whole = build_char_lstm(vocab_size=vocab_size, seed=seed,
                          embedding_dim=embedding_dim, lstm_units=lstm_units,
                          num_lstm_layers=num_lstm_layers)
  weights, _ = whole.initial_weights
  num_encoder = 1 + 3 * num_lstm_layers

  def encode(theta, x):
    h = tf.gather(theta[0], tf.cast(x, tf.int32))
    for layer in range(num_lstm_layers):
      kernel, recurrent, bias = theta[1 + 3 * layer:4 + 3 * layer]
      h = _lstm_layer(h, kernel, recurrent, bias)
    return split.gaussian_output(h, theta[-2], theta[-1])

  def head_predict(w, z):
    return tf.einsum('btu,uv->btv', z, w[0]) + w[1]

  encoder = split.GaussianEncoder(
      initial_weights=(tuple(weights[:num_encoder]) +
                       split.log_scale_weights(lstm_units)),
      encode=encode,
      input_spec=tf.TensorSpec([None, None], tf.int32))
  head = split.head_model(tuple(weights[num_encoder:]), head_predict,
                          tf.TensorSpec([None, None, lstm_units], tf.float32),
                          tf.TensorSpec([None, None], tf.int32),
                          mask_padding=True)
  return split.SplitModel(encoder, head)
