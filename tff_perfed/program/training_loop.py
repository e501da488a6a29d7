"""The training loop as a library function, on TFF's own loop.

`run_training_loop` runs `tff.simulation.run_training_process`, TFF's loop:
it resumes from the latest state in a `tff.program.ProgramStateManager`
(or initializes and evaluates round 0), runs rounds, evaluates, releases the
metrics to `tff.program` release managers and saves the state. What this
module adds is what TFF's loop leaves to its caller:

* the evaluation schedule: every `eval_every` rounds *and* the last round
  (whose scores a run reports), given to TFF's loop as an evaluation
  function that skips the other rounds;
* the final round's state is saved even when `rounds_per_checkpoint` does
  not divide the number of rounds, so that a finished run is never redone;
  a run resumed past `total_rounds` trains nothing, says so in one warning
  line, and saves nothing (no checkpoint labelled with a smaller round ever
  holds a later state);
* divergence: a round in which every client's update was non-finite (the
  processes zero such updates and count them in `num_non_finite_updates`),
  whose aggregated update was non-finite, or after which the model weights
  are non-finite (`divergence_reason`) raises
  `TrainingDivergedError` before anything of that round is evaluated,
  released or saved, so the last checkpoint is the last finite state;
* `WriteGuardedReleaseManager`, which turns a release manager's failed
  write into `outputs.OutputWriteError` naming its file;
* `FlatMetricsReleaseManager`, which releases TFF's nested round metrics
  under the flat names of `metrics.csv` (`train/loss`,
  `num_non_finite_updates`, `round_seconds`, `personalized_accuracy@1`...);
* `ProgressReleaseManager`, a progress bar fed by the same releases.

Fault-tolerance layers and other runtimes wrap or call this function; it
never chooses an execution context.
"""

import asyncio
import collections
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tqdm

from tff_perfed import errors
from tff_perfed.program import client_states
from tff_perfed.program import outputs
from tff_perfed.templates import client_state_process

ROUND_SECONDS = 'round_seconds'
EVALUATION_SECONDS = 'evaluation_seconds'

_TFF_EVALUATION_PREFIX = 'evaluation/'
_TFF_EVALUATION_TIME = 'evaluation/evaluation_time_in_seconds'
_TFF_TRAINING_TIME = 'training_time_in_seconds'
_NON_FINITE_UPDATES = 'num_non_finite_updates'


class TrainingDivergedError(errors.RunError):
  """A round's training produced nothing finite; the run cannot go on."""

  def __init__(self, round_num: int, reason: str,
               last_saved_round: Optional[int] = None):
    """Describes the divergence.

    Args:
      round_num: The round that diverged (never saved).
      reason: What was non-finite, e.g. `divergence_reason`'s answer.
      last_saved_round: The newest checkpoint's round, if any.
    """
    kept = ('' if last_saved_round is None else
            f'; the last checkpoint, after round {last_saved_round}, is kept')
    super().__init__(
        f'training diverged at round {round_num}: {reason}{kept}; lower the '
        'learning rates (the --<algorithm>.*learning_rate flags) or check the data.')
    self.round_num = round_num
    self.reason = reason
    self.last_saved_round = last_saved_round


def _all_finite(structure: Any) -> bool:
  return all(np.all(np.isfinite(np.asarray(leaf, dtype=np.float64)))
             for leaf in tf.nest.flatten(structure)
             if np.asarray(leaf).dtype.kind in 'fc')


def _number(structure: Any, *names: str) -> Optional[float]:
  for name in names:
    if not isinstance(structure, Mapping) or name not in structure:
      return None
    structure = structure[name]
  return float(structure) if np.ndim(structure) == 0 else None


