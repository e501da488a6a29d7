"""Per-FedAvg as a `tff.learning.templates.LearningProcess`.

Fallah, Mokhtari, Ozdaglar, "Personalized Federated Learning: A Meta-Learning
Approach" (2020), Algorithm 1. Each round the server broadcasts w_k to the
sampled clients; client i runs tau local steps

    (8)  w_{k,t+1} = w_{k,t} - beta * g~_i(w_{k,t}),

with g~_i the meta-gradient of eq. (9) on three fresh batches (D, D', D''),
computed by `tff_perfed.meta_gradients.per_fedavg_meta_gradient`; the server
averages the local models (eq. 10). Following TFF's model-delta convention the
client reports update = w_k - w_{k,tau}, and the finalizer applies the server
optimizer to the (weighted) mean update: plain SGD with learning rate 1.0 is
exactly the average of eq. (10).

The process is composed from TFF's own parts: a broadcast distributor, a
custom `ClientWorkProcess` (the only new code), a `tff.aggregators` mean and
`build_apply_optimizer_finalizer`.
"""

import collections
import numbers
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# TFF's own helper for "zero the update and its weight if non-finite".
from tensorflow_federated.python.learning import tensor_utils

from tff_perfed import meta_gradients
from tff_perfed import models as models_lib

HessianMode = meta_gradients.HessianMode
ClientWeighting = tff.learning.ClientWeighting
FunctionalModel = tff.learning.models.FunctionalModel

# Below this, float32 round-off in grad(w + d v) - grad(w - d v) dominates the
# O(d^2) truncation error of the central difference.
_SMALLEST_USEFUL_FLOAT32_DELTA = 1e-5


def build_initial_weights_computation(
    model: FunctionalModel) -> tff.Computation:
  """A no-argument TF computation returning the model's initial weights."""

  @tff.tensorflow.computation
  def initial_model_weights():
    trainable, non_trainable = model.initial_weights
    return tff.learning.models.ModelWeights(
        trainable=tuple(tf.convert_to_tensor(w) for w in trainable),
        non_trainable=tuple(tf.convert_to_tensor(w) for w in non_trainable))

  return initial_model_weights


def model_weights_type(model: FunctionalModel) -> tff.StructType:
  """The `tff.learning.models.ModelWeights` type of a functional model."""
  return build_initial_weights_computation(model).type_signature.result


def build_per_fedavg_client_update(model: FunctionalModel, *,
                                   inner_learning_rate: float,
                                   outer_learning_rate: float,
                                   hessian_mode: HessianMode, local_steps: int,
                                   hessian_free_delta: float,
                                   client_weighting: ClientWeighting):
  """Returns the client's `tf.function(initial_weights, dataset)`.

  The function takes up to `local_steps` steps of eq. (8). Each step reads the
  next three batches of `dataset` as (D, D', D''); when fewer than three
  remain, it stops early. It returns `(ClientResult, metrics_state,
  is_non_finite)` where the update is initial minus trained weights, zeroed
  with zero weight if any entry is non-finite, and the metrics are the
  model's on each D before its step (the same "train" metrics as FedAvg).
  """

  @tf.function
  def client_update(initial_weights, dataset):
    initial_trainable, non_trainable = initial_weights
    initial_trainable = tuple(initial_trainable)
    loss_fn = models_lib.batch_loss_fn(model, non_trainable)
    iterator = iter(dataset)
    trainable = initial_trainable
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    for _ in tf.range(local_steps):
      inner, outer, hessian = (iterator.get_next_as_optional()
                               for _ in range(3))
      if not (inner.has_value() and outer.has_value() and hessian.has_value()):
        break
      batches = (inner.get_value(), outer.get_value(), hessian.get_value())
      output = model.predict_on_batch((trainable, non_trainable),
                                      batches[0]['x'], training=True)
      metrics_state = model.update_metrics_state(
          metrics_state,
          labels=batches[0]['y'],
          batch_output=tff.learning.models.BatchOutput(
              loss=model.loss(output, batches[0]['y']), predictions=output))
      meta_gradient = meta_gradients.per_fedavg_meta_gradient(
          loss_fn,
          trainable,
          batches,
          inner_learning_rate=inner_learning_rate,
          hessian_mode=hessian_mode,
          hessian_free_delta=hessian_free_delta)
      trainable = meta_gradients.sgd_step(trainable, meta_gradient,
                                          outer_learning_rate)
      for batch in batches:
        num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)

    update = tuple(tf.nest.map_structure(tf.subtract, initial_trainable,
                                         trainable))
    update, is_non_finite = tensor_utils.zero_all_if_any_non_finite(update)
    if client_weighting is ClientWeighting.NUM_EXAMPLES:
      weight = tf.cast(num_examples, tf.float32)
    else:
      weight = tf.constant(1.0)
    weight = tf.where(is_non_finite > 0, 0.0, weight)
    # Non-finite training must not pollute the aggregated metrics either.
    metrics_state = tf.cond(is_non_finite > 0,
                            model.initialize_metrics_state,
                            lambda: metrics_state)
    return (tff.learning.templates.ClientResult(
        update=update, update_weight=weight), metrics_state, is_non_finite)

  return client_update


