"""A learning process whose clients keep state from one round to the next.

TFF's `LearningProcess` maps server state and client data to server state:
it has no client state (TFF issue #894; FedJAX #289 asks the same). Ditto's
and APFL's personal models, FedRep's and FedPer's personal heads live on the
client between rounds, so their processes have the type built here, beside
TFF's and in its style:

* `initialize`: `( -> S@SERVER)`;
* `initial_client_state`: `(ModelWeights -> C)`, a client's first state
  from the global model weights (what a newcomer starts from);
* `next`: `(<S@SERVER, {dataset}@CLIENTS, C@CLIENTS> ->
  <state=S@SERVER, client_states=C@CLIENTS, metrics=M@SERVER>)`, the
  client states in the order of the client datasets;
* `get_model_weights`: `(S -> ModelWeights)`, the global model;
* `personalized_weights`: `(<S, C> -> ModelWeights)`, the weights a client
  with state C is evaluated with.

Where the client states are kept between rounds (in memory, on disk) is the
program's business, not the process's.

`compose_client_state_process` builds one from TFF's parts, as
`tff.learning.templates.compose_learning_process` does: a distributor, a
client update that also maps the client's state, an aggregator and a
finalizer of the global model; only the client's math is new.
"""

import collections
from typing import Any, Callable, NamedTuple

import tensorflow as tf
import tensorflow_federated as tff


class ClientStateProcessOutput(NamedTuple):
  """`next`'s result, as `tff.learning.templates.LearningProcessOutput`.

  Attributes:
    state: The server state, placed at SERVER.
    client_states: Each sampled client's new state, placed at CLIENTS.
    metrics: The round's metrics, placed at SERVER.
  """
  state: Any
  client_states: Any
  metrics: Any


class ClientStateLearningProcess(tff.templates.IterativeProcess):
  """An iterative process with per-client state (module docstring)."""

  def __init__(self, initialize_fn: tff.Computation, next_fn: tff.Computation,
               initial_client_state_fn: tff.Computation,
               get_model_weights_fn: tff.Computation,
               personalized_weights_fn: tff.Computation):
    """Checks the computations' types against each other.

    Raises:
      TypeError: If `next_fn` does not take and return client states of the
        type `initial_client_state_fn` makes, placed at CLIENTS, or the
        getters do not take the server state.
    """
    super().__init__(initialize_fn, next_fn, next_is_multi_arg=True)
    parameter = next_fn.type_signature.parameter
    result = next_fn.type_signature.result
    client_state_type = initial_client_state_fn.type_signature.result
    want = tff.FederatedType(client_state_type, tff.CLIENTS)
    if (len(parameter) != 3 or not want.is_assignable_from(parameter[2]) or
        len(result) != 3 or not want.is_assignable_from(result[1])):
      raise TypeError(
          'next must take and return client states of type '
          f'{want}; it has type {next_fn.type_signature}.')
    state_member = self.state_type.member
    for name, getter in (('get_model_weights', get_model_weights_fn),
                         ('personalized_weights', personalized_weights_fn)):
      first = getter.type_signature.parameter
      if name == 'personalized_weights':
        first = first[0]
      if not first.is_assignable_from(state_member):
        raise TypeError(f'{name} must take the server state {state_member}; '
                        f'it has type {getter.type_signature}.')
    self._initial_client_state_fn = initial_client_state_fn
    self._get_model_weights_fn = get_model_weights_fn
    self._personalized_weights_fn = personalized_weights_fn

  @property
  def initial_client_state(self) -> tff.Computation:
    return self._initial_client_state_fn

  @property
  def get_model_weights(self) -> tff.Computation:
    return self._get_model_weights_fn

  @property
  def personalized_weights(self) -> tff.Computation:
    return self._personalized_weights_fn

  @property
  def client_state_type(self) -> tff.Type:
    return self._initial_client_state_fn.type_signature.result


