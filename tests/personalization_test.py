"""Personalized evaluation against a NumPy softmax-regression reference."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import tff_perfed
from tff_perfed import models
from tff_perfed import personalization

DIM, CLASSES = 3, 4


def _softmax(z):
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _np_metrics(w, b, x, y):
  p = _softmax(x @ w + b)
  loss = -np.log(p[np.arange(len(y)), y]).mean()
  return (p.argmax(1) == y).mean(), loss


def _np_step(w, b, x, y, alpha):
  g = _softmax(x @ w + b) - np.eye(CLASSES)[y]
  return w - alpha * x.T @ g / len(y), b - alpha * g.mean(0)


def _dataset(x, y, batch):
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(x=x.astype(np.float32), y=y.astype(np.int32))
  ).batch(batch)


def test_scores_after_each_adaptation_step_match_numpy():
  alpha, steps = 0.5, 3
  # hidden_units=() makes the MLP softmax regression.
  model = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0,
                           hidden_units=())
  evaluate = tff_perfed.build_personalization_eval(
      model, personalization_steps=steps, learning_rate=alpha)
  rng = np.random.default_rng(0)
  clients = []
  for _ in range(2):
    train_x, train_y = rng.normal(size=(8, DIM)), rng.integers(0, CLASSES, 8)
    test_x, test_y = rng.normal(size=(9, DIM)), rng.integers(0, CLASSES, 9)
    clients.append((train_x, train_y, test_x, test_y))
  w0, b0 = model.initial_weights[0]
  results = evaluate(
      tff_perfed.per_fedavg.build_initial_weights_computation(model)(),
      [_dataset(c[0], c[1], 4) for c in clients],
      [_dataset(c[2], c[3], 5) for c in clients])
  for result, (train_x, train_y, test_x, test_y) in zip(results, clients):
    w, b = w0.astype(np.float64), b0.astype(np.float64)
    for k in range(steps + 1):
      accuracy, loss = _np_metrics(w, b, test_x, test_y)
      np.testing.assert_allclose(result['accuracy'][k], accuracy, atol=1e-6)
      np.testing.assert_allclose(result['loss'][k], loss, rtol=1e-5)
      # Batches of 4 cycle over the two train batches (no repeat here: the
      # third step finds no batch and keeps the weights).
      if k < 2:
        batch = slice(4 * k, 4 * k + 4)
        w, b = _np_step(w, b, train_x[batch], train_y[batch], alpha)
    assert result['num_test_examples'] == 9


def test_summary_reports_mean_tenth_percentile_and_worst_client():
  rows = [{'personalized_accuracy@0': a, 'personalized_loss@0': l}
          for a, l in zip(np.linspace(0, 1, 11), np.linspace(2, 0, 11))]
  summary = personalization.summarize(rows)
  assert summary['personalized_accuracy@0'] == pytest.approx(0.5)
  assert summary['personalized_accuracy@0/p10'] == pytest.approx(0.1)
  assert summary['personalized_accuracy@0/worst'] == 0.0
  assert summary['personalized_loss@0/worst'] == 2.0
  assert summary['personalized_loss@0/p10'] == pytest.approx(1.8)


def test_rejects_negative_steps():
  model = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0)
  with pytest.raises(ValueError, match='personalization_steps'):
    tff_perfed.build_personalization_eval(
        model, personalization_steps=-1, learning_rate=0.1)
