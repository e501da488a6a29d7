"""A small CNN for CIFAR-100 (Krizhevsky 2009) that trains on two CPU cores.

Not TFF's CIFAR baseline (Reddi et al. 2020 train a ResNet-18 with group
norm, far too slow for second-order meta-learning on a laptop): two 3x3
conv + max-pool blocks and a dense layer of 128, 556,708 parameters for 100
classes. No dropout and no batch norm, so prediction is a pure function of
the weights like the other built-in models (`functional`).
`build_cifar_cnn_split` cuts it for AFML after the second convolution
(`tff_perfed.models.split`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional
from tff_perfed.models import split

IMAGE_SHAPE = (32, 32, 3)
_DENSE_UNITS = 128
# Two 2x2 max-pools (SAME) take 32x32 to 8x8 with 64 channels.
_FLAT_SIZE = 8 * 8 * 64


def build_cifar_cnn(*, num_classes: int = 100,
                    seed: int) -> tff.learning.models.FunctionalModel:
  """A small CIFAR CNN, pure TF on its weights.

  conv 3x3x32 (same, ReLU) -> max-pool 2 -> conv 3x3x64 (same, ReLU) ->
  max-pool 2 -> dense 128 (ReLU) -> dense num_classes. Parameters:
  896 + 18,496 + 524,416 + 129 * num_classes (556,708 for 100 classes).

  Args:
    num_classes: 100 for CIFAR-100's fine labels.
    seed: Seed of the Glorot-uniform initialization (biases are zero).

  Returns:
    A `FunctionalModel` on `x` [batch, 32, 32, 3] float32 in [0, 1] and `y`
    [batch] int32.
  """
  rng = np.random.default_rng(seed)
  weights = (
      functional.glorot_uniform(rng, (3, 3, 3, 32), 9 * 3, 9 * 32),
      np.zeros([32], np.float32),
      functional.glorot_uniform(rng, (3, 3, 32, 64), 9 * 32, 9 * 64),
      np.zeros([64], np.float32),
      functional.glorot_uniform(rng, (_FLAT_SIZE, _DENSE_UNITS), _FLAT_SIZE,
                                _DENSE_UNITS),
      np.zeros([_DENSE_UNITS], np.float32),
      functional.glorot_uniform(rng, (_DENSE_UNITS, num_classes),
                                _DENSE_UNITS, num_classes),
      np.zeros([num_classes], np.float32),
  )

  def predict(w, x):
    h = tf.reshape(tf.cast(x, tf.float32), [-1, *IMAGE_SHAPE])
    for kernel, bias in ((w[0], w[1]), (w[2], w[3])):
      h = tf.nn.relu(tf.nn.conv2d(h, kernel, 1, 'SAME') + bias)
      h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    h = tf.reshape(h, [-1, _FLAT_SIZE])
    h = tf.nn.relu(tf.matmul(h, w[4]) + w[5])
    return tf.matmul(h, w[6]) + w[7]

  return functional.functional_model(weights, predict,
                                     tf.TensorSpec([None, *IMAGE_SHAPE],
                                                   tf.float32),
                                     tf.TensorSpec([None], tf.int32))


def build_cifar_cnn_split(*, num_classes: int = 100,
                          seed: int) -> split.SplitModel:
  """`build_cifar_cnn` cut after its conv trunk, for AFML.

  The encoder is conv 3x3x32 (ReLU, max-pool) and conv 3x3x64
  (pre-activation) emitting z_mean [batch, 16, 16, 64], plus a 1x1 log-scale
  map; the head is ReLU, max-pool, dense 128 and the logits. At the means it
  computes `build_cifar_cnn` with the same seed.
  """
  whole = build_cifar_cnn(num_classes=num_classes, seed=seed)
  weights, _ = whole.initial_weights

  def encode(theta, x):
    h = tf.reshape(tf.cast(x, theta[0].dtype), [-1, *IMAGE_SHAPE])
    h = tf.nn.relu(tf.nn.conv2d(h, theta[0], 1, 'SAME') + theta[1])
    h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    return split.gaussian_output(
        tf.nn.conv2d(h, theta[2], 1, 'SAME') + theta[3], theta[4], theta[5])

  def head_predict(w, z):
    h = tf.nn.max_pool2d(tf.nn.relu(z), 2, 2, 'SAME')
    h = tf.reshape(h, [-1, _FLAT_SIZE])
    h = tf.nn.relu(tf.matmul(h, w[0]) + w[1])
    return tf.matmul(h, w[2]) + w[3]

  encoder = split.GaussianEncoder(
      initial_weights=tuple(weights[:4]) + split.log_scale_weights(64),
      encode=encode,
      input_spec=tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32))
  head = split.head_model(tuple(weights[4:]), head_predict,
                          tf.TensorSpec([None, 16, 16, 64], tf.float32),
                          tf.TensorSpec([None], tf.int32))
  return split.SplitModel(encoder, head)
