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
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow_federated as tff
import tqdm

ROUND_SECONDS = 'round_seconds'
EVALUATION_SECONDS = 'evaluation_seconds'

_TFF_EVALUATION_PREFIX = 'evaluation/'
_TFF_EVALUATION_TIME = 'evaluation/evaluation_time_in_seconds'
_TFF_TRAINING_TIME = 'training_time_in_seconds'


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
    process: tff.learning.templates.LearningProcess,
    *,
    training_data_fn: Callable[[int], Any],
    total_rounds: int,
    evaluate_fn: Optional[Callable[[Any, int], Mapping[str, float]]] = None,
    eval_every: int = 1,
    state_manager: Optional[tff.program.ProgramStateManager] = None,
    rounds_per_checkpoint: int = 1,
    release_managers: Sequence[tff.program.ReleaseManager] = (),
) -> Any:
  """Runs `process` to `total_rounds`, resuming from `state_manager`.

  Args:
    process: The `LearningProcess` to train.
    training_data_fn: `training_data_fn(round_num)` -> the sampled clients'
      datasets for that round (rounds count from 1).
    total_rounds: Train until this round; a run already there does nothing.
    evaluate_fn: `evaluate_fn(model_weights, round_num)` -> flat metrics,
      called at round 0 (a fresh run), every `eval_every` rounds and at the
      last round.
    eval_every: Rounds between evaluations.
    state_manager: Where the state is saved and resumed from; its versions
      are round numbers.
    rounds_per_checkpoint: Rounds between saves; the last round is saved too.
    release_managers: Receive each round's flat metrics (see
      `flatten_round_metrics`), keyed by round number.

  Returns:
    The state after `total_rounds` rounds.
  """
  is_evaluation_round = _evaluation_rounds(total_rounds, eval_every)

  def evaluation_fn(state, round_num):
    if evaluate_fn is None or not is_evaluation_round(round_num):
      return collections.OrderedDict()
    return collections.OrderedDict(
        evaluate_fn(process.get_model_weights(state), round_num))

  # TFF's loop drives its coroutines with `asyncio.get_event_loop()`, which
  # fails after an `asyncio.run` elsewhere; give it a loop of its own.
  loop = asyncio.new_event_loop()
  asyncio.set_event_loop(loop)
  try:
    state = tff.simulation.run_training_process(
        process,
        training_selection_fn=training_data_fn,
        total_rounds=total_rounds,
        evaluation_fn=evaluation_fn,
        evaluation_selection_fn=lambda round_num: round_num,
        rounds_per_evaluation=1,
        program_state_manager=state_manager,
        rounds_per_saving_program_state=rounds_per_checkpoint,
        metrics_managers=[FlatMetricsReleaseManager(release_managers)])
    if state_manager is not None:
      versions = loop.run_until_complete(state_manager.get_versions()) or []
      if total_rounds not in versions:
        loop.run_until_complete(state_manager.save(state, total_rounds))
  finally:
    asyncio.set_event_loop(None)
    loop.close()
  return state
