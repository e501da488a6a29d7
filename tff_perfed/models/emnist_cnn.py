"""TFF's EMNIST baseline CNN (McMahan et al. 2017), without dropout.

TFF's `create_original_fedavg_cnn_model`: two 5x5 conv + max-pool, dense 512.
`build_emnist_cnn_split` cuts it for AFML after the second convolution
(`tff_perfed.models.split`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional
from tff_perfed.models import split


def build_emnist_cnn(*, num_classes: int,
                     seed: int) -> tff.learning.models.FunctionalModel:
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
      functional.glorot_uniform(rng, (5, 5, 1, 32), 25, 25 * 32),
      np.zeros([32], np.float32),
      functional.glorot_uniform(rng, (5, 5, 32, 64), 25 * 32, 25 * 64),
      np.zeros([64], np.float32),
      functional.glorot_uniform(rng, (7 * 7 * 64, 512), 7 * 7 * 64,
                                512),
      np.zeros([512], np.float32),
      functional.glorot_uniform(rng, (512, num_classes), 512,
                                num_classes),
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

  return functional.functional_model(weights, predict,
                           tf.TensorSpec([None, 28, 28, 1], tf.float32),
                           tf.TensorSpec([None], tf.int32))


def build_emnist_cnn_split(*, num_classes: int, seed: int) -> split.SplitModel:
  """`build_emnist_cnn` cut after its conv trunk, for AFML.

  The encoder is conv 5x5x32 (ReLU, max-pool) and conv 5x5x64
  (pre-activation) emitting z_mean [batch, 14, 14, 64], plus a 1x1 log-scale
  map; the head is ReLU, max-pool, dense 512 and the logits. At the means it
  computes `build_emnist_cnn` with the same seed.
  """
  whole = build_emnist_cnn(num_classes=num_classes, seed=seed)
  weights, _ = whole.initial_weights

  def encode(theta, x):
    h = tf.reshape(tf.cast(x, theta[0].dtype), [-1, 28, 28, 1])
    h = tf.nn.relu(tf.nn.conv2d(h, theta[0], 1, 'SAME') + theta[1])
    h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    return split.gaussian_output(
        tf.nn.conv2d(h, theta[2], 1, 'SAME') + theta[3], theta[4], theta[5])

  def head_predict(w, z):
    h = tf.nn.max_pool2d(tf.nn.relu(z), 2, 2, 'SAME')
    h = tf.reshape(h, [-1, 7 * 7 * 64])
    h = tf.nn.relu(tf.matmul(h, w[0]) + w[1])
    return tf.matmul(h, w[2]) + w[3]

  encoder = split.GaussianEncoder(
      initial_weights=tuple(weights[:4]) + split.log_scale_weights(64),
      encode=encode,
      input_spec=tf.TensorSpec([None, 28, 28, 1], tf.float32))
  head = split.head_model(tuple(weights[4:]), head_predict,
                          tf.TensorSpec([None, 14, 14, 64], tf.float32),
                          tf.TensorSpec([None], tf.int32))
  return split.SplitModel(encoder, head)