def compose_client_state_process(
    initial_model_weights_fn: tff.Computation,
    distributor: tff.templates.MeasuredProcess,
    client_update: Callable[..., Any],
    client_state_type: tff.Type,
    data_type: tff.Type,
    finalize_metrics: Callable[[Any], Any],
    aggregator: tff.templates.AggregationProcess,
    finalizer: tff.learning.templates.FinalizerProcess,
    *,
    initial_client_state: Callable[[Any], Any],
    personalized_weights: Callable[[Any, Any], Any],
) -> ClientStateLearningProcess:
  """A `ClientStateLearningProcess` from TFF's parts and the client's math.

  Args:
    initial_model_weights_fn: `( -> ModelWeights)`, a TF computation.
    distributor: Broadcasts the global `ModelWeights` (e.g.
      `tff.learning.templates.build_broadcast_process`).
    client_update: A `tf.function(model_weights, dataset, client_state) ->
      (ClientResult, client_state, metrics_state, is_non_finite)`, where
      `model_weights` is `(trainable, non_trainable)` and `is_non_finite` an
      int32 (summed into `num_non_finite_updates`).
    client_state_type: The type of a client's state.
    data_type: The type of a client's dataset.
    finalize_metrics: Federated: metrics states at CLIENTS -> metrics at
      SERVER (e.g. `tff.learning.metrics.sum_then_finalize(finalize)`).
    aggregator: Of the global model's updates, weighted.
    finalizer: Applies the aggregated update to the global model.
    initial_client_state: TF ops: global `ModelWeights` -> a newcomer's
      state.
    personalized_weights: TF ops: (global `ModelWeights`, client state) ->
      the `ModelWeights` the client is evaluated with.

  Returns:
    The process; its state is a `tff.learning.templates.
    LearningAlgorithmState` (with `client_work=()`), its metrics those of
    `compose_learning_process`.
  """
  weights_type = initial_model_weights_fn.type_signature.result

  @tff.tensorflow.computation(weights_type, data_type, client_state_type)
  def client_update_computation(model_weights, dataset, client_state):
    return client_update(
        (model_weights.trainable, model_weights.non_trainable), dataset,
        client_state)

  @tff.federated_computation
  def initialize_fn():
    return tff.federated_zip(tff.learning.templates.LearningAlgorithmState(
        global_model_weights=tff.federated_eval(initial_model_weights_fn,
                                                tff.SERVER),
        distributor=distributor.initialize(),
        client_work=tff.federated_value((), tff.SERVER),
        aggregator=aggregator.initialize(),
        finalizer=finalizer.initialize()))

  state_type = initialize_fn.type_signature.result

  @tff.federated_computation(
      state_type, tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(client_state_type, tff.CLIENTS))
  def next_fn(state, client_data, client_states):
    distributed = distributor.next(state.distributor,
                                   state.global_model_weights)
    result, new_client_states, metrics_state, is_non_finite = (
        tff.federated_map(client_update_computation,
                          (distributed.result, client_data, client_states)))
    aggregated = aggregator.next(state.aggregator, result.update,
                                 result.update_weight)
    finalized = finalizer.next(state.finalizer, state.global_model_weights,
                               aggregated.result)
    new_state = tff.federated_zip(tff.learning.templates.LearningAlgorithmState(
        finalized.result, distributed.state, state.client_work,
        aggregated.state, finalized.state))
    client_work = tff.federated_zip(collections.OrderedDict(
        train=finalize_metrics(metrics_state),
        num_non_finite_updates=tff.federated_sum(is_non_finite)))
    metrics = tff.federated_zip(collections.OrderedDict(
        distributor=distributed.measurements, client_work=client_work,
        aggregator=aggregated.measurements,
        finalizer=finalized.measurements))
    return ClientStateProcessOutput(new_state, new_client_states, metrics)

  @tff.tensorflow.computation(weights_type)
  def initial_client_state_fn(model_weights):
    return initial_client_state(model_weights)

  @tff.tensorflow.computation(state_type.member)
  def get_model_weights_fn(state):
    return state.global_model_weights

  @tff.tensorflow.computation(state_type.member, client_state_type)
  def personalized_weights_fn(state, client_state):
    weights = personalized_weights(state.global_model_weights, client_state)
    return tff.learning.models.ModelWeights(
        trainable=tuple(tf.identity(w) for w in weights.trainable),
        non_trainable=tuple(tf.identity(w) for w in weights.non_trainable))

  return ClientStateLearningProcess(initialize_fn, next_fn,
                                    initial_client_state_fn,
                                    get_model_weights_fn,
                                    personalized_weights_fn)


def build_personalized_weights_at_clients(
    process: ClientStateLearningProcess) -> tff.Computation:
  """`(<S@SERVER, {C}@CLIENTS> -> {ModelWeights}@CLIENTS)`.

  Each client's `personalized_weights(state, client_state)`, the server
  state broadcast: what a program evaluates many clients with in one call.
  """
  state_type = process.state_type

  @tff.federated_computation(
      state_type, tff.FederatedType(process.client_state_type, tff.CLIENTS))
  def personalized_weights_at_clients(state, client_states):
    return tff.federated_map(process.personalized_weights,
                             (tff.federated_broadcast(state), client_states))

  return personalized_weights_at_clients
