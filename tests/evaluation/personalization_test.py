"""Personalized evaluation against a NumPy softmax-regression reference."""

import collections
import json
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries

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


def _softmax_regression(seed=0):
  """The MLP without hidden layers: softmax regression, with a closed form."""
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=seed,
                          hidden_units=())


def test_scores_after_each_adaptation_step_match_numpy():
  alpha, steps = 0.5, 3
  model = _softmax_regression()
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
      learning_utils.build_initial_weights_computation(model)(),
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


@pytest.mark.parametrize('kwargs,name', [
    (dict(personalization_steps=-1), 'personalization_steps'),
    (dict(learning_rate=-0.1), 'learning_rate'),
    (dict(adaptation_draws=0), 'adaptation_draws'),
])
def test_invalid_arguments_are_rejected_naming_the_argument(kwargs, name):
  model = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0)
  arguments = dict(personalization_steps=1, learning_rate=0.1)
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=name):
    tff_perfed.build_personalization_eval(model, **arguments)


def test_scores_are_the_mean_over_independent_adaptation_draws():
  alpha, steps, draws = 0.5, 2, 3
  model = _softmax_regression(seed=1)
  weights = learning_utils.build_initial_weights_computation(model)()
  rng = np.random.default_rng(1)
  train_x, train_y = rng.normal(size=(24, DIM)), rng.integers(0, CLASSES, 24)
  test_x, test_y = rng.normal(size=(9, DIM)), rng.integers(0, CLASSES, 9)
  # Six batches of 4: draw r adapts on batches 2r and 2r + 1.
  train = _dataset(train_x, train_y, 4)
  test = _dataset(test_x, test_y, 9)
  averaged = tff_perfed.build_personalization_eval(
      model, personalization_steps=steps, learning_rate=alpha,
      adaptation_draws=draws)(weights, [train], [test])[0]
  single = tff_perfed.build_personalization_eval(
      model, personalization_steps=steps, learning_rate=alpha)
  per_draw = [single(weights, [train.skip(2 * r)], [test])[0]
              for r in range(draws)]
  for name in ('accuracy', 'loss'):
    np.testing.assert_allclose(
        averaged[name], np.mean([d[name] for d in per_draw], axis=0),
        rtol=1e-6)
  # The draws really differ, so the average is not one of them.
  assert not np.allclose(per_draw[0]['loss'], per_draw[1]['loss'])


def test_test_split_is_read_once_however_many_steps_and_draws_score_it():
  steps, draws = 3, 2
  model = _softmax_regression()
  weights = learning_utils.build_initial_weights_computation(model)()
  rng = np.random.default_rng(2)
  train_x, train_y = rng.normal(size=(24, DIM)), rng.integers(0, CLASSES, 24)
  test_x, test_y = rng.normal(size=(9, DIM)), rng.integers(0, CLASSES, 9)
  reads = []
  test = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=test_x.astype(np.float32), y=test_y.astype(np.int32)))
  # Each element's x and y call Python once per time they are produced.
  counted_test = test.map(
      lambda e: tf.nest.map_structure(
          lambda t: t + tf.cast(tf.py_function(
              lambda: reads.append(1) or 0, [], tf.int32), t.dtype) * 0, e)
  ).batch(5)
  personalize_and_score = personalization.build_personalize_and_score(
      model, personalization_steps=steps, learning_rate=0.5,
      adaptation_draws=draws)
  trainable, non_trainable = weights.trainable, weights.non_trainable
  cached = personalize_and_score((trainable, non_trainable),
                                 _dataset(train_x, train_y, 4), counted_test)
  # One read per test example (x and y each), not (K * R + 1) of them.
  assert len(reads) == 2 * 9
  plain = personalize_and_score((trainable, non_trainable),
                                _dataset(train_x, train_y, 4), test.batch(5))
  for name in ('accuracy', 'loss', 'num_test_examples'):
    np.testing.assert_array_equal(cached[name], plain[name])


