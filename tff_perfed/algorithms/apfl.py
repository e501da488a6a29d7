"""APFL (Deng, Kamani, Mahdavi 2020): adaptive personalized federated learning.

Client i's personalized model mixes a personal model v_i with the global
one w (their eq. 3):

  vbar_i = alpha_i v_i + (1 - alpha_i) w.

Algorithm 1, each local step on a batch xi, from the previous values:

  w       <- w - eta grad f_i(w; xi),
  v_i     <- v_i - eta grad_v f_i(vbar_i; xi) = v_i - eta alpha_i g,
  alpha_i <- clip_[0,1](alpha_i - eta <v_i - w, g>)   (adaptive alpha, eq. 10),

with g = grad f_i(vbar_i; xi) (`apfl_local_step`, pure TF); the server
averages the clients' w (FedAvg). v_i and alpha_i live on the client
between rounds (a `ClientStateLearningProcess`); a newcomer starts with
v_i = w and alpha_i = `mixing_weight`, and a client is evaluated with
vbar_i of the current global model (`personalized_weights`).

Each step reads the next batch of the client's dataset, repeated as needed.
With alpha fixed at 0 APFL is FedAvg; at 1 each v_i trains alone. At full
participation on full-batch least squares with alpha fixed in (0, 1], the
global model's fixed point is FedAvg's, w* = (sum A_i)^{-1} sum b_i, and each
personalized model's is client i's own minimizer A_i^{-1} b_i.

The AFML paper's "FedMAML" cites this paper; with APFL here, a comparison
can show both readings.
"""

import collections
import dataclasses
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.templates import client_state_process

ClientWeighting = tff.learning.ClientWeighting
FunctionalModel = tff.learning.models.FunctionalModel
Weights = Tuple[tf.Tensor, ...]


@dataclasses.dataclass(frozen=True)
class ApflParams:
  """APFL's hyperparameters, validated on construction.

  Attributes:
    learning_rate: eta > 0 of every local step (w, v and alpha).
    mixing_weight: alpha in [0, 1], a newcomer's mixing weight.
    adapt_mixing_weight: Whether each client learns its alpha (eq. 10).
    local_steps: >= 1 local steps per round.
    client_weighting: `UNIFORM` or `NUM_EXAMPLES` (the global model's mean).
  """
  learning_rate: float = 0.05
  mixing_weight: float = 0.25
  adapt_mixing_weight: bool = True
  local_steps: int = 1
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('learning_rate', self.learning_rate,
                            positive=True)
    validation.require_real('mixing_weight', self.mixing_weight)
    if not 0 <= self.mixing_weight <= 1:
      raise validation.ArgumentValueError('mixing_weight',
                                          'a number in [0, 1]',
                                          self.mixing_weight)
    if not isinstance(self.adapt_mixing_weight, bool):
      raise validation.ArgumentTypeError('adapt_mixing_weight', 'a bool',
                                         self.adapt_mixing_weight)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


def mix(personal: Sequence[tf.Tensor], global_weights: Sequence[tf.Tensor],
        alpha) -> Weights:
  """vbar = alpha v + (1 - alpha) w (eq. 3)."""
  return tuple(alpha * v + (1 - alpha) * w
               for v, w in zip(personal, global_weights))


def apfl_local_step(loss_fn: Callable[[Weights, object], tf.Tensor],
                    global_weights: Sequence[tf.Tensor],
                    personal: Sequence[tf.Tensor], alpha, batch, *,
                    learning_rate: float, adapt_mixing_weight: bool):
  """One local step of Algorithm 1: new `(w, v, alpha)` from the old ones.

  Args:
    loss_fn: `loss_fn(weights, batch) -> scalar`, f_i on a batch.
    global_weights: w, the client's copy of the global model.
    personal: v_i.
    alpha: alpha_i, a float32 scalar.
    batch: xi.
    learning_rate: eta.
    adapt_mixing_weight: Whether alpha takes its step (eq. 10).

  Returns:
    `(w, v, alpha)` after the step.
  """
  global_weights, personal = tuple(global_weights), tuple(personal)
  with tf.GradientTape() as tape:
    tape.watch(global_weights)
    global_loss = loss_fn(global_weights, batch)
  global_gradients = learning_utils.dense_gradients(tape, global_loss,
                                                    global_weights)
  mixed = mix(personal, global_weights, alpha)
  with tf.GradientTape() as tape:
    tape.watch(mixed)
    mixed_loss = loss_fn(mixed, batch)
  g = learning_utils.dense_gradients(tape, mixed_loss, mixed)
  new_global = tuple(w - learning_rate * gw
                     for w, gw in zip(global_weights, global_gradients))
  new_personal = tuple(v - learning_rate * alpha * gv
                       for v, gv in zip(personal, g))
  if adapt_mixing_weight:
    alpha_gradient = tf.add_n([
        tf.reduce_sum((v - w) * gv)
        for v, w, gv in zip(personal, global_weights, g)])
    alpha = tf.clip_by_value(alpha - learning_rate * alpha_gradient, 0.0, 1.0)
  return new_global, new_personal, alpha


