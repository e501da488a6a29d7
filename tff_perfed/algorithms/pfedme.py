"""pFedMe (Dinh, Tran, Nguyen, NeurIPS 2020): personalization by Moreau envelopes.

Client i's personalized model is the proximal point of its loss at the
local model w (eq. 2 and 3 of the paper):

  theta_i(w) = argmin_theta f_i(theta) + lambda/2 ||theta - w||^2,

and the global objective is the mean of the Moreau envelopes
F_i(w) = min_theta f_i(theta) + lambda/2 ||theta - w||^2, whose gradient is
lambda (w - theta_i(w)) (eq. 6). Algorithm 1, each round: the server
broadcasts w^t; each client sets w_{i,0} = w^t and, for r = 0..R-1
(`local_steps`), approximately solves for theta by `inner_steps` gradient
steps of step `personal_learning_rate` on a batch (`pfedme_personalize`,
started at w_{i,r}), then moves its local model

  w_{i,r+1} = w_{i,r} - local_learning_rate * lambda * (w_{i,r} - theta),

(`pfedme_local_step`); the server mixes
w^{t+1} = (1 - beta) w^t + beta * mean_i w_{i,R}, beta =
`server_learning_rate` (beta = 1 is the plain mean). The mixing is TFF's
finalizer: SGD with learning rate beta on the mean update w^t - w_{i,R}.
Each step reads the next batch of the client's dataset, repeated as needed
(with one full batch, every step sees all the data).

Stateless across rounds (theta is recomputed from w each round), so this is
a `tff.learning.templates.LearningProcess`; the personalized model a client
is evaluated with is theta_i of the global model, which its data defines.

At full participation on full-batch least squares, with theta solved
exactly, the fixed point solves sum_i (w - theta_i(w)) = 0:
w* = [sum_i (I - lambda M_i)]^{-1} sum_i M_i b_i, M_i = (A_i + lambda I)^{-1},
A_i = X_i^T X_i / n_i, b_i = X_i^T y_i / n_i.
"""

import dataclasses
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils

ClientWeighting = tff.learning.ClientWeighting
FunctionalModel = tff.learning.models.FunctionalModel
Weights = Tuple[tf.Tensor, ...]


@dataclasses.dataclass(frozen=True)
class PFedMeParams:
  """pFedMe's hyperparameters, validated on construction.

  Attributes:
    personal_learning_rate: > 0, the step of the inner solve for theta.
    regularization: lambda > 0 of the Moreau envelope.
    inner_steps: K >= 1 gradient steps of the inner solve.
    local_learning_rate: eta > 0 of the local model's step.
    local_steps: R >= 1 local rounds per round.
    server_learning_rate: beta > 0, the server's mixing (1 = the mean).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
  """
  personal_learning_rate: float = 0.1
  regularization: float = 15.0
  inner_steps: int = 5
  local_learning_rate: float = 0.005
  local_steps: int = 1
  server_learning_rate: float = 1.0
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    for name in ('personal_learning_rate', 'regularization',
                 'local_learning_rate', 'server_learning_rate'):
      validation.require_real(name, getattr(self, name), positive=True)
    validation.require_int('inner_steps', self.inner_steps, minimum=1)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


def pfedme_personalize(loss_fn: Callable[[Weights, object], tf.Tensor],
                       local: Sequence[tf.Tensor], batch, *,
                       learning_rate: float, regularization: float,
                       steps: int) -> Weights:
  """theta ~ argmin f(theta; batch) + lambda/2 ||theta - w||^2 (eq. 3).

  `steps` gradient steps from theta = w (the local model).
  """
  local = tuple(local)
  theta = local
  for _ in range(steps):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = loss_fn(theta, batch)
    gradients = learning_utils.dense_gradients(tape, loss, theta)
    theta = tuple(t - learning_rate * (g + regularization * (t - w))
                  for t, g, w in zip(theta, gradients, local))
  return theta


def pfedme_local_step(local: Sequence[tf.Tensor], theta: Sequence[tf.Tensor],
                      *, learning_rate: float,
                      regularization: float) -> Weights:
  """w - eta * lambda * (w - theta), Algorithm 1's local update."""
  return tuple(w - learning_rate * regularization * (w - t)
               for w, t in zip(local, theta))


