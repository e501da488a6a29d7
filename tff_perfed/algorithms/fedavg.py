"""The FedAvg baseline: TFF's `build_weighted_fed_avg`, reused as is.

McMahan et al. (2017), and eq. (1) of Fallah et al. (2020): clients take one
SGD step per batch of their data and the server averages the models. This
wrapper only adapts TFF's builder to tff_perfed's conventions (a `model_fn`
returning a `FunctionalModel`, plain SGD on the client, eq. (10)'s uniform
average by default, hyperparameters in a validated dataclass) so that every
algorithm is built and compared the same way.
"""

import dataclasses
from typing import Optional

import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients

ClientWeighting = tff.learning.ClientWeighting


@dataclasses.dataclass(frozen=True)
class FedAvgParams:
  """FedAvg's hyperparameters, validated on construction.

  Attributes:
    client_learning_rate: > 0, the step of the clients' SGD.
    client_weighting: `UNIFORM` (default) or `NUM_EXAMPLES`.
  """
  client_learning_rate: float = 0.05
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('client_learning_rate', self.client_learning_rate,
                            positive=True)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


def local_step(model: learning_utils.FunctionalModel, params: FedAvgParams):
  """`(step, weights)`: one client SGD step `step(weights, (D,))`, as pure TF.

  TFF's client work runs the same step in its loop; this form is what
  `tff_perfed.evaluation.costs.flops` counts.
  """
  loss_fn = learning_utils.batch_loss_fn(model)

  def step(weights, batches):
    (batch,) = batches
    gradient = meta_gradients.loss_gradient(loss_fn, weights, batch)
    return meta_gradients.sgd_step(weights, gradient,
                                   params.client_learning_rate)

  return step, tuple(model.initial_weights[0])


def build_fedavg(
    model_fn: learning_utils.ModelFn,
    *,
    client_learning_rate: float,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> tff.learning.templates.LearningProcess:
  """Builds FedAvg with client SGD, via `build_weighted_fed_avg`.

  `initialize` is `( -> LearningAlgorithmState@SERVER)` and `next` is
  `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS> ->
  <state=LearningAlgorithmState@SERVER, metrics=<distributor, client_work=
  <train=<model metrics>>, aggregator, finalizer>@SERVER>)`: TFF's own
  FedAvg signatures. Each client takes one SGD step per batch of its dataset.

  Args:
    model_fn: No-argument callable returning a `FunctionalModel`.
    client_learning_rate: Positive step size of the local SGD.
    client_weighting: `UNIFORM` (default) or `NUM_EXAMPLES`.
    server_optimizer_fn: Server optimizer; default SGD with learning rate 1.0.
    model_aggregator: Weighted aggregation factory; default mean.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: A `TypeError` or `ValueError`
      naming the invalid argument, what was expected and what was given.
  """
  params = FedAvgParams(client_learning_rate=client_learning_rate,
                        client_weighting=client_weighting)
  server_optimizer = learning_utils.default_server_optimizer(
      server_optimizer_fn)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  model = learning_utils.build_model(model_fn)
  return tff.learning.algorithms.build_weighted_fed_avg(
      model,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=params.client_learning_rate),
      server_optimizer_fn=server_optimizer,
      client_weighting=params.client_weighting,
      model_aggregator=model_aggregator,
      metrics_aggregator=metrics_aggregator,
      # An iterator loop, not a dataset reduce: TensorFlow in the Python
      # process (the in_process runtime) pays about 10 ms per ReduceDataset
      # execution, and ReduceDataset has no GPU kernel.
      loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR)
