"""Least-squares clients for the personalized algorithms' closed forms.

F_k(w) = 1/(2 n_k) ||X_k w - y_k||^2 as a `FunctionalModel` on batches
`OrderedDict(x=float32 [n, DIM], y=float32 [n, 1])`; CLIENTS clients whose
true weights differ, each with one full batch.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

DIM = 3
CLIENTS = 4
EXAMPLES = 12


def least_squares_model():
  @tf.function
  def predict_on_batch(weights, x, training=True):
    del training
    (w,), _ = weights
    return tf.matmul(x, w)

  @tf.function
  def loss(output, label, sample_weight=None):
    del sample_weight
    return 0.5 * tf.reduce_mean(tf.square(output - label))

  return tff.learning.models.FunctionalModel(
      initial_weights=((np.zeros((DIM, 1), np.float32),), ()),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss,
      input_spec=collections.OrderedDict(
          x=tf.TensorSpec([None, DIM], tf.float32),
          y=tf.TensorSpec([None, 1], tf.float32)))


def client_arrays(seed=0):
  rng = np.random.default_rng(seed)
  arrays = []
  for k in range(CLIENTS):
    x = rng.normal(size=(EXAMPLES, DIM))
    w_k = rng.normal(size=(DIM, 1)) + k
    arrays.append((x, x @ w_k + 0.1 * rng.normal(size=(EXAMPLES, 1))))
  return arrays


def full_batch(x, y):
  return tf.data.Dataset.from_tensors(collections.OrderedDict(
      x=x.astype(np.float32), y=y.astype(np.float32)))
