"""The Per-FedAvg paper's MLP (Fallah et al. 2020, section 5).

Dense layers of 80 and 60 units with ELU activations, then logits.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional


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
