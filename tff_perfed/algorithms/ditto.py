"""Ditto (Li, Hu, Beirami, Smith, ICML 2021): FedAvg plus personal models.

Ditto's objective for client k is the bi-level problem of its eq. (1):

  min_{v_k} h_k(v_k; w*) = F_k(v_k) + lambda/2 ||v_k - w*||^2,
  s.t. w* in argmin_w G(F_1(w), ..., F_K(w)),

with G the average (FedAvg). Algorithm 1 alternates, each round t: the
sampled clients run `local_steps` SGD steps on F_k from the broadcast w^t
(step `client_learning_rate`), whose mean becomes w^{t+1}; and each updates
its personal model v_k by `personal_steps` steps

  v_k <- v_k - personal_learning_rate * (grad F_k(v_k) + lambda (v_k - w^t)),

(`ditto_personal_step`, pure TF). v_k lives on the client between rounds: a
`tff_perfed.templates.ClientStateLearningProcess`, whose client state is v_k
(trainable weights). A newcomer's v_k is the current global model
(`initial_client_state`), and it is evaluated with v_k
(`personalized_weights`).

Each step reads the next batch of the client's dataset, which is repeated
as needed: with a one-batch (full-batch) dataset every step is a full
gradient step. Both loops read the dataset from its start.

Reductions (tests): lambda = 0 gives each client's own local training of
v_k; personal_steps = 0 leaves v_k as it was; the global model is FedAvg's.
At full participation on full-batch least squares, the fixed points are
w* = (sum_k A_k)^{-1} sum_k b_k (uniform weights) and
v_k* = (A_k + lambda I)^{-1} (b_k + lambda w*), A_k = X_k^T X_k / n_k,
b_k = X_k^T y_k / n_k.
"""

import dataclasses
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.templates import client_state_process

ClientWeighting = tff.learning.ClientWeighting
FunctionalModel = tff.learning.models.FunctionalModel
Weights = Tuple[tf.Tensor, ...]


@dataclasses.dataclass(frozen=True)
class DittoParams:
  """Ditto's hyperparameters, validated on construction.

  Attributes:
    client_learning_rate: > 0, the SGD step of the global model's local
      training (FedAvg's client step).
    personal_learning_rate: > 0, eta of the personal model's step.
    regularization: lambda >= 0 of eq. (1); 0 trains v_k on F_k alone.
    local_steps: >= 1 SGD steps on the global model per round.
    personal_steps: >= 0 steps on the personal model per round.
    client_weighting: `UNIFORM` (the plain mean of the trained global
      models) or `NUM_EXAMPLES` (weighted by examples read).
  """
  client_learning_rate: float = 0.05
  personal_learning_rate: float = 0.05
  regularization: float = 0.1
  local_steps: int = 1
  personal_steps: int = 1
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('client_learning_rate', self.client_learning_rate,
                            positive=True)
    validation.require_real('personal_learning_rate',
                            self.personal_learning_rate, positive=True)
    validation.require_real('regularization', self.regularization)
    if self.regularization < 0:
      raise validation.ArgumentValueError('regularization', 'a number >= 0',
                                          self.regularization)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_int('personal_steps', self.personal_steps, minimum=0)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


def ditto_personal_step(loss_fn: Callable[[Weights, object], tf.Tensor],
                        personal: Sequence[tf.Tensor],
                        global_weights: Sequence[tf.Tensor], batch, *,
                        learning_rate: float,
                        regularization: float) -> Weights:
  """One step on h_k(v; w) = F_k(v) + lambda/2 ||v - w||^2 (Algorithm 1).

  Args:
    loss_fn: `loss_fn(weights, batch) -> scalar`, F_k on a batch.
    personal: v, the personal model's trainable weights.
    global_weights: w, the global model this round started from.
    batch: The batch F_k is evaluated on.
    learning_rate: eta.
    regularization: lambda.

  Returns:
    v - eta * (grad F_k(v) + lambda (v - w)).
  """
  personal = tuple(personal)
  with tf.GradientTape() as tape:
    tape.watch(personal)
    loss = loss_fn(personal, batch)
  gradients = learning_utils.dense_gradients(tape, loss, personal)
  return tuple(
      v - learning_rate * (g + regularization * (v - w))
      for v, g, w in zip(personal, gradients, global_weights))


def round_steps(model: FunctionalModel, params: DittoParams):
  """`[(step, weights, count)]`: a client round's steps, as pure TF.

  `local_steps` SGD steps of the global model, then `personal_steps` steps
  of the personal model (`ditto_personal_step`), each `step(weights,
  (batch,))`: what `tff_perfed.evaluation.costs.flops` counts.
  """
  loss_fn = learning_utils.batch_loss_fn(model)
  weights = tuple(model.initial_weights[0])

  def global_step(weights, batches):
    (batch,) = batches
    gradient = meta_gradients.loss_gradient(loss_fn, weights, batch)
    return meta_gradients.sgd_step(weights, gradient,
                                   params.client_learning_rate)

  def personal_step(weights, batches):
    (batch,) = batches
    return ditto_personal_step(
        loss_fn, weights, weights, batch,
        learning_rate=params.personal_learning_rate,
        regularization=params.regularization)

  return [(global_step, weights, params.local_steps),
          (personal_step, weights, params.personal_steps)]


