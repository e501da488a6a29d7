"""A run's output files, written so that an interruption never damages them.

Every file is written to a temporary file in its directory and renamed into
place (`os.replace` is atomic on POSIX): a reader sees the old file or the
new one, never half of either. Files are created with mode `0666` less the
umask, as other tools create theirs. A write that fails (a full disk, an I/O
error, a read-only file system) raises `OutputWriteError`, naming the file,
and leaves the previous version of the file in place.

JSON is strict: non-finite numbers (NaN, infinities), which JSON cannot
represent, are written as `null`, so that any JSON parser reads every file.
"""

import contextlib
import csv
import json
import math
import os
import re
import secrets
from typing import Any, Callable, IO, Iterator, Mapping, Sequence

import numpy as np

from tff_perfed import errors

SUMMARY_FILE = 'summary.json'
CLIENTS_FILE = 'clients.csv'
METRICS_FILE = 'metrics.csv'
CONFIG_FILE = 'flags.json'
PARTITION_FILE = 'partition.json'
DATA_SOURCE_FILE = 'data_source.json'
DROPPED_CLIENTS_FILE = 'dropped_clients.json'
ACCURACY_PLOT_FILE = 'accuracy.png'
CHECKPOINTS_DIR = 'checkpoints'
CLIENT_STATES_DIR = 'client_states'  # program/client_states.py
TENSORBOARD_DIR = 'tensorboard'

_TEMPORARY_PREFIX = '.tmp_'
# Temporary files of writes that an interruption cut short: ours, TFF's
# CSV release manager's (`metrics.csv_temp1234`) and the plots'.
_LEFTOVER_PATTERN = re.compile(
    rf'^{re.escape(_TEMPORARY_PREFIX)}.*|.*_temp\d+$|.*\.tmp\.png$')


class OutputWriteError(errors.RunError):
  """A run's file could not be written (full disk, I/O error, read-only)."""

  def __init__(self, path: str, error: BaseException):
    """Describes the failed write of `path`.

    Args:
      path: The file (or directory) that could not be written.
      error: What the write raised: an `OSError` or a `tf.errors.OpError`.
    """
    reason = getattr(error, 'strerror', None) or getattr(
        error, 'message', None) or str(error) or type(error).__name__
    super().__init__(f'cannot write {path}: {reason}')
    self.path = path


def is_write_error(error: BaseException) -> bool:
  """Whether `error` is a file system's failure (not a bug of the caller).

  Args:
    error: An exception raised by a write.

  Returns:
    True for an `OSError` and for TensorFlow's file errors (`tf.io.gfile`
    raises `tf.errors.OpError`, e.g. `ResourceExhaustedError` on a full
    disk).
  """
  if isinstance(error, OSError):
    return True
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(error, tf.errors.OpError)


@contextlib.contextmanager
def write_errors_named(path: str) -> Iterator[None]:
  """Turns a file system's failure in the body into `OutputWriteError`.

  Args:
    path: The file or directory the body writes, named in the error.

  Yields:
    Nothing.

  Raises:
    OutputWriteError: If the body raised a write error (`is_write_error`).
  """
  try:
    yield
  except OutputWriteError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if is_write_error(e):
      raise OutputWriteError(path, e) from e
    raise


def remove_leftover_temporary_files(directory: str) -> list:
  """Removes the temporary files of writes that were interrupted.

  Only a process that holds the run's lock may call this: another run's
  temporary files are not leftovers.

  Args:
    directory: A run's `output_dir`.

  Returns:
    The names removed.
  """
  removed = []
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if _LEFTOVER_PATTERN.match(name) and os.path.isfile(path):
      os.remove(path)
      removed.append(name)
  return removed


def _open_new_file(directory: str, basename: str) -> tuple:
  # os.open applies the umask to 0o666, unlike tempfile.mkstemp (0o600).
  while True:
    tmp_path = os.path.join(
        directory, f'{_TEMPORARY_PREFIX}{basename}.{secrets.token_hex(4)}')
    try:
      return os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o666), tmp_path
    except FileExistsError:
      continue


def write_atomically(path: str, write_fn: Callable[[IO[str]], None]) -> None:
  """Calls `write_fn(file)` on a temporary file, then renames it to `path`.

  Args:
    path: The file to (re)write.
    write_fn: Writes the contents to the open text file it is given.

  Raises:
    OutputWriteError: If the file system refused a write; `path` is then as
      it was before.
  """
  directory = os.path.dirname(path) or '.'
  tmp_path = None
  try:
    fd, tmp_path = _open_new_file(directory, os.path.basename(path))
    with os.fdopen(fd, 'w', newline='') as f:
      write_fn(f)
      # On the disk before the rename: after a crash, `path` holds the old
      # or the new contents, never an empty file.
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except BaseException as e:
    if tmp_path is not None and os.path.exists(tmp_path):
      os.remove(tmp_path)
    if is_write_error(e):
      raise OutputWriteError(path, e) from e
    raise


def strict_json_value(value: Any) -> Any:
  """`value` with every non-finite float replaced by None (JSON's null).

  Args:
    value: Nested dicts, lists and tuples of JSON-compatible leaves, numpy
      scalars included.

  Returns:
    The same structure (tuples and arrays become lists) that `json.dump(...,
    allow_nan=False)` accepts.
  """
  if isinstance(value, Mapping):
    return {key: strict_json_value(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json_value(item) for item in value]
  if isinstance(value, (np.generic, np.ndarray)):
    return strict_json_value(value.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented, key-sorted, strict JSON, atomically.

  Non-finite numbers become `null` (`strict_json_value`).

  Raises:
    OutputWriteError: If the file cannot be written.
  """
  strict = strict_json_value(value)
  write_atomically(
      path, lambda f: json.dump(strict, f, indent=2, sort_keys=True,
                                allow_nan=False))


def write_clients_csv(path: str, client_ids: Sequence[str],
                      rows: Sequence[Mapping[str, float]]) -> None:
  """One row per client: `client_id` then its metrics, atomically.

  Raises:
    OutputWriteError: If the file cannot be written.
  """

  def write(f):
    writer = csv.DictWriter(f, fieldnames=['client_id', *rows[0]])
    writer.writeheader()
    for client_id, row in zip(client_ids, rows):
      writer.writerow({'client_id': client_id, **row})

  write_atomically(path, write)


def read_csv_rows(path: str):
  """The rows of a CSV file as dicts of strings."""
  with open(path, newline='') as f:
    return list(csv.DictReader(f))
