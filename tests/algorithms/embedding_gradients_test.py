"""The family's steps on models with embeddings (sparse gradients).

An embedding lookup's gradient is an `IndexedSlices`; each step must give
what the same loss written with a one-hot matmul (a dense gradient) gives.
"""

import numpy as np
import tensorflow as tf

from tff_perfed.algorithms import apfl
from tff_perfed.algorithms import ditto
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import personal_heads
from tff_perfed.algorithms import pfedme

VOCABULARY, WIDTH = 5, 3
RNG = np.random.default_rng(0)
EMBEDDING = tf.constant(RNG.normal(size=(VOCABULARY, WIDTH)), tf.float32)
HEAD = tf.constant(RNG.normal(size=(WIDTH,)), tf.float32)
BATCH = {'x': tf.constant([0, 3, 3, 1]), 'y': tf.constant([1., -1., 0., 2.])}


def _lookup_loss(weights, batch):
  embedding, head = weights
  features = tf.gather(embedding, batch['x'])  # IndexedSlices gradient.
  return tf.reduce_mean((tf.linalg.matvec(features, head) - batch['y'])**2)


def _one_hot_loss(weights, batch):
  embedding, head = weights
  features = tf.one_hot(batch['x'], VOCABULARY) @ embedding
  return tf.reduce_mean((tf.linalg.matvec(features, head) - batch['y'])**2)


def _assert_same(sparse, dense):
  for s, d in zip(tf.nest.flatten(sparse), tf.nest.flatten(dense)):
    np.testing.assert_allclose(s.numpy(), d.numpy(), rtol=1e-5, atol=1e-6)


def test_dense_gradients_of_a_lookup_are_the_one_hot_gradients():
  weights = (EMBEDDING, HEAD)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(weights)
    sparse_loss = _lookup_loss(weights, BATCH)
    dense_loss = _one_hot_loss(weights, BATCH)
  assert isinstance(tape.gradient(sparse_loss, weights)[0], tf.IndexedSlices)
  sparse = learning_utils.dense_gradients(tape, sparse_loss, weights)
  assert all(isinstance(g, tf.Tensor) for g in sparse)
  _assert_same(sparse, tape.gradient(dense_loss, weights))


def test_ditto_personal_step_on_a_lookup():
  v, w = (EMBEDDING, HEAD), (EMBEDDING * 0.5, HEAD + 1.0)
  step = lambda loss_fn: ditto.ditto_personal_step(
      loss_fn, v, w, BATCH, learning_rate=0.1, regularization=0.5)
  _assert_same(step(_lookup_loss), step(_one_hot_loss))


def test_apfl_local_step_on_a_lookup():
  w, v = (EMBEDDING, HEAD), (EMBEDDING * 0.5, HEAD + 1.0)
  step = lambda loss_fn: apfl.apfl_local_step(
      loss_fn, w, v, tf.constant(0.3), BATCH, learning_rate=0.1,
      adapt_mixing_weight=True)
  _assert_same(step(_lookup_loss), step(_one_hot_loss))


def test_pfedme_personalization_on_a_lookup():
  step = lambda loss_fn: pfedme.pfedme_personalize(
      loss_fn, (EMBEDDING, HEAD), BATCH, learning_rate=0.05,
      regularization=15.0, steps=3)
  _assert_same(step(_lookup_loss), step(_one_hot_loss))


def test_fedrep_and_fedper_rounds_on_a_lookup_body():
  dataset = tf.data.Dataset.from_tensors(BATCH)
  fedrep = lambda loss_fn: personal_heads.fedrep_local_update(
      loss_fn, (EMBEDDING,), (HEAD,), dataset, learning_rate=0.1,
      head_steps=2, body_steps=1)
  fedper = lambda loss_fn: personal_heads.fedper_local_update(
      loss_fn, (EMBEDDING,), (HEAD,), dataset, learning_rate=0.1,
      local_steps=2)
  for update in (fedrep, fedper):
    _assert_same(update(_lookup_loss), update(_one_hot_loss))
