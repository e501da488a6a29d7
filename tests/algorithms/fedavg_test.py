"""The FedAvg wrapper: one round against a NumPy softmax-regression SGD."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import tff_perfed
from tff_perfed import models

DIM, CLASSES = 3, 4


def _softmax(z):
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _local_sgd(w, b, batches, lr):
  for x, y in batches:
    g = (_softmax(x @ w + b) - np.eye(CLASSES)[y]) / len(y)
    w, b = w - lr * x.T @ g, b - lr * g.sum(0)
  return w, b


def test_one_round_is_the_uniform_mean_of_local_sgd():
  lr = 0.3
  model_fn = lambda: models.build_mlp(input_dim=DIM, num_classes=CLASSES,
                                      seed=2, hidden_units=())
  process = tff_perfed.build_fedavg(model_fn, client_learning_rate=lr)
  rng = np.random.default_rng(0)
  clients = [[(rng.normal(size=(5, DIM)).astype(np.float32),
               rng.integers(0, CLASSES, 5).astype(np.int32))
              for _ in range(n)] for n in (2, 3)]
  data = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=np.stack([x for x, _ in c]), y=np.stack([y for _, y in c])))
          for c in clients]
  state = process.initialize()
  w0, b0 = (np.asarray(v, np.float64)
            for v in process.get_model_weights(state).trainable)
  after = process.get_model_weights(process.next(state, data).state)
  local = [_local_sgd(w0, b0, c, lr) for c in clients]
  np.testing.assert_allclose(after.trainable[0],
                             np.mean([w for w, _ in local], axis=0),
                             atol=1e-6)
  np.testing.assert_allclose(after.trainable[1],
                             np.mean([b for _, b in local], axis=0),
                             atol=1e-6)


def test_invalid_learning_rate_is_rejected_naming_it():
  with pytest.raises(ValueError, match='client_learning_rate'):
    tff_perfed.build_fedavg(lambda: None, client_learning_rate=0.0)
