"""Helpers every algorithm builder shares, on `tff.learning` public APIs.

* the model's initial-weights computation and its `ModelWeights` type (one
  source of truth for the weights type, as `build_weighted_fed_avg` does);
* the type of a client's dataset;
* the batch-loss adapter `loss_fn(trainable_weights, batch)` that the pure
  math in `tff_perfed.algorithms.meta_gradients` differentiates;
* zeroing a non-finite client update (TFF keeps its own helper internal);
* checking `model_fn` and the federated plumbing arguments;
* a stateless `ClientWorkProcess` around a client's `tf.function`, and the
  pieces every client update shares (train metrics, its `ClientResult`).
"""

import collections
from typing import Any, Callable, Sequence, Tuple

import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation

FunctionalModel = tff.learning.models.FunctionalModel
ModelFn = Callable[[], FunctionalModel]


def build_model(model_fn: ModelFn) -> FunctionalModel:
  """Calls `model_fn` once and checks that it made a `FunctionalModel`.

  Raises:
    ArgumentTypeError: If `model_fn` is not callable or returns something
      else than a `tff.learning.models.FunctionalModel`.
  """
  expected = ('a no-argument callable returning a '
              'tff.learning.models.FunctionalModel')
  if not callable(model_fn):
    raise validation.ArgumentTypeError('model_fn', expected, model_fn)
  model = model_fn()
  if not isinstance(model, FunctionalModel):
    raise validation.ArgumentTypeError(
        'model_fn', expected, f'a callable returning {type(model).__name__}')
  return model


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


def dataset_type(model: FunctionalModel) -> tff.SequenceType:
  """The type of a client dataset: a sequence of the model's batches."""
  return tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))


def batch_loss_fn(model: FunctionalModel,
                  non_trainable_weights: Sequence[Any] = ()):
  """Adapts a `FunctionalModel` to `loss_fn(trainable_weights, batch)`.

  This is the form `tff_perfed.algorithms.meta_gradients` differentiates;
  `batch` is the model's `OrderedDict(x=..., y=...)` element.
  """
  non_trainable_weights = tuple(non_trainable_weights)

  def loss_fn(trainable_weights, batch):
    output = model.predict_on_batch(
        (tuple(trainable_weights), non_trainable_weights),
        batch['x'],
        training=True)
    return model.loss(output, batch['y'])

  return loss_fn


def dense_gradients(tape: tf.GradientTape, loss: tf.Tensor,
                    weights: Sequence[tf.Tensor],
                    **kwargs: Any) -> Tuple[tf.Tensor, ...]:
  """`tape.gradient(loss, weights)` with every gradient a dense tensor.

  An embedding lookup's gradient is an `IndexedSlices`, which arithmetic
  with tensors (a step, a proximal term) does not accept.

  Args:
    tape: The tape that recorded `loss`.
    loss: A scalar.
    weights: The watched tensors.
    **kwargs: For `tape.gradient` (e.g. `unconnected_gradients`).
  """
  return tuple(tf.convert_to_tensor(g)
               for g in tape.gradient(loss, weights, **kwargs))


def zero_if_non_finite(update: Sequence[tf.Tensor]
                      ) -> Tuple[Tuple[tf.Tensor, ...], tf.Tensor]:
  """Returns `(update or zeros, 1 if any entry was non-finite else 0)`.

  One NaN from a diverged client would otherwise poison the mean update.
  The flag is an int32, summed over clients into `num_non_finite_updates`.
  """
  update = tuple(update)
  all_finite = tf.reduce_all(
      [tf.reduce_all(tf.math.is_finite(u)) for u in update])
  zeroed = tuple(
      tf.where(all_finite, u, tf.zeros_like(u)) for u in update)
  return zeroed, tf.cast(tf.logical_not(all_finite), tf.int32)


def update_train_metrics(model: FunctionalModel, metrics_state, weights,
                         batch, *, training: bool = True):
  """The model's metrics state after scoring `weights` on `batch`."""
  output = model.predict_on_batch(weights, batch['x'], training=training)
  return model.update_metrics_state(
      metrics_state, labels=batch['y'],
      batch_output=tff.learning.models.BatchOutput(
          loss=model.loss(output, batch['y']), predictions=output))


def client_result(model: FunctionalModel, start: Sequence[tf.Tensor],
                  trained: Sequence[tf.Tensor], num_examples: tf.Tensor,
                  metrics_state, client_weighting):
  """A client's `(ClientResult, metrics_state, is_non_finite)`.

  The update is `start - trained` (TFF's convention: the finalizer
  subtracts it), zeroed with weight 0 if any entry is non-finite; the weight
  is 1 (`UNIFORM`) or the examples read (`NUM_EXAMPLES`); the metrics of a
  non-finite client are reset, so that they do not pollute the aggregate.
  """
  update = tuple(w0 - w for w0, w in zip(start, trained))
  update, is_non_finite = zero_if_non_finite(update)
  if client_weighting is tff.learning.ClientWeighting.NUM_EXAMPLES:
    weight = tf.cast(num_examples, tf.float32)
  else:
    weight = tf.constant(1.0)
  weight = tf.where(is_non_finite > 0, 0.0, weight)
  metrics_state = tf.cond(is_non_finite > 0, model.initialize_metrics_state,
                          lambda: metrics_state)
  return (tff.learning.templates.ClientResult(
      update=update, update_weight=weight), metrics_state, is_non_finite)


def default_server_optimizer(
    server_optimizer_fn) -> tff.learning.optimizers.Optimizer:
  """SGD with learning rate 1.0 (the plain average) unless one is given."""
  if server_optimizer_fn is None:
    return tff.learning.optimizers.build_sgdm(learning_rate=1.0)
  if not isinstance(server_optimizer_fn, tff.learning.optimizers.Optimizer):
    raise validation.ArgumentTypeError(
        'server_optimizer_fn', 'a tff.learning.optimizers.Optimizer',
        server_optimizer_fn)
  return server_optimizer_fn


def default_model_aggregator(
    model_aggregator) -> tff.aggregators.WeightedAggregationFactory:
  """`tff.aggregators.MeanFactory()` unless a weighted factory is given."""
  if model_aggregator is None:
    return tff.aggregators.MeanFactory()
  if not isinstance(model_aggregator,
                    tff.aggregators.WeightedAggregationFactory):
    raise validation.ArgumentTypeError(
        'model_aggregator', 'a tff.aggregators.WeightedAggregationFactory',
        type(model_aggregator).__name__)
  return model_aggregator


def build_stateless_client_work(
    model: FunctionalModel, client_update, *,
    metrics_aggregator) -> tff.learning.templates.ClientWorkProcess:
  """A stateless `ClientWorkProcess` around `client_update`.

  Args:
    model: The model whose weights and batches the work takes.
    client_update: `tf.function((trainable, non_trainable), dataset) ->
      (ClientResult, metrics_state, is_non_finite)`.
    metrics_aggregator: Builds the metrics aggregation from the model's
      finalizer (e.g. `tff.learning.metrics.sum_then_finalize`).

  Returns:
    A process whose `next` has type signature
    `(<()@SERVER, ModelWeights@CLIENTS, {dataset}@CLIENTS> ->
      <state=()@SERVER, result=ClientResult@CLIENTS,
       measurements=<train=metrics, num_non_finite_updates=int32>@SERVER>)`.
  """
  weights_type = model_weights_type(model)
  data_type = dataset_type(model)

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
