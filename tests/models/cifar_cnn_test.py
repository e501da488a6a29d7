"""The CIFAR CNN: shapes, parameter count, and its AFML split."""

import collections

import numpy as np
import tensorflow as tf

from tff_perfed import models
from tff_perfed.algorithms import learning_utils


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.random((n, 32, 32, 3)), tf.float32)


def test_cifar_cnn_outputs_logits_with_finite_loss_and_gradients():
  model = models.build_cifar_cnn(num_classes=100, seed=0)
  batch = collections.OrderedDict(x=_images(3), y=tf.constant([0, 5, 99]))
  logits = model.predict_on_batch(model.initial_weights, batch['x'])
  assert logits.shape == (3, 100)
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])
  with tf.GradientTape() as tape:
    tape.watch(weights)
    loss = learning_utils.batch_loss_fn(model)(weights, batch)
  gradients = tape.gradient(loss, weights)
  assert np.isfinite(loss.numpy())
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in gradients)


def test_cifar_cnn_parameter_count_matches_the_hand_count():
  model = models.build_cifar_cnn(num_classes=100, seed=0)
  shapes = [w.shape for w in model.initial_weights[0]]
  assert shapes == [(3, 3, 3, 32), (32,), (3, 3, 32, 64), (64,), (4096, 128),
                    (128,), (128, 100), (100,)]
  conv1 = 3 * 3 * 3 * 32 + 32  # 896
  conv2 = 3 * 3 * 32 * 64 + 64  # 18,496
  dense = 8 * 8 * 64 * 128 + 128  # 524,416
  logits = 128 * 100 + 100  # 12,900
  total = sum(int(np.prod(s)) for s in shapes)
  assert total == conv1 + conv2 + dense + logits == 556_708


def test_cifar_cnn_split_at_the_means_predicts_as_the_whole_model():
  whole = models.build_cifar_cnn(num_classes=20, seed=3)
  split_model = models.build_cifar_cnn_split(num_classes=20, seed=3)
  x = _images(4, seed=1)
  z_mean, z_log_scale = split_model.encoder.encode(
      tuple(tf.constant(w) for w in split_model.encoder.initial_weights), x)
  assert z_mean.shape == z_log_scale.shape == (4, 16, 16, 64)
  np.testing.assert_allclose(z_log_scale, -3.0)  # INITIAL_LOG_SCALE.
  evaluation = models.evaluation_model(split_model)
  np.testing.assert_allclose(
      evaluation.predict_on_batch(evaluation.initial_weights, x),
      whole.predict_on_batch(whole.initial_weights, x), rtol=1e-5, atol=1e-5)
  # The encoder's weights are the trunk's plus the 64x64 log-scale map.
  encoder_size = sum(w.size for w in split_model.encoder.initial_weights)
  assert encoder_size == 896 + 18_496 + 64 * 64 + 64
