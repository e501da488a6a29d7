"""The two-convolution image classifier behind the EMNIST and CIFAR CNNs.

conv kxk x32 (same, ReLU) -> max-pool 2 -> conv kxk x64 (same, ReLU) ->
max-pool 2 -> dense (ReLU) -> dense num_classes, Glorot-uniform weights and
zero biases, no dropout: a pure function of its weights like every built-in
model. `build_conv_net_split` cuts it for AFML after the second convolution
(pre-activation): the encoder's z_mean is that feature map, plus a 1x1
log-scale map (`tff_perfed.models.split`); the head is ReLU, pool and the
dense layers.
"""

import math
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional
from tff_perfed.models import split

_CHANNELS = (32, 64)


def _layout(image_shape: Sequence[int]):
  height, width, _ = image_shape
  # Each SAME max-pool halves a side, rounding up.
  half = (math.ceil(height / 2), math.ceil(width / 2))
  quarter = (math.ceil(half[0] / 2), math.ceil(half[1] / 2))
  return half, quarter[0] * quarter[1] * _CHANNELS[1]


def build_conv_net(*, image_shape: Sequence[int], kernel_size: int,
                   dense_units: int, num_classes: int,
                   seed: int) -> tff.learning.models.FunctionalModel:
  """The whole classifier on `x` [batch, *image_shape], `y` [batch] int32."""
  rng = np.random.default_rng(seed)
  _, flat_size = _layout(image_shape)
  k2 = kernel_size * kernel_size
  channels_in = image_shape[2]
  weights = (
      functional.glorot_uniform(rng, (kernel_size, kernel_size, channels_in,
                                      _CHANNELS[0]), k2 * channels_in,
                                k2 * _CHANNELS[0]),
      np.zeros([_CHANNELS[0]], np.float32),
      functional.glorot_uniform(rng, (kernel_size, kernel_size, _CHANNELS[0],
                                      _CHANNELS[1]), k2 * _CHANNELS[0],
                                k2 * _CHANNELS[1]),
      np.zeros([_CHANNELS[1]], np.float32),
      functional.glorot_uniform(rng, (flat_size, dense_units), flat_size,
                                dense_units),
      np.zeros([dense_units], np.float32),
      functional.glorot_uniform(rng, (dense_units, num_classes), dense_units,
                                num_classes),
      np.zeros([num_classes], np.float32),
  )

  def predict(w, x):
    h = tf.reshape(tf.cast(x, tf.float32), [-1, *image_shape])
    for kernel, bias in ((w[0], w[1]), (w[2], w[3])):
      h = tf.nn.relu(tf.nn.conv2d(h, kernel, 1, 'SAME') + bias)
      h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    h = tf.reshape(h, [-1, flat_size])
    h = tf.nn.relu(tf.matmul(h, w[4]) + w[5])
    return tf.matmul(h, w[6]) + w[7]

  return functional.functional_model(
      weights, predict, tf.TensorSpec([None, *image_shape], tf.float32),
      tf.TensorSpec([None], tf.int32))


def build_conv_net_split(*, image_shape: Sequence[int], kernel_size: int,
                         dense_units: int, num_classes: int,
                         seed: int) -> split.SplitModel:
  """`build_conv_net` cut after its conv trunk; equal to it at the means."""
  whole = build_conv_net(image_shape=image_shape, kernel_size=kernel_size,
                         dense_units=dense_units, num_classes=num_classes,
                         seed=seed)
  weights, _ = whole.initial_weights
  half, flat_size = _layout(image_shape)

  def encode(theta, x):
    h = tf.reshape(tf.cast(x, theta[0].dtype), [-1, *image_shape])
    h = tf.nn.relu(tf.nn.conv2d(h, theta[0], 1, 'SAME') + theta[1])
    h = tf.nn.max_pool2d(h, 2, 2, 'SAME')
    return split.gaussian_output(
        tf.nn.conv2d(h, theta[2], 1, 'SAME') + theta[3], theta[4], theta[5])

  def head_predict(w, z):
    h = tf.nn.max_pool2d(tf.nn.relu(z), 2, 2, 'SAME')
    h = tf.reshape(h, [-1, flat_size])
    h = tf.nn.relu(tf.matmul(h, w[0]) + w[1])
    return tf.matmul(h, w[2]) + w[3]

  encoder = split.GaussianEncoder(
      initial_weights=(tuple(weights[:4]) +
                       split.log_scale_weights(_CHANNELS[1])),
      encode=encode,
      input_spec=tf.TensorSpec([None, *image_shape], tf.float32))
  head = split.head_model(
      tuple(weights[4:]), head_predict,
      tf.TensorSpec([None, *half, _CHANNELS[1]], tf.float32),
      tf.TensorSpec([None], tf.int32))
  return split.SplitModel(encoder, head)
