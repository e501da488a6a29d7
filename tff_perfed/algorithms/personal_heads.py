"""FedRep and FedPer: a shared body, averaged, and a personal head per client.

Both run on the split models AFML uses (`models.SplitModel`: a body, the
encoder at its mean z = z_mean, and a head on z); the head never leaves
the client and lives there between rounds (a `ClientStateLearningProcess`
whose client state is the head's weights). The server averages the bodies
(FedAvg on the body only); a newcomer's head is the model's initial head.

* FedRep (Collins, Hassani, Mokhtari, Shakkottai, ICML 2021, Algorithm 1):
  each round, client i first trains its head for `head_steps` SGD steps
  with the broadcast body fixed, then the body for `body_steps` steps with
  its new head fixed (`fedrep_local_update`).
* FedPer (Arivazhagan, Aggarwal, Singh, Choudhary 2019): client i trains
  body and head together for `local_steps` SGD steps
  (`fedper_local_update`).

Each step reads the next batch of the client's dataset, repeated as needed.
The process's model weights are those of `body_and_head_model`: trainable
= the body's weights then the head's. `get_model_weights` returns the
global body with the initial head; `personalized_weights(state, head_i)`
the global body with client i's head.

Reductions (tests): FedRep with `body_steps=0` trains each head alone on
the fixed initial body (on least squares with a linear body B: the closed
form h_i* = (B^T A_i B)^{-1} B^T b_i); one round of either matches float64
gradients of the bilinear model by hand.
"""

import collections
import dataclasses
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.models import split
from tff_perfed.templates import client_state_process

ClientWeighting = tff.learning.ClientWeighting
Weights = Tuple[tf.Tensor, ...]


@dataclasses.dataclass(frozen=True)
class FedRepParams:
  """FedRep's hyperparameters, validated on construction.

  Attributes:
    learning_rate: > 0, the SGD step of head and body.
    head_steps: >= 1 head steps per round (body fixed).
    body_steps: >= 0 body steps per round (head fixed).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES` (of the body's mean).
  """
  learning_rate: float = 0.05
  head_steps: int = 10
  body_steps: int = 1
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('learning_rate', self.learning_rate,
                            positive=True)
    validation.require_int('head_steps', self.head_steps, minimum=1)
    validation.require_int('body_steps', self.body_steps, minimum=0)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


@dataclasses.dataclass(frozen=True)
class FedPerParams:
  """FedPer's hyperparameters, validated on construction.

  Attributes:
    learning_rate: > 0, the SGD step of body and head.
    local_steps: >= 1 joint steps per round.
    client_weighting: `UNIFORM` or `NUM_EXAMPLES` (of the body's mean).
  """
  learning_rate: float = 0.05
  local_steps: int = 1
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM

  def __post_init__(self):
    validation.require_real('learning_rate', self.learning_rate,
                            positive=True)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)


def body_and_head_model(encoder: split.GaussianEncoder,
                        head: tff.learning.models.FunctionalModel
                       ) -> tff.learning.models.FunctionalModel:
  """The whole model: trainable = body weights then head weights.

  Prediction is the head on z = z_mean of the body (no sampling); loss and
  metrics are the head's.
  """
  num_body = len(encoder.initial_weights)
  head_weights, _ = head.initial_weights

  @tf.function
  def predict_on_batch(model_weights, x, training=True):
    trainable, _ = model_weights
    trainable = tuple(trainable)
    z_mean, _ = encoder.encode(trainable[:num_body], x)
    return head.predict_on_batch((trainable[num_body:], ()), z_mean,
                                 training=training)

  return tff.learning.models.FunctionalModel(
      initial_weights=(tuple(encoder.initial_weights) + tuple(head_weights),
                       ()),
      predict_on_batch_fn=predict_on_batch, loss_fn=head.loss,
      metrics_fns=(head.initialize_metrics_state, head.update_metrics_state,
                   head.finalize_metrics),
      input_spec=collections.OrderedDict(x=encoder.input_spec,
                                         y=head.input_spec['y']))