def test_per_client_rows_name_every_metric_and_step():
  rows = personalization.per_client_metrics([
      {'accuracy': np.array([0.5, 0.75]), 'loss': np.array([1.0, 0.5]),
       'num_test_examples': np.float32(4)}])
  assert rows == [{'personalized_accuracy@0': 0.5,
                   'personalized_accuracy@1': 0.75,
                   'personalized_loss@0': 1.0, 'personalized_loss@1': 0.5,
                   'num_test_examples': 4.0}]


def test_a_model_without_metrics_is_rejected_naming_it():
  base = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0)
  silent = tff.learning.models.FunctionalModel(
      initial_weights=base.initial_weights,
      predict_on_batch_fn=base.predict_on_batch,
      loss_fn=base.loss,
      input_spec=base.input_spec)
  with pytest.raises(ValueError, match='metrics'):
    tff_perfed.build_personalization_eval(
        silent, personalization_steps=1, learning_rate=0.1)


def test_degenerate_settings_log_a_warning(caplog):
  model = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0)
  with caplog.at_level(logging.WARNING):
    tff_perfed.build_personalization_eval(
        model, personalization_steps=2, learning_rate=0.0,
        adaptation_draws=3)
  assert 'learning_rate=0' in caplog.text
  assert 'adaptation_draws=3 without adaptation' in caplog.text


def test_clients_without_test_examples_or_with_nan_data_are_counted_not_scored():
  alpha, steps = 0.5, 1
  model = _softmax_regression()
  evaluate = tff_perfed.build_personalization_eval(
      model, personalization_steps=steps, learning_rate=alpha)
  rng = np.random.default_rng(2)

  def client(num_test):
    return (rng.normal(size=(4, DIM)), rng.integers(0, CLASSES, 4),
            rng.normal(size=(num_test, DIM)), rng.integers(0, CLASSES,
                                                           num_test))

  good = [client(5), client(6)]
  no_test = client(0)
  nan_test = client(5)
  nan_test[2][1, 0] = np.nan  # Unscorable before and after adapting.
  nan_train = client(5)
  nan_train[0][0, 2] = np.nan  # Scores at k = 0, NaN after the step.
  clients = [good[0], no_test, nan_test, good[1], nan_train]
  results = evaluate(
      learning_utils.build_initial_weights_computation(model)(),
      [_dataset(c[0], c[1], 4) for c in clients],
      [_dataset(c[2], c[3], 5) for c in clients])
  rows = personalization.per_client_metrics(results)

  # The empty client's scores are undefined, not accuracy 0 and loss 0.
  assert rows[1]['num_test_examples'] == 0
  assert all(np.isnan(v) for n, v in rows[1].items()
             if n != 'num_test_examples')
  assert np.isfinite(rows[4]['personalized_loss@0'])
  assert np.isnan(rows[4]['personalized_loss@1'])

  summary = summaries.summarize(rows)
  assert summary['num_evaluated_clients'] == 2
  assert summary['num_clients_without_test_examples'] == 1
  assert summary['num_non_finite_clients'] == 2
  # The figures are those of the two good clients alone, by NumPy.
  w0, b0 = (v.astype(np.float64) for v in model.initial_weights[0])
  per_step = []  # per_step[k] = [(accuracy, loss) of each good client]
  for k in range(steps + 1):
    scores = []
    for train_x, train_y, test_x, test_y in good:
      w, b = w0, b0
      if k:
        w, b = _np_step(w, b, train_x, train_y, alpha)
      scores.append(_np_metrics(w, b, test_x, test_y))
    per_step.append(np.array(scores))
  for k, scores in enumerate(per_step):
    accuracy, loss = scores[:, 0], scores[:, 1]
    assert summary[f'personalized_accuracy@{k}'] == pytest.approx(
        accuracy.mean(), abs=1e-6)
    assert summary[f'personalized_accuracy@{k}/worst'] == pytest.approx(
        accuracy.min(), abs=1e-6)
    assert summary[f'personalized_loss@{k}'] == pytest.approx(
        loss.mean(), rel=1e-5)
    assert summary[f'personalized_loss@{k}/worst'] == pytest.approx(
        loss.max(), rel=1e-5)
  json.dumps(summary, allow_nan=False)  # Strict JSON: no NaN, no Infinity.
