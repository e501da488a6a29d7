"""Checkpoints that survive damaged files, interrupted saves and full disks.

`CheckpointManager` is TFF's `tff.program.FileProgramStateManager` (one
directory per round, `program_state_<round>`, written to a temporary
directory and renamed) with what a long run needs on top:

* the state is stored as its flattened arrays in one NumPy file,
  `state.npz` (`write_state_file`), not as a SavedModel: each SavedModel
  save keeps about 120-160 KiB of this process's memory for good (TF traces
  a module per save), which over 2,000 rounds checkpointed every round is
  hundreds of MiB; an `.npz` save keeps nothing. A state holding values
  NumPy cannot store without pickling, and checkpoints written by earlier
  versions, go through TFF's SavedModel format as before;
* at construction, the temporary directories of saves that were cut short
  (`program_state_<round>_temp<digits>`) are removed;
* `load_latest` skips a damaged checkpoint (truncated or garbage files, a
  missing file, an empty directory): it is set aside as
  `damaged_program_state_<round>` (kept for inspection, and no longer in the
  way of the round's next save), one warning line names it, and the newest
  intact checkpoint is loaded; when none is intact the run cannot resume and
  `CheckpointsUnusableError` says so;
* `save` turns a failed write into `outputs.OutputWriteError` naming the
  checkpoint, after removing its partial temporary directory; the earlier
  checkpoints are untouched (old ones are removed only after a save
  succeeded);
* with a `client_states.ClientStateStore`, each checkpoint also holds the
  store's manifest (written in the same temporary directory, so that the
  server state and the clients' states it goes with land in one rename),
  a checkpoint whose manifest does not match the store's files counts as
  damaged, loading restores the store to the loaded round, and client
  state versions that no kept checkpoint names are removed after a save.
"""

import os
import random
import re
import shutil
from typing import Any, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import errors
from tff_perfed.program import client_states as client_states_lib
from tff_perfed.program import outputs

PREFIX = 'program_state_'
DAMAGED_PREFIX = 'damaged_'
STATE_FILE = 'state.npz'
_MAX_REASON_CHARS = 160


class CheckpointsUnusableError(errors.RunError):
  """Checkpoints exist but none of them can be loaded."""


def _interrupted_save_pattern(prefix: str) -> re.Pattern:
  # TFF's `file_utils.write_saved_model` writes `<path>_temp<4 digits>`.
  return re.compile(rf'^{re.escape(prefix)}\d+_temp\d+$')


def remove_interrupted_saves(root_dir: str, prefix: str = PREFIX) -> List[str]:
  """Removes the temporary directories of saves that did not finish.

  Only the process that holds the run's lock may call this.

  Args:
    root_dir: The checkpoints directory.
    prefix: The checkpoints' name prefix.

  Returns:
    The names removed.
  """
  if not os.path.isdir(root_dir):
    return []
  pattern = _interrupted_save_pattern(prefix)
  removed = []
  for name in sorted(os.listdir(root_dir)):
    if pattern.match(name):
      shutil.rmtree(os.path.join(root_dir, name), ignore_errors=True)
      removed.append(name)
  return removed


def describe_failure(error: BaseException) -> str:
  """A short one-line reason from an exception that may span many lines."""
  text = ' '.join(str(error).split()) or type(error).__name__
  if len(text) > _MAX_REASON_CHARS:
    text = text[:_MAX_REASON_CHARS - 3] + '...'
  return f'{type(error).__name__}: {text}'


def state_arrays(state: Any) -> Optional[List[np.ndarray]]:
  """The state's leaves as arrays, or None if one needs pickling to store."""
  arrays = [np.asarray(leaf) for leaf in tf.nest.flatten(state)]
  if any(array.dtype == object for array in arrays):
    return None
  return arrays


def write_state_file(path: str, arrays: Sequence[np.ndarray]) -> None:
  """Writes `arrays` to the `.npz` file `path`, flushed to the disk."""
  with open(path, 'wb') as f:
    np.savez(f, *arrays)
    f.flush()
    os.fsync(f.fileno())


def read_state_file(path: str, structure: Any) -> Any:
  """The state stored at `path`, in the nested structure of `structure`.

  Raises:
    ValueError: If the file does not hold as many arrays as `structure`
      has leaves (or any error NumPy raises on a damaged file).
  """
  with np.load(path, allow_pickle=False) as stored:
    arrays = [stored[f'arr_{i}'] for i in range(len(stored.files))]
  expected = len(tf.nest.flatten(structure))
  if len(arrays) != expected:
    raise ValueError(f'{path} holds {len(arrays)} arrays, the state has '
                     f'{expected} values')
  # Scalars come back as 0-d arrays; the process gave NumPy scalars.
  leaves = [array[()] if array.ndim == 0 else array for array in arrays]
  return tf.nest.pack_sequence_as(structure, leaves)


def _unused_path(path: str) -> str:
  candidate, n = path, 1
  while os.path.exists(candidate):
    candidate, n = f'{path}.{n}', n + 1
  return candidate