def local_step(model: FunctionalModel, params: PFedMeParams):
  """`(step, weights)`: one local step `step(weights, (batch,))`, pure TF.

  The inner solve for theta (`inner_steps` gradient steps) and the local
  model's move toward it: what `tff_perfed.evaluation.costs.flops` counts.
  """
  loss_fn = learning_utils.batch_loss_fn(model)

  def step(weights, batches):
    (batch,) = batches
    theta = pfedme_personalize(
        loss_fn, weights, batch, learning_rate=params.personal_learning_rate,
        regularization=params.regularization, steps=params.inner_steps)
    return pfedme_local_step(weights, theta,
                             learning_rate=params.local_learning_rate,
                             regularization=params.regularization)

  return step, tuple(model.initial_weights[0])


def build_pfedme_client_update(model: FunctionalModel, params: PFedMeParams):
  """The client's `tf.function(initial_weights, dataset)`.

  Returns `(ClientResult, metrics_state, is_non_finite)`: broadcast minus
  local weights after R local rounds, and the model's metrics on each batch
  before its round.
  """

  @tf.function
  def client_update(initial_weights, dataset):
    start, non_trainable = initial_weights
    start = tuple(start)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    local = start
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    for batch in dataset.repeat().take(params.local_steps):
      metrics_state = learning_utils.update_train_metrics(
          model, metrics_state, (local, non_trainable), batch)
      theta = pfedme_personalize(
          loss_fn, local, batch, learning_rate=params.personal_learning_rate,
          regularization=params.regularization, steps=params.inner_steps)
      local = pfedme_local_step(local, theta,
                                learning_rate=params.local_learning_rate,
                                regularization=params.regularization)
      num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)
    return learning_utils.client_result(model, start, local, num_examples,
                                        metrics_state,
                                        params.client_weighting)

  return client_update


def build_pfedme(
    model_fn: learning_utils.ModelFn,
    *,
    personal_learning_rate: float,
    regularization: float,
    inner_steps: int,
    local_learning_rate: float,
    local_steps: int = 1,
    server_learning_rate: float = 1.0,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> tff.learning.templates.LearningProcess:
  """Builds pFedMe (Algorithm 1 of Dinh et al. 2020).

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS> ->
      <state=LearningAlgorithmState@SERVER, metrics=<distributor=<>,
      client_work=<train=<model metrics>, num_non_finite_updates=int32>,
      aggregator=..., finalizer=...>@SERVER>)`;
    * `get_model_weights(state)`: the global model w.

  Args:
    model_fn: A no-argument callable returning a
      `tff.learning.models.FunctionalModel`; called once, at build time.
    personal_learning_rate: The inner solve's step (> 0).
    regularization: lambda > 0.
    inner_steps: K, the inner solve's steps (>= 1).
    local_learning_rate: eta, the local model's step (> 0).
    local_steps: R, local rounds per round (>= 1).
    server_learning_rate: beta, the server's mixing (> 0; 1 is the mean).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
    model_aggregator: Default `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid argument.
  """
  params = PFedMeParams(
      personal_learning_rate=personal_learning_rate,
      regularization=regularization, inner_steps=inner_steps,
      local_learning_rate=local_learning_rate, local_steps=local_steps,
      server_learning_rate=server_learning_rate,
      client_weighting=client_weighting)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  model = learning_utils.build_model(model_fn)
  initial_weights_fn = learning_utils.build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  client_work = learning_utils.build_stateless_client_work(
      model, build_pfedme_client_update(model, params),
      metrics_aggregator=metrics_aggregator)
  aggregator = model_aggregator.create(weights_type.trainable,
                                       tff.TensorType(np.float32))
  # w - beta * (w - mean w_i) = (1 - beta) w + beta * mean w_i.
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      tff.learning.optimizers.build_sgdm(
          learning_rate=params.server_learning_rate), weights_type)
  return tff.learning.templates.compose_learning_process(
      initial_weights_fn, distributor, client_work, aggregator, finalizer)
