"""Per-FedAvg as a `tff.learning.templates.LearningProcess`.

Fallah, Mokhtari, Ozdaglar, "Personalized Federated Learning: A Meta-Learning
Approach" (2020), Algorithm 1. Each round the server broadcasts w_k to the
sampled clients; client i runs tau local steps

    (8)  w_{k,t+1} = w_{k,t} - beta * g~_i(w_{k,t}),

with g~_i the meta-gradient of eq. (9) on three fresh batches (D, D', D''),
computed by `tff_perfed.algorithms.meta_gradients.per_fedavg_meta_gradient`;
the server averages the local models (eq. 10). Following TFF's model-delta
convention the client reports update = w_k - w_{k,tau}, and the finalizer
applies the server optimizer to the (weighted) mean update: plain SGD with
learning rate 1.0 is exactly the average of eq. (10).

The process is composed from TFF's own parts: a broadcast distributor, a
custom `ClientWorkProcess` (the only new code), a `tff.aggregators` mean and
`build_apply_optimizer_finalizer`.
"""

import dataclasses
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients

HessianMode = meta_gradients.HessianMode
ClientWeighting = tff.learning.ClientWeighting
FunctionalModel = tff.learning.models.FunctionalModel

# Below this, float32 round-off in grad(w + d v) - grad(w - d v) dominates the
# O(d^2) truncation error of the central difference.
_SMALLEST_USEFUL_FLOAT32_DELTA = 1e-5


@dataclasses.dataclass(frozen=True)
class PerFedAvgParams:
  """Per-FedAvg's hyperparameters, validated on construction.

  Attributes:
    inner_learning_rate: alpha >= 0, the adaptation step of eq. (4). With 0
      the meta-objective is FedAvg's and Per-FedAvg reduces to FedAvg run on
      the D' batches (a warning says so).
    outer_learning_rate: beta > 0, the local meta-step of eq. (8).
    hessian_mode: How eq. (9)'s Hessian term is computed (`HessianMode`).
    local_steps: tau >= 1, the most local steps per round (a client stops
      early when its data runs out).
    hessian_free_delta: d > 0 of the central difference (HESSIAN_FREE only).
    client_weighting: `UNIFORM` (eq. 10's plain average) or `NUM_EXAMPLES`
      (weight by examples read).
  """
  inner_learning_rate: float = 0.02
  outer_learning_rate: float = 0.05
  hessian_mode: HessianMode = HessianMode.FIRST_ORDER
  local_steps: int = 1
  hessian_free_delta: float = 1e-3
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('inner_learning_rate', self.inner_learning_rate)
    validation.require_real('outer_learning_rate', self.outer_learning_rate,
                            positive=True)
    validation.require_enum('hessian_mode', self.hessian_mode, HessianMode)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_real('hessian_free_delta', self.hessian_free_delta,
                            positive=True)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)

  def degenerate_settings(self) -> List[str]:
    """Legal settings that probably do not do what was meant."""
    warnings = []
    if self.inner_learning_rate == 0:
      warnings.append(
          'inner_learning_rate=0: the meta-objective (4) is the FedAvg '
          'objective and Per-FedAvg reduces to FedAvg with step '
          'outer_learning_rate on the D\' batches.')
    if (self.hessian_mode is HessianMode.HESSIAN_FREE and
        self.hessian_free_delta < _SMALLEST_USEFUL_FLOAT32_DELTA):
      warnings.append(
          f'hessian_free_delta={self.hessian_free_delta:g} is below '
          f'{_SMALLEST_USEFUL_FLOAT32_DELTA:g}: in float32 the central '
          'difference is dominated by round-off.')
    return warnings


def build_per_fedavg_client_update(model: FunctionalModel,
                                   params: PerFedAvgParams):
  """Returns the client's `tf.function(initial_weights, dataset)`.

  The function takes up to `params.local_steps` steps of eq. (8). Each step
  reads the next three batches of `dataset` as (D, D', D''); when fewer than
  three remain, it stops early. It returns `(ClientResult, metrics_state,
  is_non_finite)` where the update is initial minus trained weights, zeroed
  with zero weight if any entry is non-finite, and the metrics are the
  model's on each D before its step (the same "train" metrics as FedAvg).
  """

  @tf.function
  def client_update(initial_weights, dataset):
    initial_trainable, non_trainable = initial_weights
    initial_trainable = tuple(initial_trainable)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    iterator = iter(dataset)
    trainable = initial_trainable
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    for _ in tf.range(params.local_steps):
      inner, outer, hessian = (iterator.get_next_as_optional()
                               for _ in range(3))
      if not (inner.has_value() and outer.has_value() and hessian.has_value()):
        break
      batches = (inner.get_value(), outer.get_value(), hessian.get_value())
      metrics_state = learning_utils.update_train_metrics(
          model, metrics_state, (trainable, non_trainable), batches[0])
      meta_gradient = meta_gradients.per_fedavg_meta_gradient(
          loss_fn,
          trainable,
          batches,
          inner_learning_rate=params.inner_learning_rate,
          hessian_mode=params.hessian_mode,
          hessian_free_delta=params.hessian_free_delta)
      trainable = meta_gradients.sgd_step(trainable, meta_gradient,
                                          params.outer_learning_rate)
      for batch in batches:
        num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)

    return learning_utils.client_result(model, initial_trainable, trainable,
                                        num_examples, metrics_state,
                                        params.client_weighting)

  return client_update


