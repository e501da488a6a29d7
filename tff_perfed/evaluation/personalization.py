"""Personalized evaluation: each client adapts the global model and is scored.

For every evaluated client the global model w is scored on the client's test
split as is (k = 0) and after each of k = 1..K SGD steps
w_k = w_{k-1} - alpha grad f(w_{k-1}; B_k) on batches B_k of the client's own
train split; the test split is never used for adaptation. This is the
evaluation of Fallah et al. (2020), section 5 (FedAvg, FedAvg + one step,
Per-FedAvg + one step), generalized to K steps.

A client's score depends on which batches it adapts on. With
`adaptation_draws = R > 1` every client adapts R times from w, each time on
its own independently shuffled batches, and each metric is the mean over the
R draws: the expected personalized score over the adaptation batch, with
less noise than one draw, and the test split untouched.

Any `tff.learning.models.FunctionalModel` can be evaluated; the scores are
the model's own finalized metrics (for the built-in and `from_keras` models:
`loss`, `accuracy`, `num_examples`). A client with no test examples has no
score: where the model counts examples, its scores are NaN (the models'
0 / 0 would otherwise read as accuracy 0 and loss 0), and
`tff_perfed.evaluation.summaries.summarize` leaves it out and counts it. TFF's
`build_personalization_eval_computation` works on Keras-backed
`VariableModel`s only, so the (small) adapt-and-score loop is written here
on tensors and mapped over clients with TFF.
"""

import collections
import dataclasses
from typing import Dict, List, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients

# Per-client result entries that are counts, not scores.
NUM_EXAMPLES = 'num_examples'
NUM_TEST_EXAMPLES = 'num_test_examples'


@dataclasses.dataclass(frozen=True)
class PersonalizationParams:
  """The personalized evaluation's settings, validated on construction.

  Attributes:
    personalization_steps: K >= 0, adaptation steps per client.
    learning_rate: alpha >= 0, the adaptation SGD step.
    adaptation_draws: R >= 1, independent adaptations averaged per client.
  """
  personalization_steps: int
  learning_rate: float
  adaptation_draws: int = 1

  def __post_init__(self):
    validation.require_int('personalization_steps',
                           self.personalization_steps, minimum=0)
    validation.require_real('learning_rate', self.learning_rate)
    validation.require_int('adaptation_draws', self.adaptation_draws,
                           minimum=1)

  def degenerate_settings(self) -> List[str]:
    """Legal settings that probably do not do what was meant."""
    warnings = []
    if self.learning_rate == 0 and self.personalization_steps > 0:
      warnings.append('learning_rate=0: every client scores the same after '
                      'k steps as before adapting.')
    if self.adaptation_draws > 1 and (self.personalization_steps == 0 or
                                      self.learning_rate == 0):
      warnings.append(f'adaptation_draws={self.adaptation_draws} without '
                      'adaptation: every draw scores the same model.')
    return warnings


def metric_name(metric: str, step: int) -> str:
  """`personalized_<metric>@<k>`, e.g. `personalized_accuracy@1`."""
  return f'personalized_{metric}@{step}'


def finalized_metric_names(model: tff.learning.models.FunctionalModel
                          ) -> List[str]:
  """The names of the model's finalized metrics."""
  with tf.Graph().as_default():
    return list(model.finalize_metrics(model.initialize_metrics_state()))


def require_metrics(model: tff.learning.models.FunctionalModel) -> None:
  """Raises `ArgumentValueError` unless the model reports a metric.

  `num_examples` alone does not count: it scores nothing.
  """
  names = finalized_metric_names(model)
  if not [name for name in names if name != NUM_EXAMPLES]:
    raise validation.ArgumentValueError(
        'model', 'a FunctionalModel that reports metrics (e.g. made with '
        'tff_perfed.models.from_keras, or functional_model_from_keras with a '
        'metrics_constructor)', f'a model whose metrics are {names}')


def score(model: tff.learning.models.FunctionalModel, weights,
          non_trainable, test_batches) -> collections.OrderedDict:
  """The model's finalized metrics (float32) on every test batch.

  Call it inside a `tf.function` (autograph turns the loop into a
  `tf.while_loop` over an iterator: unlike a dataset reduce, it is fast in
  this process's TensorFlow and runs on GPUs).
  """
  state = model.initialize_metrics_state()
  for batch in iter(test_batches):
    state = _update_metrics(model, state, weights, non_trainable, batch)
  return _finalized(model, state)


def _update_metrics(model, state, weights, non_trainable, batch):
  return model.update_metrics_state(
      state,
      labels=batch['y'],
      batch_output=tff.learning.models.BatchOutput(
          predictions=model.predict_on_batch(
              (weights, non_trainable), batch['x'], training=False)))


