"""The Per-FedAvg paper's MLP (Fallah et al. 2020, section 5).

Dense layers of 80 and 60 units with ELU activations, then logits.
`build_mlp_split` cuts it for AFML after the first dense layer
(`tff_perfed.models.split`).
"""

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional
from tff_perfed.models import split


def build_mlp(*,
              input_dim: int,
              num_classes: int,
              seed: int,
              hidden_units: Sequence[int] = (80, 60)
             ) -> tff.learning.models.FunctionalModel:
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
        functional.glorot_uniform(rng, (fan_in, fan_out), fan_in, fan_out),
        np.zeros([fan_out], np.float32)
    ]

  def predict(w, x):
    h = tf.reshape(tf.cast(x, tf.float32), [-1, input_dim])
    for i in range(0, len(w) - 2, 2):
      h = tf.nn.elu(tf.matmul(h, w[i]) + w[i + 1])
    return tf.matmul(h, w[-2]) + w[-1]

  return functional.functional_model(
      tuple(weights), predict, tf.TensorSpec([None, input_dim], tf.float32),
      tf.TensorSpec([None], tf.int32))


def build_mlp_split(*,
                    input_dim: int,
                    num_classes: int,
                    seed: int,
                    hidden_units: Sequence[int] = (80, 60)
                   ) -> split.SplitModel:
  """`build_mlp` cut after its first dense layer, for AFML.

  The encoder is the first dense layer (pre-activation) emitting z_mean, plus
  the log-scale map; the head is ELU followed by the other layers. With the
  encoder at its mean and z at its mean the split model computes `build_mlp`
  with the same seed.

  Returns:
    A `split.SplitModel` on `x` [batch, input_dim] float32, `y` [batch]
    int32, with representations z of shape [batch, hidden_units[0]].
  """
  whole = build_mlp(input_dim=input_dim, num_classes=num_classes, seed=seed,
                    hidden_units=hidden_units)
  weights, _ = whole.initial_weights
  width = hidden_units[0]

  def encode(theta, x):
    h = tf.reshape(tf.cast(x, theta[0].dtype), [-1, input_dim])
    return split.gaussian_output(
        tf.matmul(h, theta[0]) + theta[1], theta[2], theta[3])

  def head_predict(w, z):
    h = tf.nn.elu(z)
    for i in range(0, len(w) - 2, 2):
      h = tf.nn.elu(tf.matmul(h, w[i]) + w[i + 1])
    return tf.matmul(h, w[-2]) + w[-1]

  encoder = split.GaussianEncoder(
      initial_weights=tuple(weights[:2]) + split.log_scale_weights(width),
      encode=encode,
      input_spec=tf.TensorSpec([None, input_dim], tf.float32))
  head = split.head_model(tuple(weights[2:]), head_predict,
                          tf.TensorSpec([None, width], tf.float32),
                          tf.TensorSpec([None], tf.int32))
  return split.SplitModel(encoder, head)