def local_step(model: FunctionalModel, params: PerFedAvgParams):
  """`(step, weights)`: one local step of eq. (8), `step(w, (D, D', D''))`.

  The body of the client loop as pure TF, for
  `tff_perfed.evaluation.costs.flops`.
  """
  loss_fn = learning_utils.batch_loss_fn(model)

  def step(weights, batches):
    gradient = meta_gradients.per_fedavg_meta_gradient(
        loss_fn, weights, batches,
        inner_learning_rate=params.inner_learning_rate,
        hessian_mode=params.hessian_mode,
        hessian_free_delta=params.hessian_free_delta)
    return meta_gradients.sgd_step(weights, gradient,
                                   params.outer_learning_rate)

  return step, tuple(model.initial_weights[0])


def build_per_fedavg_client_work(
    model: FunctionalModel, params: PerFedAvgParams, *,
    metrics_aggregator) -> tff.learning.templates.ClientWorkProcess:
  """The Per-FedAvg `ClientWorkProcess` (stateless).

  `next` has type signature
  `(<()@SERVER, ModelWeights@CLIENTS, {dataset}@CLIENTS> ->
    <state=()@SERVER, result=ClientResult@CLIENTS,
     measurements=<train=metrics, num_non_finite_updates=int32>@SERVER>)`.
  """
  return learning_utils.build_stateless_client_work(
      model, build_per_fedavg_client_update(model, params),
      metrics_aggregator=metrics_aggregator)


def build_per_fedavg(
    model_fn: learning_utils.ModelFn,
    *,
    inner_learning_rate: float,
    outer_learning_rate: float,
    hessian_mode: HessianMode = HessianMode.FIRST_ORDER,
    local_steps: int = 1,
    hessian_free_delta: float = 1e-3,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> tff.learning.templates.LearningProcess:
  """Builds the Per-FedAvg learning process (Algorithm 1 of Fallah et al.).

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`, whose
      `global_model_weights` are the model's initial weights;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS> ->
      <state=LearningAlgorithmState@SERVER, metrics=<distributor=<>,
      client_work=<train=<model metrics>, num_non_finite_updates=int32>,
      aggregator=..., finalizer=...>@SERVER>)`, where each client's dataset
      yields batches of the model's `input_spec` and every local step reads
      three of them as (D, D', D'');
    * `get_model_weights(state)`: the global model w_k.

  Any `tff.learning.models.FunctionalModel` works, including one made by
  `tff.learning.models.functional_model_from_keras`; `HessianMode.EXACT`
  needs a model whose loss is twice differentiable.

  Args:
    model_fn: A no-argument callable returning a
      `tff.learning.models.FunctionalModel`; called once, at build time.
    inner_learning_rate: alpha >= 0, the adaptation step of eq. (4).
    outer_learning_rate: beta > 0, the local meta-step of eq. (8).
    hessian_mode: How eq. (9)'s Hessian term is computed (`HessianMode`).
    local_steps: tau, the most local steps per round.
    hessian_free_delta: d > 0 of the central difference (HESSIAN_FREE only).
    client_weighting: `UNIFORM` (eq. 10's plain average, the default) or
      `NUM_EXAMPLES` (weight by examples read).
    server_optimizer_fn: A `tff.learning.optimizers.Optimizer` applied to the
      mean update; default SGD with learning rate 1.0, i.e. eq. (10).
    model_aggregator: A `tff.aggregators.WeightedAggregationFactory`; default
      `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Builds the metrics aggregation from the model's
      finalizer; default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: A `TypeError` or `ValueError`
      naming the invalid argument, what was expected and what was given.
  """
  params = PerFedAvgParams(
      inner_learning_rate=inner_learning_rate,
      outer_learning_rate=outer_learning_rate,
      hessian_mode=hessian_mode,
      local_steps=local_steps,
      hessian_free_delta=hessian_free_delta,
      client_weighting=client_weighting)
  for warning in params.degenerate_settings():
    logging.warning('build_per_fedavg: %s', warning)
  server_optimizer = learning_utils.default_server_optimizer(
      server_optimizer_fn)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  model = learning_utils.build_model(model_fn)

  initial_weights_fn = learning_utils.build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  client_work = build_per_fedavg_client_work(
      model, params, metrics_aggregator=metrics_aggregator)
  aggregator = model_aggregator.create(weights_type.trainable,
                                       tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      server_optimizer, weights_type)
  return tff.learning.templates.compose_learning_process(
      initial_weights_fn, distributor, client_work, aggregator, finalizer)
