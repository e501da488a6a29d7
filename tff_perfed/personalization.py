"""Personalized evaluation: each client adapts the global model and is scored.

For every evaluated client the global model w is scored on the client's test
split as is (k = 0) and after each of k = 1..K SGD steps
w_k = w_{k-1} - alpha grad f(w_{k-1}; B_k) on batches B_k of the client's own
train split; the test split is never used for adaptation. This is the
evaluation of Fallah et al. (2020), section 5 (FedAvg, FedAvg + one step,
Per-FedAvg + one step), generalized to K steps.

TFF's `build_personalization_eval_computation` works on Keras-backed
`VariableModel`s; our models are `FunctionalModel`s, so the (small) adapt and
score loop is written here on tensors and mapped over clients with TFF.
"""

import collections
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import meta_gradients
from tff_perfed import models as models_lib
from tff_perfed import per_fedavg

ACCURACY = 'personalized_accuracy@{}'
LOSS = 'personalized_loss@{}'


def build_personalize_and_score(model: tff.learning.models.FunctionalModel, *,
                                personalization_steps: int,
                                learning_rate: float):
  """Returns `tf.function(weights, train_batches, test_batches)`.

  The function returns `OrderedDict(accuracy=float32[K+1],
  loss=float32[K+1], num_test_examples=float32)`, entry k scoring the model
  after k adaptation steps. If the train batches run out, the remaining
  steps keep the last weights.
  """

  def score(weights, non_trainable, test_batches):
    state = test_batches.reduce(
        model.initialize_metrics_state(),
        lambda state, batch: model.update_metrics_state(
            state,
            labels=batch['y'],
            batch_output=tff.learning.models.BatchOutput(
                predictions=model.predict_on_batch(
                    (weights, non_trainable), batch['x'], training=False))))
    return model.finalize_metrics(state)

  @tf.function
  def personalize_and_score(initial_weights, train_batches, test_batches):
    weights, non_trainable = initial_weights
    weights = tuple(weights)
    loss_fn = models_lib.batch_loss_fn(model, non_trainable)
    iterator = iter(train_batches)
    accuracies, losses = [], []
    metrics = score(weights, non_trainable, test_batches)
    accuracies.append(metrics['accuracy'])
    losses.append(metrics['loss'])
    for _ in range(personalization_steps):
      batch = iterator.get_next_as_optional()
      if batch.has_value():
        gradient = meta_gradients.loss_gradient(loss_fn, weights,
                                                batch.get_value())
        weights = meta_gradients.sgd_step(weights, gradient, learning_rate)
      metrics = score(weights, non_trainable, test_batches)
      accuracies.append(metrics['accuracy'])
      losses.append(metrics['loss'])
    return collections.OrderedDict(
        accuracy=tf.stack(accuracies),
        loss=tf.stack(losses),
        num_test_examples=metrics['num_examples'])

  return personalize_and_score


def build_personalization_eval(model: tff.learning.models.FunctionalModel, *,
                               personalization_steps: int,
                               learning_rate: float) -> tff.Computation:
  """The federated personalized evaluation.

  Type signature:
  `(<ModelWeights@SERVER, {train batches}@CLIENTS, {test batches}@CLIENTS>
    -> {<accuracy=float32[K+1], loss=float32[K+1],
         num_test_examples=float32>}@CLIENTS)`:
  per-client results, which a simulation receives as a list.

  Args:
    model: The `FunctionalModel` being evaluated.
    personalization_steps: K >= 0, adaptation steps per client.
    learning_rate: alpha >= 0, the adaptation step size.

  Returns:
    A `tff.Computation`.

  Raises:
    ValueError: If K or alpha is out of range.
  """
  if (isinstance(personalization_steps, bool) or
      not isinstance(personalization_steps, int) or personalization_steps < 0):
    raise ValueError('`personalization_steps` must be an int >= 0, got '
                     f'{personalization_steps!r}.')
  if not learning_rate >= 0:
    raise ValueError('`learning_rate` must be >= 0, got '
                     f'{learning_rate!r}.')
  weights_type = per_fedavg.model_weights_type(model)
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
  personalize_and_score = build_personalize_and_score(
      model,
      personalization_steps=personalization_steps,
      learning_rate=learning_rate)

  @tff.tensorflow.computation(weights_type, data_type, data_type)
  def client_eval(weights, train_batches, test_batches):
    return personalize_and_score((weights.trainable, weights.non_trainable),
                                 train_batches, test_batches)

  @tff.federated_computation(
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS))
  def personalization_eval(weights, train_data, test_data):
    return tff.federated_map(
        client_eval, (tff.federated_broadcast(weights), train_data, test_data))

  return personalization_eval


def per_client_metrics(results: Sequence[Mapping[str, np.ndarray]]
                      ) -> List[Dict[str, float]]:
  """Flattens per-client results into `{personalized_accuracy@k: ...}` rows."""
  rows = []
  for result in results:
    row = {}
    for k, (accuracy, loss) in enumerate(zip(result['accuracy'],
                                             result['loss'])):
      row[ACCURACY.format(k)] = float(accuracy)
      row[LOSS.format(k)] = float(loss)
    row['num_test_examples'] = float(result['num_test_examples'])
    rows.append(row)
  return rows


def summarize(rows: Sequence[Mapping[str, float]]) -> Dict[str, float]:
  """Mean over clients, 10th percentile and worst client, per metric.

  Clients count equally (the personalized objective averages users, eq. 4).
  For accuracy the worst client has the lowest value, for loss the highest;
  `/p10` is the 10th percentile of accuracy and the 90th of loss, i.e. the
  value that 10% of clients do worse than.
  """
  summary = {}
  if not rows:
    return summary
  for name in rows[0]:
    if name == 'num_test_examples':
      continue
    values = np.array([row[name] for row in rows], np.float64)
    higher_is_better = name.startswith('personalized_accuracy')
    summary[name] = float(values.mean())
    summary[f'{name}/p10'] = float(
        np.percentile(values, 10 if higher_is_better else 90))
    summary[f'{name}/worst'] = float(
        values.min() if higher_is_better else values.max())
  return summary