class CheckpointManager(tff.program.FileProgramStateManager):
  """TFF's file state manager, tolerant of damaged and failed checkpoints.

  Versions are round numbers. Keeps the newest `keep_total` checkpoints.
  """

  def __init__(self, root_dir: str, *, keep_total: int = 2,
               client_states: Optional[client_states_lib.ClientStateStore]
               = None):
    """Opens (creating if needed) the checkpoints of `root_dir`.

    Args:
      root_dir: The checkpoints directory.
      keep_total: How many of the newest checkpoints are kept.
      client_states: The run's client states, saved and restored with the
        server state; None for a process without client state.

    Raises:
      OutputWriteError: If `root_dir` cannot be created.
    """
    with outputs.write_errors_named(root_dir):
      super().__init__(root_dir, prefix=PREFIX, keep_total=keep_total,
                       keep_first=False)
    self.root_dir = root_dir
    self.removed_interrupted_saves = remove_interrupted_saves(root_dir)
    self.loaded_version: Optional[int] = None
    self.client_states = client_states

  def path_for_version(self, version: int) -> str:
    """The directory of the checkpoint of round `version`."""
    return self._get_path_for_version(version)

  def _set_aside(self, version: int) -> str:
    path = self.path_for_version(version)
    aside = _unused_path(os.path.join(self.root_dir,
                                      DAMAGED_PREFIX + os.path.basename(path)))
    with outputs.write_errors_named(path):
      os.rename(path, aside)
    return aside

  async def load_latest(self, structure: Any) -> Tuple[Any, int]:
    """The newest intact checkpoint and its round, or `(None, 0)` if none.

    Damaged checkpoints newer than it are set aside and reported in one
    warning line.

    Args:
      structure: The state's structure (`process.initialize()`).

    Returns:
      `(state, round)`, or `(None, 0)` when there is no checkpoint.

    Raises:
      CheckpointsUnusableError: If there are checkpoints and none loads;
        they are then left as they are.
    """
    versions = await self.get_versions() or []
    failures = []
    for version in reversed(versions):
      try:
        state = await self.load(version, structure)
        if self.client_states is not None:
          manifest = client_states_lib.read_manifest(
              self.path_for_version(version))
          mismatch = self.client_states.mismatch(manifest)
          if mismatch:
            raise ValueError(f'client states do not match: {mismatch}')
      except Exception as e:  # pylint: disable=broad-except
        # Whatever a damaged SavedModel makes TF raise (DecodeError,
        # OSError, DataLossError, NotFoundError, ValueError...).
        failures.append((version, describe_failure(e)))
        continue
      if failures:
        set_aside = [(self._set_aside(v), reason) for v, reason in failures]
        logging.warning(
            'damaged checkpoint%s %s; resuming from %s (round %d), the newest '
            'intact one.', 's' if len(set_aside) > 1 else '',
            '; '.join(f'{self.path_for_version(v)} ({reason}) set aside as '
                      f'{os.path.basename(aside)}'
                      for (v, _), (aside, reason) in zip(failures, set_aside)),
            self.path_for_version(version), version)
      self.loaded_version = version
      if self.client_states is not None:
        self.client_states.restore(manifest, version)
      return state, version
    if failures:
      raise CheckpointsUnusableError(
          f'no checkpoint in {self.root_dir} can be loaded ('
          + '; '.join(f'{os.path.basename(self.path_for_version(v))}: {reason}'
                      for v, reason in failures)
          + f'); remove {self.root_dir} to start the run over, or use a new '
          'output_dir.')
    if self.client_states is not None:
      self.client_states.restore({}, 0)  # A fresh start: no client trained.
    return None, 0

  async def load(self, version: int, structure: Any) -> Any:
    """The state of round `version`, from `state.npz` or a SavedModel.

    Raises:
      ProgramStateNotFoundError: If there is no checkpoint of `version`.
      Exception: Whatever NumPy or TF raises on a damaged checkpoint.
    """
    path = self.path_for_version(version)
    state_file = os.path.join(path, STATE_FILE)
    if os.path.isfile(state_file):
      return read_state_file(state_file, structure)
    if not os.path.isdir(path):
      raise tff.program.ProgramStateNotFoundError(version)
    return await super().load(version, structure)

  async def save(self, program_state: Any, version: int) -> None:
    """Saves the state of round `version`; see TFF's `save`.

    Raises:
      ProgramStateExistsError: If round `version` is already saved.
      OutputWriteError: If the checkpoint cannot be written; the earlier
        ones are intact and the partial one is removed.
    """
    path = self.path_for_version(version)
    if os.path.exists(path):
      raise tff.program.ProgramStateExistsError(version=version,
                                                path=self.root_dir)
    arrays = state_arrays(await tff.program.materialize_value(program_state))
    # The temporary name TFF's own saves use, so that an interrupted save
    # is recognized and removed at the next start.
    temporary = f'{path}_temp{random.randrange(10000):04d}'
    try:
      if arrays is None:
        await super().save(program_state, version)
        return
      os.mkdir(temporary)
      write_state_file(os.path.join(temporary, STATE_FILE), arrays)
      if self.client_states is not None:
        client_states_lib.write_manifest(temporary,
                                         self.client_states.manifest())
      os.rename(temporary, path)
    except Exception as e:  # pylint: disable=broad-except
      if not outputs.is_write_error(e) or isinstance(e, FileExistsError):
        raise
      pattern = re.compile(rf'^{re.escape(os.path.basename(path))}_temp\d+$')
      for name in os.listdir(self.root_dir):
        if pattern.match(name):
          shutil.rmtree(os.path.join(self.root_dir, name), ignore_errors=True)
      raise outputs.OutputWriteError(path, e) from e
    with outputs.write_errors_named(self.root_dir):
      await self._remove_old_program_state()
    if self.client_states is not None:
      kept = await self.get_versions() or []
      self.client_states.remove_unreferenced(
          [client_states_lib.read_manifest(self.path_for_version(v))
           for v in kept], up_to_round=version)