def divergence_reason(metrics: Mapping[str, Any], num_clients: int,
                      model_weights: Any = None) -> Optional[str]:
  """Why a round's outcome shows divergence, or None if it does not.

  A round diverged when no client's update was finite, when the aggregated
  update was non-finite (the finalizer then leaves the model as it was), or
  when the model weights are non-finite. Processes that zero non-finite
  updates count them in `client_work/num_non_finite_updates` (Per-FedAvg,
  AFML); TFF's FedAvg does not, but drops the training metrics of such
  clients, so that no example counted in `client_work/train/num_examples`
  means the same.

  Args:
    metrics: The round's nested metrics from `process.next`.
    num_clients: How many clients trained in the round.
    model_weights: The model weights after the round (any nest of arrays),
      or None not to check them.

  Returns:
    A short reason, or None for a round that can go on.
  """
  non_finite = _number(metrics, 'client_work', _NON_FINITE_UPDATES)
  if num_clients > 0:
    if non_finite is not None and non_finite >= num_clients:
      return (f'the updates of all {num_clients} clients were non-finite '
              '(NaN or infinite)')
    if non_finite is None and _number(metrics, 'client_work', 'train',
                                      'num_examples') == 0:
      return (f'the updates of all {num_clients} clients were non-finite '
              '(NaN or infinite; no example was counted)')
  if (_number(metrics, 'finalizer', 'update_non_finite') or 0) > 0:
    return 'the aggregated update was non-finite (NaN or infinite)'
  if model_weights is not None and not _all_finite(model_weights):
    return 'the model weights became non-finite (NaN or infinite)'
  return None


class _DivergenceCheckingProcess:
  """`initialize` and `next` of a process, `next` raising on divergence.

  TFF's loop calls only these two; it saves a round's state after its
  `next` returns, so raising here keeps the diverged state out of the
  checkpoints (and out of the metrics and the evaluation).
  """

  def __init__(self, process, current_round: Callable[[], int]):
    self._process = process
    self._current_round = current_round
    self.initialize = process.initialize

  def next(self, state, client_data):
    output = self._process.next(state, client_data)
    new_state, metrics = output.state, output.metrics
    reason = divergence_reason(
        metrics, len(client_data),
        getattr(new_state, 'global_model_weights', None))
    if reason is not None:
      raise TrainingDivergedError(self._current_round(), reason)
    return output


class ClientStateRounds:
  """A `ClientStateLearningProcess`'s rounds as TFF's loop calls them.

  `next(state, client_data)` reads the sampled clients' states from the
  store (a client that never trained gets `initial_client_state` of the
  current global model: what the algorithm gives a newcomer), runs the
  process's `next` and writes the new states back under the round's
  number, before TFF's loop may checkpoint the round (the checkpoint's
  manifest then names them).
  """

  def __init__(self, process: client_state_process.ClientStateLearningProcess,
               store: client_states.ClientStateStore,
               client_ids_fn: Callable[[int], Sequence[str]],
               current_round: Callable[[], int]):
    self._process = process
    self._store = store
    self._client_ids_fn = client_ids_fn
    self._current_round = current_round
    self.initialize = process.initialize
    self.get_model_weights = process.get_model_weights

  def client_states(self, state, client_ids: Sequence[str]) -> List[Any]:
    """The clients' states; newcomers' from the current global model."""
    newcomer = None
    states = []
    for client_id in client_ids:
      saved = self._store.read(client_id)
      if saved is None:
        if newcomer is None:
          newcomer = self._process.initial_client_state(
              self._process.get_model_weights(state))
        saved = newcomer
      states.append(saved)
    return states

  def next(self, state, client_data):
    round_num = self._current_round()
    client_ids = list(self._client_ids_fn(round_num))
    output = self._process.next(state, client_data,
                                self.client_states(state, client_ids))
    for client_id, client_state in zip(client_ids, output.client_states):
      self._store.write(round_num, client_id, client_state)
    return tff.learning.templates.LearningProcessOutput(output.state,
                                                        output.metrics)


def _flatten(prefix: str, value: Any, out: Dict[str, float]) -> None:
  if isinstance(value, Mapping):
    for key, item in value.items():
      _flatten(f'{prefix}/{key}' if prefix else str(key), item, out)
  elif np.ndim(value) == 0:
    out[prefix] = float(value)


