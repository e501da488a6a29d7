"""Local models: each client trains from scratch on its own data only.

The AFML paper (section 5, "Fairness comparison", Fig. 4 (b) and 5; and
Fig. 1 (c)) judges a personalized federated model by the fraction of clients
for which it beats "the model trained locally", i.e. on the client's own
data alone, with no federation. This module builds that baseline in TFF:
every client starts from the same initial (untrained) weights, takes `steps`
plain SGD steps w <- w - lr grad f(w; B) on the batches of its own train
dataset, and is scored on its own test dataset with the model's finalized
metrics, exactly as `tff_perfed.evaluation.personalization` scores.

Choices: the optimizer is plain SGD (the paper's local models use SGD with a
fixed learning rate, 0.005 for 200 epochs on CIFAR-100); one step per batch,
and the train dataset decides how many epochs there are (pass
`dataset.repeat(epochs)`); a client whose batches run out before `steps`
stops early with the weights it has. `tff_perfed.evaluation.costs.fairness`
compares the resulting accuracies with the personalized ones.
"""

import collections
import dataclasses
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.evaluation import personalization

NUM_EXAMPLES = personalization.NUM_EXAMPLES
NUM_TEST_EXAMPLES = personalization.NUM_TEST_EXAMPLES


@dataclasses.dataclass(frozen=True)
class LocalModelParams:
  """The local models' training settings, validated on construction.

  Attributes:
    steps: >= 1, the most SGD steps per client (one per train batch).
    learning_rate: > 0, the SGD step size.
  """
  steps: int
  learning_rate: float

  def __post_init__(self):
    validation.require_int('steps', self.steps, minimum=1)
    validation.require_real('learning_rate', self.learning_rate,
                            positive=True)


def local_metric_name(metric: str) -> str:
  """`local_<metric>`, e.g. `local_accuracy`."""
  return f'local_{metric}'


def build_train_and_score(model: tff.learning.models.FunctionalModel, *,
                          steps: int, learning_rate: float):
  """Returns `tf.function(initial_weights, train_batches, test_batches)`.

  The function takes up to `steps` SGD steps from `initial_weights` (a
  `(trainable, non_trainable)` pair), one per train batch, and returns an
  `OrderedDict` of the trained model's finalized metrics except
  `num_examples` (float32 scalars), plus `num_test_examples` when the model
  counts examples; a client with 0 test examples then scores NaN.
  """
  names = personalization.finalized_metric_names(model)

  @tf.function
  def train_and_score(initial_weights, train_batches, test_batches):
    initial, non_trainable = initial_weights
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)

    def sgd_step(weights, batch):
      gradient = meta_gradients.loss_gradient(loss_fn, weights, batch)
      return meta_gradients.sgd_step(weights, gradient, learning_rate)

    # A tf.while_loop over an iterator, not an unrolled loop (local training
    # may take thousands of steps) nor a dataset reduce (slow in this
    # process's TensorFlow, no GPU kernel). `take` stops when batches run out.
    trained = tuple(initial)
    for batch in iter(train_batches.take(steps)):
      trained = sgd_step(trained, batch)
    finalized = personalization.score(model, trained, non_trainable,
                                      test_batches)
    result = collections.OrderedDict(
        (name, finalized[name]) for name in names if name != NUM_EXAMPLES)
    if NUM_EXAMPLES in names:
      result = personalization.undefined_without_examples(
          result, finalized[NUM_EXAMPLES])
      result[NUM_TEST_EXAMPLES] = finalized[NUM_EXAMPLES]
    return result

  return train_and_score


def build_local_model_eval(model: tff.learning.models.FunctionalModel, *,
                           steps: int,
                           learning_rate: float) -> tff.Computation:
  """The federated evaluation of models trained on each client's data only.

  Type signature:
  `(<ModelWeights@SERVER, {train batches}@CLIENTS, {test batches}@CLIENTS>
    -> {<metric=float32, ..., num_test_examples=float32>}@CLIENTS)`:
  per-client results, which a simulation receives as a list. The weights
  are the starting point of every client (normally the model's initial
  weights, e.g. from
  `tff_perfed.algorithms.learning_utils.build_initial_weights_computation`).

  Args:
    model: The `FunctionalModel` trained and scored. It must report at least
      one metric besides `num_examples`.
    steps: >= 1, the most SGD steps per client, one per train batch.
    learning_rate: > 0, the SGD step size.

  Returns:
    A `tff.Computation`.

  Raises:
    tff_perfed.validation.ArgumentError: If `steps` or `learning_rate` is out
      of range, or the model reports no metric.
  """
  params = LocalModelParams(steps=steps, learning_rate=learning_rate)
  personalization.require_metrics(model)
  return personalization.build_per_client_eval(
      model,
      build_train_and_score(model, steps=params.steps,
                            learning_rate=params.learning_rate))


def local_model_rows(results: Sequence[Mapping[str, np.ndarray]]
                    ) -> List[Dict[str, float]]:
  """Per-client rows `{local_<metric>: ..., num_test_examples: ...}`.

  `num_test_examples`, when present, is copied as is, so that a row joins
  the personalized rows of `personalization.per_client_metrics` per client.
  """
  rows = []
  for result in results:
    row = {}
    for name, value in result.items():
      if name != NUM_TEST_EXAMPLES:
        row[local_metric_name(name)] = float(value)
    if NUM_TEST_EXAMPLES in result:
      row[NUM_TEST_EXAMPLES] = float(result[NUM_TEST_EXAMPLES])
    rows.append(row)
  return rows