def _finalized(model, state) -> collections.OrderedDict:
  return collections.OrderedDict(
      (name, tf.cast(value, tf.float32))
      for name, value in model.finalize_metrics(state).items())


class StoredBatches:
  """A dataset's batches held in memory (`store_batches`), read by index."""

  def __init__(self, count: tf.Tensor, arrays):
    self.count, self._arrays = count, arrays

  def __getitem__(self, index):
    return tf.nest.map_structure(lambda a: a.read(index), self._arrays)


def store_batches(batches: tf.data.Dataset) -> StoredBatches:
  """Reads `batches` once into memory, to be replayed in graph.

  A client's test split is scored K * R + 1 times; reading it each time
  would parse it again from its source (a SQLite file, a Python generator,
  an augmentation). `Dataset.cache()` does not help: iterators made by
  `iter()` inside a `tf.function` do not share its cache. Call it inside
  the `tf.function` that reads the result (a function, not a constructor,
  so that autograph turns its loop into a `tf.while_loop`).
  """
  arrays = tf.nest.map_structure(
      lambda spec: tf.TensorArray(
          spec.dtype, size=0, dynamic_size=True, infer_shape=False,
          clear_after_read=False, element_shape=spec.shape),
      batches.element_spec)
  count = tf.constant(0)
  for batch in iter(batches):
    arrays = tf.nest.map_structure(
        lambda a, t: a.write(count, t),  # pylint: disable=cell-var-from-loop
        arrays, batch)
    count += 1
  return StoredBatches(count, arrays)


def score_stored(model: tff.learning.models.FunctionalModel, weights,
                 non_trainable, stored: StoredBatches
                ) -> collections.OrderedDict:
  """`score` on batches read once before (`store_batches`)."""
  state = model.initialize_metrics_state()
  for index in tf.range(stored.count):
    state = _update_metrics(model, state, weights, non_trainable,
                            stored[index])
  return _finalized(model, state)


def undefined_without_examples(scores: Mapping[str, tf.Tensor],
                               num_examples: tf.Tensor
                              ) -> collections.OrderedDict:
  """`scores` with every entry NaN if `num_examples` is 0.

  A mean over no examples is undefined; the built-in models' metrics return
  0 for it (`divide_no_nan`), which a mean over clients would take for a
  real accuracy of 0.

  Args:
    scores: float32 tensors, any shape.
    num_examples: The number of examples they were computed on (scalar).

  Returns:
    An `OrderedDict` of the same names and shapes.
  """
  has_examples = tf.cast(num_examples, tf.float32) > 0
  return collections.OrderedDict(
      (name, tf.where(has_examples, value,
                      tf.fill(tf.shape(value), float('nan'))))
      for name, value in scores.items())


def build_per_client_eval(model: tff.learning.models.FunctionalModel,
                          client_fn, *,
                          weights_at_clients: bool = False) -> tff.Computation:
  """Maps `client_fn((trainable, non_trainable), train, test)` over clients.

  Type: `(<ModelWeights@SERVER, {train batches}@CLIENTS,
  {test batches}@CLIENTS> -> {client_fn's result}@CLIENTS)`, the server's
  weights broadcast to every client; with `weights_at_clients`, the first
  argument is `{ModelWeights}@CLIENTS`, each client's own weights (a
  personalized model kept across rounds).
  """
  weights_type = learning_utils.model_weights_type(model)
  data_type = learning_utils.dataset_type(model)

  @tff.tensorflow.computation(weights_type, data_type, data_type)
  def client_eval(weights, train_batches, test_batches):
    return client_fn((weights.trainable, weights.non_trainable),
                     train_batches, test_batches)

  @tff.federated_computation(
      tff.FederatedType(weights_type,
                        tff.CLIENTS if weights_at_clients else tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS))
  def per_client_eval(weights, train_data, test_data):
    if not weights_at_clients:
      weights = tff.federated_broadcast(weights)
    return tff.federated_map(client_eval, (weights, train_data, test_data))

  return per_client_eval