def _sgd_step(loss_fn, weights: Weights, batch, learning_rate: float,
              trained: Callable[[Weights], Weights],
              replace: Callable[[Weights, Weights], Weights]) -> Weights:
  """One SGD step on the part `trained(weights)` of `weights`."""
  part = trained(weights)
  with tf.GradientTape() as tape:
    tape.watch(part)
    loss = loss_fn(replace(weights, part), batch)
  # The encoder's log-scale weights do not reach z_mean: they stay put.
  gradients = learning_utils.dense_gradients(
      tape, loss, part, unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return replace(weights, tuple(
      w - learning_rate * g for w, g in zip(part, gradients)))


def _sgd_steps(loss_fn, weights: Weights, dataset, steps: int,
               learning_rate: float, trained: Callable[[Weights], Weights],
               replace: Callable[[Weights, Weights], Weights]) -> Weights:
  """`steps` SGD steps on the part `trained(weights)` of `weights`."""
  for batch in dataset.repeat().take(steps):
    weights = _sgd_step(loss_fn, weights, batch, learning_rate, trained,
                        replace)
  return weights


def round_steps(model: split.SplitModel, learning_rate: float,
                parts: Sequence[Tuple[str, int]]):
  """`[(step, weights, count)]`: a client round's steps, as pure TF.

  Each step `step(weights, (batch,))` is one SGD step of the whole model's
  `part` ('head', 'body' or 'both'), taken `count` times a round; what
  `tff_perfed.evaluation.costs.flops` counts.
  """
  whole = body_and_head_model(model.encoder, model.head)
  num_body = len(model.encoder.initial_weights)
  loss_fn = learning_utils.batch_loss_fn(whole)
  selectors = {
      'head': (lambda w: w[num_body:], lambda w, h: w[:num_body] + h),
      'body': (lambda w: w[:num_body], lambda w, b: b + w[num_body:]),
      'both': (lambda w: w, lambda w, part: part),
  }
  steps = []
  for part, count in parts:
    trained, replace = selectors[part]

    def step(weights, batches, trained=trained, replace=replace):
      (batch,) = batches
      return _sgd_step(loss_fn, tuple(weights), batch, learning_rate,
                       trained, replace)

    steps.append((step, tuple(whole.initial_weights[0]), count))
  return steps


def fedrep_local_update(loss_fn, body: Sequence[tf.Tensor],
                        head: Sequence[tf.Tensor], dataset, *,
                        learning_rate: float, head_steps: int,
                        body_steps: int) -> Tuple[Weights, Weights]:
  """FedRep's client round: head steps (body fixed), then body steps."""
  num_body = len(body)
  whole = tuple(body) + tuple(head)
  head_part = lambda w: w[num_body:]
  body_part = lambda w: w[:num_body]
  whole = _sgd_steps(loss_fn, whole, dataset, head_steps, learning_rate,
                     head_part, lambda w, h: w[:num_body] + h)
  whole = _sgd_steps(loss_fn, whole, dataset, body_steps, learning_rate,
                     body_part, lambda w, b: b + w[num_body:])
  return whole[:num_body], whole[num_body:]


def fedper_local_update(loss_fn, body: Sequence[tf.Tensor],
                        head: Sequence[tf.Tensor], dataset, *,
                        learning_rate: float,
                        local_steps: int) -> Tuple[Weights, Weights]:
  """FedPer's client round: joint SGD steps on body and head."""
  num_body = len(body)
  whole = _sgd_steps(loss_fn, tuple(body) + tuple(head), dataset,
                     local_steps, learning_rate, lambda w: w,
                     lambda w, part: part)
  return whole[:num_body], whole[num_body:]


def _build(encoder_fn, head_fn, local_update, client_weighting,
           server_optimizer_fn, model_aggregator, metrics_aggregator):
  """The process around `local_update(loss_fn, body, head, dataset)`."""
  made = []
  for name, make, kind in (
      ('body_fn', encoder_fn, split.GaussianEncoder),
      ('head_fn', head_fn, tff.learning.models.FunctionalModel)):
    value = make() if callable(make) else make
    if not isinstance(value, kind):
      raise validation.ArgumentTypeError(
          name, f'a no-argument callable returning a {kind.__name__}',
          type(value).__name__)
    made.append(value)
  encoder, head = made
  model = body_and_head_model(encoder, head)
  num_body = len(encoder.initial_weights)
  server_optimizer = learning_utils.default_server_optimizer(
      server_optimizer_fn)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  initial_weights_fn = learning_utils.build_initial_weights_computation(model)
  weights_type = initial_weights_fn.type_signature.result
  head_type = tff.StructWithPythonType(
      list(weights_type.trainable)[num_body:], tuple)

  @tf.function
  def client_update(global_weights, dataset, personal_head):
    start, non_trainable = global_weights
    start = tuple(start)
    loss_fn = learning_utils.batch_loss_fn(model, non_trainable)
    metrics_state = model.initialize_metrics_state()
    num_examples = tf.constant(0, tf.int64)
    whole = start[:num_body] + tuple(personal_head)
    # The model's metrics on the client's data before its round.
    for batch in dataset:
      metrics_state = learning_utils.update_train_metrics(
          model, metrics_state, (whole, non_trainable), batch,
          training=False)
      num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)
    body, new_head = local_update(loss_fn, start[:num_body],
                                  tuple(personal_head), dataset)
    _, head_non_finite = learning_utils.zero_if_non_finite(new_head)
    new_head = tuple(tf.where(head_non_finite > 0, old, new)
                     for old, new in zip(personal_head, new_head))
    # Only the body is averaged: the head's part of the update is zero.
    result, metrics_state, is_non_finite = learning_utils.client_result(
        model, start, body + start[num_body:], num_examples, metrics_state,
        client_weighting)
    return result, new_head, metrics_state, is_non_finite + head_non_finite

  return client_state_process.compose_client_state_process(
      initial_weights_fn,
      tff.learning.templates.build_broadcast_process(weights_type),
      client_update, head_type, learning_utils.dataset_type(model),
      metrics_aggregator(model.finalize_metrics),
      model_aggregator.create(weights_type.trainable,
                              tff.TensorType(np.float32)),
      tff.learning.templates.build_apply_optimizer_finalizer(
          server_optimizer, weights_type),
      initial_client_state=lambda weights: tuple(
          tf.identity(w) for w in tuple(weights.trainable)[num_body:]),
      personalized_weights=lambda weights, personal_head: (
          tff.learning.models.ModelWeights(
              trainable=tuple(weights.trainable)[:num_body] +
              tuple(personal_head),
              non_trainable=weights.non_trainable)))