def flatten_round_metrics(value: Mapping[str, Any]) -> Dict[str, float]:
  """TFF's per-round metrics under `metrics.csv`'s flat names.

  The client work's measurements keep their nested names without prefix
  (`train/loss`, `num_non_finite_updates`), evaluation metrics lose TFF's
  `evaluation/` prefix, TFF's timings become `round_seconds` and
  `evaluation_seconds` (the latter only in rounds that were evaluated), the
  finalizer's measurements are prefixed `finalizer/` (AFML reports its
  server-side loss term there), and the distributor's and aggregator's are
  left out.
  """
  flat: Dict[str, float] = {}
  _flatten('', value.get('client_work', {}), flat)
  _flatten('finalizer', value.get('finalizer', {}), flat)
  if _TFF_TRAINING_TIME in value:
    flat[ROUND_SECONDS] = float(value[_TFF_TRAINING_TIME])
  evaluation = {
      name[len(_TFF_EVALUATION_PREFIX):]: item
      for name, item in value.items()
      if name.startswith(_TFF_EVALUATION_PREFIX) and
      name != _TFF_EVALUATION_TIME
  }
  if evaluation:
    _flatten('', evaluation, flat)
    flat[EVALUATION_SECONDS] = float(value[_TFF_EVALUATION_TIME])
  return flat


class FlatMetricsReleaseManager(tff.program.ReleaseManager):
  """Releases `flatten_round_metrics(value)` to other release managers."""

  def __init__(self, release_managers: Sequence[tff.program.ReleaseManager]):
    self._release_managers = list(release_managers)

  async def release(self, value: Mapping[str, Any], key: int) -> None:
    flat = flatten_round_metrics(value)
    await asyncio.gather(
        *[manager.release(flat, key) for manager in self._release_managers])


class WithRoundMetricsReleaseManager(tff.program.ReleaseManager):
  """Adds `round_metrics(round_num)` to each released round's flat metrics.

  For what a run knows without TFF's measurements, such as its costs
  (bytes and FLOPs per client round, bytes so far).
  """

  def __init__(self, release_managers: Sequence[tff.program.ReleaseManager],
               round_metrics: Callable[[int], Mapping[str, float]]):
    self._release_managers = list(release_managers)
    self._round_metrics = round_metrics

  async def release(self, value: Mapping[str, Any], key: int) -> None:
    value = dict(value, **self._round_metrics(key))
    await asyncio.gather(
        *[manager.release(value, key) for manager in self._release_managers])


class WriteGuardedReleaseManager(tff.program.ReleaseManager):
  """Raises `outputs.OutputWriteError` naming `path` when a release fails."""

  def __init__(self, release_manager: tff.program.ReleaseManager, path: str):
    self._release_manager = release_manager
    self._path = path

  async def release(self, value: Any, key: int) -> None:
    with outputs.write_errors_named(self._path):
      await self._release_manager.release(value, key)


class ProgressReleaseManager(tff.program.ReleaseManager):
  """A tqdm progress bar over rounds, showing a few released metrics.

  Released values are flat `{name: number}` mappings keyed by round.
  """

  def __init__(self, total_rounds: int, *, description: str,
               shown_metrics: Sequence[str] = ()):
    self._bar = tqdm.tqdm(total=total_rounds, desc=description, unit='round',
                          file=sys.stderr, disable=None)
    self._shown_metrics = tuple(shown_metrics)

  async def release(self, value: Mapping[str, float], key: int) -> None:
    shown = {name: f'{value[name]:.3f}' for name in self._shown_metrics
             if name in value}
    if shown:
      self._bar.set_postfix(shown, refresh=False)
    self._bar.update(key - self._bar.n)

  def close(self) -> None:
    self._bar.close()


def _evaluation_rounds(total_rounds: int, eval_every: int) -> Callable[[int],
                                                                      bool]:
  return lambda r: r == 0 or r % eval_every == 0 or r == total_rounds