def build_ditto_client_update(model: FunctionalModel, params: DittoParams):
  """The client's `tf.function(global_weights, dataset, personal)`.

  Returns `(ClientResult, personal, metrics_state, is_non_finite)`: the
  global update (broadcast minus trained weights), zeroed with weight 0 if
  non-finite; the new personal model (the old one kept if the new one is
  non-finite); and the model's metrics on the global model's batches.
  """

  @tf.function
  def client_update(global_weights, dataset, personal):
    start, non_trainable = global_weights
    start = tuple(start)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    trainable = start
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    for batch in dataset.repeat().take(params.local_steps):
      with tf.GradientTape() as tape:
        tape.watch(trainable)
        output = model.predict_on_batch((trainable, non_trainable),
                                        batch['x'], training=True)
        loss = model.loss(output, batch['y'])
      metrics_state = model.update_metrics_state(
          metrics_state, labels=batch['y'],
          batch_output=tff.learning.models.BatchOutput(
              loss=loss, predictions=output))
      gradients = learning_utils.dense_gradients(tape, loss, trainable)
      trainable = tuple(w - params.client_learning_rate * g
                        for w, g in zip(trainable, gradients))
      num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)
    new_personal = tuple(personal)
    for batch in dataset.repeat().take(params.personal_steps):
      new_personal = ditto_personal_step(
          loss_fn, new_personal, start, batch,
          learning_rate=params.personal_learning_rate,
          regularization=params.regularization)
    new_personal, personal_non_finite = learning_utils.zero_if_non_finite(
        new_personal)
    new_personal = tuple(
        tf.where(personal_non_finite > 0, old, new)
        for old, new in zip(personal, new_personal))

    result, metrics_state, is_non_finite = learning_utils.client_result(
        model, start, trainable, num_examples, metrics_state,
        params.client_weighting)
    return (result, new_personal, metrics_state,
            is_non_finite + personal_non_finite)

  return client_update


def build_ditto(
    model_fn: learning_utils.ModelFn,
    *,
    client_learning_rate: float,
    personal_learning_rate: float,
    regularization: float,
    local_steps: int = 1,
    personal_steps: int = 1,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> client_state_process.ClientStateLearningProcess:
  """Builds Ditto (Algorithm 1 of Li et al. 2021) with personal models.

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`, the model's
      initial weights as `global_model_weights`;
    * `initial_client_state`: `(ModelWeights -> <float32[...], ...>)`, v_k
      of a newcomer: the given weights' trainable part;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS,
      <float32[...], ...>@CLIENTS> -> <state=LearningAlgorithmState@SERVER,
      client_states=<float32[...], ...>@CLIENTS, metrics=<distributor=<>,
      client_work=<train=<model metrics>, num_non_finite_updates=int32>,
      aggregator=..., finalizer=...>@SERVER>)`;
    * `get_model_weights(state)`: the global model w;
    * `personalized_weights(state, client_state)`: v_k with the global
      model's non-trainable weights.

  Args:
    model_fn: A no-argument callable returning a
      `tff.learning.models.FunctionalModel`; called once, at build time.
    client_learning_rate: The global model's local SGD step (> 0).
    personal_learning_rate: eta, the personal model's step (> 0).
    regularization: lambda >= 0 of eq. (1).
    local_steps: SGD steps on the global model per round (>= 1).
    personal_steps: Steps on the personal model per round (>= 0).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
    server_optimizer_fn: Applied to the mean update; default SGD with
      learning rate 1.0 (the mean of the clients' trained models).
    model_aggregator: A `tff.aggregators.WeightedAggregationFactory`;
      default `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff_perfed.templates.ClientStateLearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid argument.
  """
  params = DittoParams(
      client_learning_rate=client_learning_rate,
      personal_learning_rate=personal_learning_rate,
      regularization=regularization, local_steps=local_steps,
      personal_steps=personal_steps, client_weighting=client_weighting)
  server_optimizer = learning_utils.default_server_optimizer(
      server_optimizer_fn)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  model = learning_utils.build_model(model_fn)

  initial_weights_fn = learning_utils.build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  personal_type = weights_type.trainable
  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  aggregator = model_aggregator.create(weights_type.trainable,
                                       tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      server_optimizer, weights_type)
  return client_state_process.compose_client_state_process(
      initial_weights_fn, distributor,
      build_ditto_client_update(model, params), personal_type,
      learning_utils.dataset_type(model),
      metrics_aggregator(model.finalize_metrics), aggregator, finalizer,
      initial_client_state=lambda weights: tuple(
          tf.identity(w) for w in weights.trainable),
      personalized_weights=lambda weights, personal: (
          tff.learning.models.ModelWeights(
              trainable=personal, non_trainable=weights.non_trainable)))
