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
"""

from typing import Any, NamedTuple

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