def build_personalize_and_score(model: tff.learning.models.FunctionalModel, *,
                                personalization_steps: int,
                                learning_rate: float,
                                adaptation_draws: int = 1):
  """Returns `tf.function(weights, train_batches, test_batches)`.

  The function returns an `OrderedDict` mapping each of the model's
  finalized metrics except `num_examples` to a float32[K+1] vector, entry k
  scoring the model after k adaptation steps, plus `num_test_examples`
  (float32) when the model counts examples; a client with 0 test examples
  then scores NaN at every k. Draw r adapts on train batches
  r*K .. r*K + K - 1 and entries k >= 1 are means over the R draws (entry 0,
  the unadapted model, is scored once). If a draw's batches run out, its
  remaining steps keep its last weights. The test batches are read once
  and kept in memory (`StoredBatches`).
  """
  names = finalized_metric_names(model)
  steps, draws = personalization_steps, adaptation_draws

  @tf.function
  def personalize_and_score(initial_weights, train_batches, test_batches):
    initial, non_trainable = initial_weights
    initial = tuple(initial)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    test_batches = store_batches(test_batches)  # Scored K * R + 1 times.
    unadapted = score_stored(model, initial, non_trainable, test_batches)
    adapted = [[] for _ in range(steps)]  # adapted[k - 1]: one per draw.
    # One iterator read in order: with one per draw, which draw got which
    # reshuffle of the batches would depend on the order in which TF happened
    # to create the iterators.
    iterator = iter(train_batches)
    for _ in range(draws):
      weights = initial
      for k in range(steps):
        batch = iterator.get_next_as_optional()
        if batch.has_value():
          gradient = meta_gradients.loss_gradient(loss_fn, weights,
                                                  batch.get_value())
          weights = meta_gradients.sgd_step(weights, gradient, learning_rate)
        adapted[k].append(
            score_stored(model, weights, non_trainable, test_batches))
    scores = [unadapted] + [
        tf.nest.map_structure(lambda *v: tf.add_n(v) / len(v), *per_draw)
        for per_draw in adapted
    ]
    result = collections.OrderedDict(
        (name, tf.stack([s[name] for s in scores]))
        for name in names if name != NUM_EXAMPLES)
    if NUM_EXAMPLES in names:
      result = undefined_without_examples(result, unadapted[NUM_EXAMPLES])
      result[NUM_TEST_EXAMPLES] = unadapted[NUM_EXAMPLES]
    return result

  return personalize_and_score


def build_personalization_eval(model: tff.learning.models.FunctionalModel, *,
                               personalization_steps: int,
                               learning_rate: float,
                               adaptation_draws: int = 1,
                               weights_at_clients: bool = False
                              ) -> tff.Computation:
  """The federated personalized evaluation.

  Type signature, with R = `adaptation_draws`:
  `(<ModelWeights@SERVER, {train batches}@CLIENTS, {test batches}@CLIENTS>
    -> {<metric=float32[K+1], ..., num_test_examples=float32>}@CLIENTS)`
  (with `weights_at_clients`, `{ModelWeights}@CLIENTS`: each client starts
  from its own weights):
  per-client results, which a simulation receives as a list. Each client's
  train dataset holds R * K adaptation batches: draw r adapts on batches
  r*K .. r*K + K - 1, and every metric is the mean over the draws. A client
  with no test examples scores NaN; one whose data or adapted model is not
  finite scores whatever TF computes (NaN or Inf): both are left out of
  `summaries.summarize`'s figures and counted there.

  Args:
    model: The `FunctionalModel` being evaluated. It must report at least
      one metric besides `num_examples`.
    personalization_steps: K >= 0, adaptation steps per client.
    learning_rate: alpha >= 0, the adaptation step size.
    adaptation_draws: R >= 1, independent adaptations averaged per client.
    weights_at_clients: Take each client's weights instead of the server's.

  Returns:
    A `tff.Computation`.

  Raises:
    tff_perfed.validation.ArgumentError: If K, alpha or R is out of range,
      or the model reports no metric.
  """
  params = PersonalizationParams(
      personalization_steps=personalization_steps,
      learning_rate=learning_rate,
      adaptation_draws=adaptation_draws)
  for warning in params.degenerate_settings():
    logging.warning('build_personalization_eval: %s', warning)
  require_metrics(model)
  return build_per_client_eval(
      model,
      build_personalize_and_score(
          model,
          personalization_steps=personalization_steps,
          learning_rate=learning_rate,
          adaptation_draws=adaptation_draws),
      weights_at_clients=weights_at_clients)


def per_client_metrics(results: Sequence[Mapping[str, np.ndarray]]
                      ) -> List[Dict[str, float]]:
  """Flattens per-client results into `{personalized_<metric>@k: ...}` rows.

  `num_test_examples`, when present, is copied as is; undefined scores stay
  NaN (`clients.csv` shows them as such; `summaries.summarize` excludes
  the client).
  """
  rows = []
  for result in results:
    row = {}
    for name, values in result.items():
      if name == NUM_TEST_EXAMPLES:
        continue
      for k, value in enumerate(np.atleast_1d(values)):
        row[metric_name(name, k)] = float(value)
    if NUM_TEST_EXAMPLES in result:
      row[NUM_TEST_EXAMPLES] = float(result[NUM_TEST_EXAMPLES])
    rows.append(row)
  return rows