def build_per_fedavg_client_work(
    model: FunctionalModel, *, inner_learning_rate: float,
    outer_learning_rate: float, hessian_mode: HessianMode, local_steps: int,
    hessian_free_delta: float, client_weighting: ClientWeighting,
    metrics_aggregator) -> tff.learning.templates.ClientWorkProcess:
  """The Per-FedAvg `ClientWorkProcess` (stateless).

  `next` has type signature
  `(<()@SERVER, ModelWeights@CLIENTS, {dataset}@CLIENTS> ->
    <state=()@SERVER, result=ClientResult@CLIENTS,
     measurements=<train=metrics, num_non_finite_updates=int32>@SERVER>)`.
  """
  weights_type = model_weights_type(model)
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
  client_update = build_per_fedavg_client_update(
      model,
      inner_learning_rate=inner_learning_rate,
      outer_learning_rate=outer_learning_rate,
      hessian_mode=hessian_mode,
      local_steps=local_steps,
      hessian_free_delta=hessian_free_delta,
      client_weighting=client_weighting)

  @tff.tensorflow.computation(weights_type, data_type)
  def client_update_computation(initial_weights, dataset):
    return client_update(
        (initial_weights.trainable, initial_weights.non_trainable), dataset)

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.federated_computation(
      tff.FederatedType((), tff.SERVER),
      tff.FederatedType(weights_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    client_result, metrics_state, is_non_finite = tff.federated_map(
        client_update_computation, (weights, client_data))
    train_metrics = metrics_aggregator(model.finalize_metrics)(metrics_state)
    measurements = tff.federated_zip(
        collections.OrderedDict(
            train=train_metrics,
            num_non_finite_updates=tff.federated_sum(is_non_finite)))
    return tff.templates.MeasuredProcessOutput(state, client_result,
                                               measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def require_number(name: str, value, *, positive: bool) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f'`{name}` must be a real number, got {value!r}.')
  if not np.isfinite(value) or (value <= 0 if positive else value < 0):
    expected = 'a positive' if positive else 'a non-negative'
    raise ValueError(f'`{name}` must be {expected} finite number, got '
                     f'{value!r}.')


def validate_per_fedavg_arguments(*, inner_learning_rate, outer_learning_rate,
                                  hessian_mode, local_steps,
                                  hessian_free_delta, client_weighting) -> None:
  """Raises on invalid Per-FedAvg options and warns on degenerate ones."""
  require_number('inner_learning_rate', inner_learning_rate, positive=False)
  require_number('outer_learning_rate', outer_learning_rate, positive=True)
  require_number('hessian_free_delta', hessian_free_delta, positive=True)
  if not isinstance(hessian_mode, HessianMode):
    raise TypeError('`hessian_mode` must be a tff_perfed.HessianMode '
                    f'({", ".join(m.name for m in HessianMode)}), got '
                    f'{hessian_mode!r}.')
  if (isinstance(local_steps, bool) or not isinstance(local_steps, int) or
      local_steps < 1):
    raise ValueError(f'`local_steps` must be a positive int, got '
                     f'{local_steps!r}.')
  if not isinstance(client_weighting, ClientWeighting):
    raise TypeError('`client_weighting` must be a tff.learning.'
                    f'ClientWeighting, got {client_weighting!r}.')
  if inner_learning_rate == 0:
    logging.warning(
        'inner_learning_rate=0: the meta-objective (4) is the FedAvg '
        'objective and Per-FedAvg reduces to FedAvg with step '
        'outer_learning_rate on the D\' batches.')
  if (hessian_mode is HessianMode.HESSIAN_FREE and
      hessian_free_delta < _SMALLEST_USEFUL_FLOAT32_DELTA):
    logging.warning(
        'hessian_free_delta=%g is below %g: in float32 the central '
        'difference is dominated by round-off.', hessian_free_delta,
        _SMALLEST_USEFUL_FLOAT32_DELTA)


def build_per_fedavg(
    model_fn: Callable[[], FunctionalModel],
    *,
    inner_learning_rate: float,
    outer_learning_rate: float,
    hessian_mode: HessianMode = HessianMode.FIRST_ORDER,
    local_steps: int = 1,
    hessian_free_delta: float = 1e-3,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    model_aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> tff.learning.templates.LearningProcess:
  """Builds the Per-FedAvg learning process (Algorithm 1 of Fallah et al.).

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`, whose
      `global_model_weights` are the model's initial weights;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS> ->
      <state=LearningAlgorithmState@SERVER, metrics=<distributor=<>,
      client_work=<train=<loss,accuracy,num_examples>, num_non_finite_updates>,
      aggregator=..., finalizer=...>@SERVER>)`, where each client's dataset
      yields batches of the model's `input_spec` and every local step reads
      three of them as (D, D', D'');
    * `get_model_weights(state)`: the global model w_k.

  Args:
    model_fn: A no-argument callable returning a
      `tff.learning.models.FunctionalModel`; called once, at build time.
    inner_learning_rate: alpha >= 0, the adaptation step of eq. (4).
    outer_learning_rate: beta > 0, the local meta-step of eq. (8).
    hessian_mode: How eq. (9)'s Hessian term is computed (`HessianMode`).
    local_steps: tau, the number of local steps per round.
    hessian_free_delta: d > 0 of the central difference (HESSIAN_FREE only).
    server_optimizer_fn: A `tff.learning.optimizers.Optimizer` applied to the
      mean update; default SGD with learning rate 1.0, i.e. eq. (10).
    client_weighting: `UNIFORM` (eq. 10's plain average, the default) or
      `NUM_EXAMPLES` (weight by examples read).
    model_aggregator: A `tff.aggregators.WeightedAggregationFactory`; default
      `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Builds the metrics aggregation from the model's
      finalizer; default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    TypeError: If an argument has the wrong type (named in the message).
    ValueError: If a rate, delta or step count is out of range.
  """
  if not callable(model_fn):
    raise TypeError('`model_fn` must be a no-argument callable returning a '
                    f'tff.learning.models.FunctionalModel, got {model_fn!r}.')
  validate_per_fedavg_arguments(
      inner_learning_rate=inner_learning_rate,
      outer_learning_rate=outer_learning_rate,
      hessian_mode=hessian_mode,
      local_steps=local_steps,
      hessian_free_delta=hessian_free_delta,
      client_weighting=client_weighting)
  model = model_fn()
  if not isinstance(model, FunctionalModel):
    raise TypeError('`model_fn` must return a tff.learning.models.'
                    f'FunctionalModel, got {type(model).__name__}.')
  if server_optimizer_fn is None:
    server_optimizer_fn = tff.learning.optimizers.build_sgdm(learning_rate=1.0)
  if model_aggregator is None:
    model_aggregator = tff.aggregators.MeanFactory()
  if not isinstance(model_aggregator, tff.aggregators.WeightedAggregationFactory):
    raise TypeError('`model_aggregator` must be a tff.aggregators.'
                    'WeightedAggregationFactory, got '
                    f'{type(model_aggregator).__name__}.')
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize

  initial_weights_fn = build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  client_work = build_per_fedavg_client_work(
      model,
      inner_learning_rate=inner_learning_rate,
      outer_learning_rate=outer_learning_rate,
      hessian_mode=hessian_mode,
      local_steps=local_steps,
      hessian_free_delta=hessian_free_delta,
      client_weighting=client_weighting,
      metrics_aggregator=metrics_aggregator)
  aggregator = model_aggregator.create(weights_type.trainable,
                                       tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      server_optimizer_fn, weights_type)
  return tff.learning.templates.compose_learning_process(
      initial_weights_fn, distributor, client_work, aggregator, finalizer)