def local_step(model: FunctionalModel, params: ApflParams):
  """`(step, weights)`: one local step `step(weights, (batch,))`, pure TF.

  The steps on w, v and alpha (`apfl_local_step`), with v = w and alpha
  the newcomer's: what `tff_perfed.evaluation.costs.flops` counts.
  """
  loss_fn = learning_utils.batch_loss_fn(model)

  def step(weights, batches):
    (batch,) = batches
    return apfl_local_step(
        loss_fn, weights, weights, tf.constant(params.mixing_weight), batch,
        learning_rate=params.learning_rate,
        adapt_mixing_weight=params.adapt_mixing_weight)

  return step, tuple(model.initial_weights[0])


def build_apfl_client_update(model: FunctionalModel, params: ApflParams):
  """The client's `tf.function(global_weights, dataset, client_state)`.

  `client_state` is `OrderedDict(personal=v, mixing_weight=alpha)`. Returns
  `(ClientResult, client_state, metrics_state, is_non_finite)`; the metrics
  are the global model's on each batch before its step, and a non-finite
  personal model keeps the client's old state.
  """

  @tf.function
  def client_update(global_weights, dataset, client_state):
    start, non_trainable = global_weights
    start = tuple(start)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    trainable = start
    personal = tuple(client_state['personal'])
    alpha = client_state['mixing_weight']
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    for batch in dataset.repeat().take(params.local_steps):
      metrics_state = learning_utils.update_train_metrics(
          model, metrics_state, (trainable, non_trainable), batch)
      trainable, personal, alpha = apfl_local_step(
          loss_fn, trainable, personal, alpha, batch,
          learning_rate=params.learning_rate,
          adapt_mixing_weight=params.adapt_mixing_weight)
      num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)
    _, personal_non_finite = learning_utils.zero_if_non_finite(
        personal + (alpha,))
    keep_old = personal_non_finite > 0
    new_state = collections.OrderedDict(
        personal=tuple(tf.where(keep_old, old, new) for old, new in zip(
            client_state['personal'], personal)),
        mixing_weight=tf.where(keep_old, client_state['mixing_weight'],
                               alpha))
    result, metrics_state, is_non_finite = learning_utils.client_result(
        model, start, trainable, num_examples, metrics_state,
        params.client_weighting)
    return (result, new_state, metrics_state,
            is_non_finite + personal_non_finite)

  return client_update


def build_apfl(
    model_fn: learning_utils.ModelFn,
    *,
    learning_rate: float,
    mixing_weight: float,
    adapt_mixing_weight: bool = True,
    local_steps: int = 1,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> client_state_process.ClientStateLearningProcess:
  """Builds APFL (Algorithm 1 of Deng et al. 2020).

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`;
    * `initial_client_state`: `(ModelWeights -> <personal=<float32[...],
      ...>, mixing_weight=float32>)`: v = the given weights, alpha =
      `mixing_weight`;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS,
      <personal=..., mixing_weight=float32>@CLIENTS> -> <state=...@SERVER,
      client_states=<personal=..., mixing_weight=float32>@CLIENTS,
      metrics=<distributor=<>, client_work=<train=<model metrics>,
      num_non_finite_updates=int32>, aggregator=..., finalizer=...>@SERVER>)`;
    * `get_model_weights(state)`: the global model w;
    * `personalized_weights(state, client_state)`: alpha v + (1 - alpha) w.

  Args:
    model_fn: A no-argument callable returning a
      `tff.learning.models.FunctionalModel`; called once, at build time.
    learning_rate: eta of every local step (> 0).
    mixing_weight: A newcomer's alpha, in [0, 1].
    adapt_mixing_weight: Whether each client learns its alpha.
    local_steps: Local steps per round (>= 1).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
    server_optimizer_fn: Applied to the mean update; default SGD with
      learning rate 1.0.
    model_aggregator: Default `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff_perfed.templates.ClientStateLearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid argument.
  """
  params = ApflParams(learning_rate=learning_rate,
                      mixing_weight=mixing_weight,
                      adapt_mixing_weight=adapt_mixing_weight,
                      local_steps=local_steps,
                      client_weighting=client_weighting)
  server_optimizer = learning_utils.default_server_optimizer(
      server_optimizer_fn)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  model = learning_utils.build_model(model_fn)
  initial_weights_fn = learning_utils.build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  client_state_type = tff.StructWithPythonType(
      [('personal', weights_type.trainable),
       ('mixing_weight', tff.TensorType(np.float32))],
      collections.OrderedDict)

  def initial_client_state(weights):
    return collections.OrderedDict(
        personal=tuple(tf.identity(w) for w in weights.trainable),
        mixing_weight=tf.constant(params.mixing_weight, tf.float32))

  def personalized_weights(weights, client_state):
    return tff.learning.models.ModelWeights(
        trainable=mix(client_state['personal'], weights.trainable,
                      client_state['mixing_weight']),
        non_trainable=weights.non_trainable)

  return client_state_process.compose_client_state_process(
      initial_weights_fn,
      tff.learning.templates.build_broadcast_process(weights_type),
      build_apfl_client_update(model, params), client_state_type,
      learning_utils.dataset_type(model),
      metrics_aggregator(model.finalize_metrics),
      model_aggregator.create(weights_type.trainable,
                              tff.TensorType(np.float32)),
      tff.learning.templates.build_apply_optimizer_finalizer(
          server_optimizer, weights_type),
      initial_client_state=initial_client_state,
      personalized_weights=personalized_weights)
