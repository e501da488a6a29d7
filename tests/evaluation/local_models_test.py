"""Local (trained-from-scratch) models against a NumPy MLP reference."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.evaluation import local_models

DIM, HIDDEN, CLASSES = 4, 5, 3
TRAIN_BATCH = 4


def _model():
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0,
                          hidden_units=(HIDDEN,))


def _elu(a):
  return np.where(a > 0, a, np.expm1(a))


def _softmax(z):
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _np_forward(weights, x):
  w1, b1, w2, b2 = weights
  a = x @ w1 + b1
  h = _elu(a)
  return a, h, h @ w2 + b2


def _np_sgd_step(weights, x, y, learning_rate):
  """One SGD step on the mean cross-entropy, backpropagated by hand."""
  w1, b1, w2, b2 = weights
  a, h, logits = _np_forward(weights, x)
  d_logits = (_softmax(logits) - np.eye(CLASSES)[y]) / len(y)
  d_a = (d_logits @ w2.T) * np.where(a > 0, 1.0, np.exp(a))
  gradients = (x.T @ d_a, d_a.sum(0), h.T @ d_logits, d_logits.sum(0))
  return tuple(w - learning_rate * g for w, g in zip(weights, gradients))


def _np_train_and_score(initial, train_x, train_y, test_x, test_y, steps,
                        learning_rate):
  weights = tuple(w.astype(np.float64) for w in initial)
  for step in range(steps):
    batch = slice(TRAIN_BATCH * step, TRAIN_BATCH * (step + 1))
    if not len(train_y[batch]):  # The batches ran out: stop early.
      break
    weights = _np_sgd_step(weights, train_x[batch], train_y[batch],
                           learning_rate)
  _, _, logits = _np_forward(weights, test_x)
  p = _softmax(logits)
  loss = -np.log(p[np.arange(len(test_y)), test_y]).mean()
  return (p.argmax(1) == test_y).mean(), loss


def _dataset(x, y, batch):
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(x=x.astype(np.float32), y=y.astype(np.int32))
  ).batch(batch)


def _clients(seed, num_clients=2, num_train=10, num_test=7):
  rng = np.random.default_rng(seed)
  clients = []
  for _ in range(num_clients):
    clients.append((rng.normal(size=(num_train, DIM)),
                    rng.integers(0, CLASSES, num_train),
                    rng.normal(size=(num_test, DIM)),
                    rng.integers(0, CLASSES, num_test)))
  return clients


def _evaluate(model, clients, steps, learning_rate):
  evaluate = local_models.build_local_model_eval(
      model, steps=steps, learning_rate=learning_rate)
  return evaluate(
      learning_utils.build_initial_weights_computation(model)(),
      [_dataset(c[0], c[1], TRAIN_BATCH) for c in clients],
      [_dataset(c[2], c[3], 3) for c in clients])


def test_each_client_trains_from_the_initial_weights_on_its_own_data():
  model, steps, learning_rate = _model(), 2, 0.5
  clients = _clients(seed=0)
  results = _evaluate(model, clients, steps, learning_rate)
  assert len(results) == len(clients)
  for result, client in zip(results, clients):
    accuracy, loss = _np_train_and_score(model.initial_weights[0], *client,
                                         steps, learning_rate)
    np.testing.assert_allclose(result['accuracy'], accuracy, atol=1e-5)
    np.testing.assert_allclose(result['loss'], loss, rtol=1e-5, atol=1e-5)
    assert result['num_test_examples'] == len(client[3])
    assert set(result) == {'accuracy', 'loss', 'num_test_examples'}


def test_steps_beyond_the_available_batches_stop_early():
  model, learning_rate = _model(), 0.5
  # 10 examples in batches of 4: three batches.
  clients = _clients(seed=1)
  beyond = _evaluate(model, clients, 50, learning_rate)
  exact = _evaluate(model, clients, 3, learning_rate)
  for long, short, client in zip(beyond, exact, clients):
    np.testing.assert_allclose(long['loss'], short['loss'], rtol=1e-6)
    assert long['accuracy'] == short['accuracy']
    _, loss = _np_train_and_score(model.initial_weights[0], *client, 50,
                                  learning_rate)
    np.testing.assert_allclose(long['loss'], loss, rtol=1e-5, atol=1e-5)


def test_training_changes_the_score():
  # Guards the comparisons above against a model that never moves.
  model = _model()
  clients = _clients(seed=0)
  trained = _evaluate(model, clients, 3, 0.5)
  barely = _evaluate(model, clients, 1, 1e-9)
  assert not np.isclose(trained[0]['loss'], barely[0]['loss'])


@pytest.mark.parametrize('kwargs,name', [
    (dict(steps=0), 'steps'),
    (dict(steps=1.5), 'steps'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(learning_rate=float('inf')), 'learning_rate'),
])
def test_invalid_arguments_are_rejected_naming_the_argument(kwargs, name):
  arguments = dict(steps=1, learning_rate=0.1)
  arguments.update(kwargs)
  with pytest.raises((ValueError, TypeError), match=name):
    local_models.build_local_model_eval(_model(), **arguments)


def test_rows_prefix_every_metric_with_local():
  rows = local_models.local_model_rows([
      collections.OrderedDict(accuracy=np.float32(0.5), loss=np.float32(1.5),
                              num_test_examples=np.float32(4))])
  assert rows == [{'local_accuracy': 0.5, 'local_loss': 1.5,
                   'num_test_examples': 4.0}]


def test_a_client_without_test_examples_has_no_local_score():
  model, steps, learning_rate = _model(), 2, 0.5
  scored, = _clients(seed=2, num_clients=1)
  empty, = _clients(seed=3, num_clients=1, num_test=0)
  results = _evaluate(model, [scored, empty], steps, learning_rate)
  accuracy, _ = _np_train_and_score(model.initial_weights[0], *scored, steps,
                                    learning_rate)
  np.testing.assert_allclose(results[0]['accuracy'], accuracy, atol=1e-5)
  # Not accuracy 0 and loss 0 (the metrics' 0 / 0).
  assert results[1]['num_test_examples'] == 0
  assert np.isnan(results[1]['accuracy']) and np.isnan(results[1]['loss'])