_PROCESS_DOC = """
  The returned process (a `tff_perfed.templates.ClientStateLearningProcess`)
  has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)`, whose
      `global_model_weights` are `body_and_head_model`'s: trainable = body
      then the initial head;
    * `initial_client_state`: `(ModelWeights -> <head weights>)`, a
      newcomer's head: the weights' head part;
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS,
      <head weights>@CLIENTS> -> <state=...@SERVER, client_states=<head
      weights>@CLIENTS, metrics=<distributor=<>, client_work=<train=<the
      model's metrics before the round>, num_non_finite_updates=int32>,
      aggregator=..., finalizer=...>@SERVER>)`;
    * `get_model_weights(state)`: the global body with the initial head;
    * `personalized_weights(state, head)`: the global body with `head`.
"""


def build_fedrep(
    body_fn: Callable[[], split.GaussianEncoder],
    head_fn: Callable[[], tff.learning.models.FunctionalModel],
    *,
    learning_rate: float,
    head_steps: int = 10,
    body_steps: int = 1,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> client_state_process.ClientStateLearningProcess:
  params = FedRepParams(learning_rate=learning_rate, head_steps=head_steps,
                        body_steps=body_steps,
                        client_weighting=client_weighting)
  return _build(
      body_fn, head_fn,
      lambda loss_fn, body, head, dataset: fedrep_local_update(
          loss_fn, body, head, dataset, learning_rate=params.learning_rate,
          head_steps=params.head_steps, body_steps=params.body_steps),
      params.client_weighting, server_optimizer_fn, model_aggregator,
      metrics_aggregator)


build_fedrep.__doc__ = """Builds FedRep (Algorithm 1 of Collins et al. 2021).
""" + _PROCESS_DOC + """
  Args:
    body_fn: Returns the body, a `models.GaussianEncoder` (used at its mean;
      e.g. a built-in split model's `.encoder`).
    head_fn: Returns the head, a `FunctionalModel` on representations.
    learning_rate: The SGD step of head and body (> 0).
    head_steps: Head steps per round, body fixed (>= 1).
    body_steps: Body steps per round, head fixed (>= 0).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
    server_optimizer_fn: Applied to the mean body update; default SGD with
      learning rate 1.0.
    model_aggregator: Default `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid argument.
"""


def build_fedper(
    body_fn: Callable[[], split.GaussianEncoder],
    head_fn: Callable[[], tff.learning.models.FunctionalModel],
    *,
    learning_rate: float,
    local_steps: int = 1,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> client_state_process.ClientStateLearningProcess:
  params = FedPerParams(learning_rate=learning_rate, local_steps=local_steps,
                        client_weighting=client_weighting)
  return _build(
      body_fn, head_fn,
      lambda loss_fn, body, head, dataset: fedper_local_update(
          loss_fn, body, head, dataset, learning_rate=params.learning_rate,
          local_steps=params.local_steps),
      params.client_weighting, server_optimizer_fn, model_aggregator,
      metrics_aggregator)


build_fedper.__doc__ = """Builds FedPer (Arivazhagan et al. 2019).
""" + _PROCESS_DOC + """
  Args:
    body_fn: Returns the body, a `models.GaussianEncoder` (used at its mean).
    head_fn: Returns the head, a `FunctionalModel` on representations.
    learning_rate: The SGD step of body and head (> 0).
    local_steps: Joint steps per round (>= 1).
    client_weighting: `UNIFORM` or `NUM_EXAMPLES`.
    server_optimizer_fn: Applied to the mean body update; default SGD with
      learning rate 1.0.
    model_aggregator: Default `tff.aggregators.MeanFactory()`.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid argument.
"""