def run_training_loop(
    process: Any,
    *,
    training_data_fn: Callable[[int], Any],
    total_rounds: int,
    evaluate_fn: Optional[Callable[[Any, int], Mapping[str, float]]] = None,
    eval_every: int = 1,
    state_manager: Optional[tff.program.ProgramStateManager] = None,
    rounds_per_checkpoint: int = 1,
    release_managers: Sequence[tff.program.ReleaseManager] = (),
    client_ids_fn: Optional[Callable[[int], Sequence[str]]] = None,
    client_state_store: Optional[client_states.ClientStateStore] = None,
) -> Any:
  """Runs `process` to `total_rounds`, resuming from `state_manager`.

  Args:
    process: The `tff.learning.templates.LearningProcess` to train, or a
      `templates.ClientStateLearningProcess` (then `client_ids_fn` and
      `client_state_store` are needed, and the state manager should save
      the store with each checkpoint: `checkpoints.CheckpointManager`'s
      `client_states`).
    training_data_fn: `training_data_fn(round_num)` -> the sampled clients'
      datasets for that round (rounds count from 1).
    total_rounds: Train until this round; a run already there does nothing.
    evaluate_fn: `evaluate_fn(model_weights, round_num)` -> flat metrics,
      called at round 0 (a fresh run), every `eval_every` rounds and at the
      last round. For a process with client states it gets the server
      state instead of the model weights (each client is scored with its
      own weights, `personalized_weights(state, client_state)`).
    eval_every: Rounds between evaluations.
    state_manager: Where the state is saved and resumed from; its versions
      are round numbers.
    rounds_per_checkpoint: Rounds between saves; the last round is saved too.
    release_managers: Receive each round's flat metrics (see
      `flatten_round_metrics`), keyed by round number.
    client_ids_fn: `client_ids_fn(round_num)` -> the ids of the clients
      whose datasets `training_data_fn(round_num)` returns, in order.
    client_state_store: Where the clients' states are kept between rounds.

  Returns:
    The state after `total_rounds` rounds, or after the saved round if the
    state manager already holds a later one (a warning says so).

  Raises:
    TrainingDivergedError: If a round diverges (`divergence_reason`); its
      state is not saved.
    OutputWriteError: If a release manager or the state manager cannot
      write.
  """
  is_evaluation_round = _evaluation_rounds(total_rounds, eval_every)
  has_client_states = isinstance(
      process, client_state_process.ClientStateLearningProcess)
  if has_client_states and (client_ids_fn is None or
                            client_state_store is None):
    raise ValueError('a process with client states needs client_ids_fn and '
                     'client_state_store')

  def evaluation_fn(state, round_num):
    if evaluate_fn is None or not is_evaluation_round(round_num):
      return collections.OrderedDict()
    return collections.OrderedDict(evaluate_fn(
        state if has_client_states else process.get_model_weights(state),
        round_num))

  # TFF's loop drives its coroutines with `asyncio.get_event_loop()`, which
  # fails after an `asyncio.run` elsewhere; give it a loop of its own.
  current_round = [0]
  rounds = process
  if has_client_states:
    rounds = ClientStateRounds(process, client_state_store, client_ids_fn,
                               lambda: current_round[0])

  def selection_fn(round_num):
    # TFF's loop calls this right before `next` for the same round.
    current_round[0] = round_num
    return training_data_fn(round_num)

  def saved_rounds():
    if state_manager is None:
      return []
    return loop.run_until_complete(state_manager.get_versions()) or []

  loop = asyncio.new_event_loop()
  asyncio.set_event_loop(loop)
  try:
    try:
      state = tff.simulation.run_training_process(
          _DivergenceCheckingProcess(rounds, lambda: current_round[0]),
          training_selection_fn=selection_fn,
        total_rounds=total_rounds,
          evaluation_fn=evaluation_fn,
          evaluation_selection_fn=lambda round_num: round_num,
          rounds_per_evaluation=1,
          program_state_manager=state_manager,
          rounds_per_saving_program_state=rounds_per_checkpoint,
          metrics_managers=[FlatMetricsReleaseManager(release_managers)])
    except TrainingDivergedError as e:
      raise TrainingDivergedError(e.round_num, e.reason,
                                  max(saved_rounds(), default=None)) from None
    if state_manager is not None:
      latest = max(saved_rounds(), default=None)
      if latest is None or latest < total_rounds:
        loop.run_until_complete(state_manager.save(state, total_rounds))
      elif latest > total_rounds:
        logging.warning(
            'the checkpoints already hold round %d, past the %d rounds asked '
            'for (--rounds): nothing was trained, and the state after round '
            '%d is used.', latest, total_rounds, latest)
  finally:
    asyncio.set_event_loop(None)
    loop.close()
  return state
