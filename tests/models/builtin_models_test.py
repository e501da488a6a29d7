"""Models: shapes, padding masks, and second-order terms through each."""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms.meta_gradients import HessianMode


def _meta_gradients_agree(model, batch):
  loss_fn = learning_utils.batch_loss_fn(model)
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])
  results = {
      mode: meta_gradients.per_fedavg_meta_gradient(
          loss_fn, weights, (batch, batch, batch), inner_learning_rate=0.5,
          hessian_mode=mode, hessian_free_delta=1e-2)
      for mode in (HessianMode.EXACT, HessianMode.HESSIAN_FREE)
  }
  exact = np.concatenate([g.numpy().ravel() for g in results[HessianMode.EXACT]])
  free = np.concatenate(
      [g.numpy().ravel() for g in results[HessianMode.HESSIAN_FREE]])
  assert np.all(np.isfinite(exact))
  # Hessian-free approximates the exact product in float32.
  assert np.linalg.norm(exact - free) < 1e-2 * np.linalg.norm(exact)


def test_mlp_has_the_papers_layer_sizes():
  model = models.build_mlp(input_dim=64, num_classes=10, seed=0)
  shapes = [w.shape for w in model.initial_weights[0]]
  assert shapes == [(64, 80), (80,), (80, 60), (60,), (60, 10), (10,)]


def test_initialization_is_determined_by_the_seed():
  a = models.build_mlp(input_dim=4, num_classes=2, seed=1).initial_weights[0]
  b = models.build_mlp(input_dim=4, num_classes=2, seed=1).initial_weights[0]
  c = models.build_mlp(input_dim=4, num_classes=2, seed=2).initial_weights[0]
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a[0], c[0])


def test_emnist_cnn_outputs_logits_and_supports_second_order():
  model = models.build_emnist_cnn(num_classes=62, seed=0)
  rng = np.random.default_rng(0)
  batch = collections.OrderedDict(
      x=tf.constant(rng.random((3, 28, 28, 1)), tf.float32),
      y=tf.constant([1, 2, 3]))
  logits = model.predict_on_batch(model.initial_weights, batch['x'])
  assert logits.shape == (3, 62)
  loss_fn = learning_utils.batch_loss_fn(model)
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])
  exact, first_order = (
      meta_gradients.per_fedavg_meta_gradient(
          loss_fn, weights, (batch, batch, batch), inner_learning_rate=0.5,
          hessian_mode=mode)
      for mode in (HessianMode.EXACT, HessianMode.FIRST_ORDER))
  # ReLU kinks make finite differences of this model's gradient unreliable
  # at test-sized steps; check the Hessian term is present and finite.
  assert all(np.all(np.isfinite(g)) for g in exact)
  assert any(not np.allclose(e, f) for e, f in zip(exact, first_order))


def test_char_lstm_ignores_padding_and_supports_second_order():
  model = models.build_char_lstm(vocab_size=12, seed=0, lstm_units=8)
  x = tf.constant([[3, 4, 5, 6, 0, 0], [7, 8, 9, 10, 11, 2]])
  y = tf.constant([[4, 5, 6, 2, 0, 0], [8, 9, 10, 11, 2, 3]])
  logits = model.predict_on_batch(model.initial_weights, x)
  assert logits.shape == (2, 6, 12)
  per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
  real = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
  np.testing.assert_allclose(
      model.loss(logits, y), per_token.numpy()[real].mean(), rtol=1e-6)
  _meta_gradients_agree(model, collections.OrderedDict(x=x, y=y))


def test_metrics_count_only_real_tokens():
  model = models.build_char_lstm(vocab_size=12, seed=0, lstm_units=8)
  x = tf.constant([[3, 4, 0]])
  y = tf.constant([[4, 0, 0]])
  state = model.update_metrics_state(
      model.initialize_metrics_state(), labels=y,
      batch_output=tff.learning.models.BatchOutput(
          predictions=model.predict_on_batch(model.initial_weights, x)))
  assert model.finalize_metrics(state)['num_examples'] == 1.0
