"""A run's output files, written so that an interruption never damages them.

Every file is written to a temporary file in its directory and renamed into
place (`os.replace` is atomic on POSIX): a reader sees the old file or the
new one, never half of either.
"""

import csv
import json
import os
import tempfile
from typing import Any, Callable, IO, Mapping, Sequence

SUMMARY_FILE = 'summary.json'
CLIENTS_FILE = 'clients.csv'
METRICS_FILE = 'metrics.csv'
CONFIG_FILE = 'flags.json'
PARTITION_FILE = 'partition.json'
ACCURACY_PLOT_FILE = 'accuracy.png'
CHECKPOINTS_DIR = 'checkpoints'
TENSORBOARD_DIR = 'tensorboard'


def write_atomically(path: str, write_fn: Callable[[IO[str]], None]) -> None:
  """Calls `write_fn(file)` on a temporary file, then renames it to `path`."""
  directory = os.path.dirname(path) or '.'
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  try:
    with os.fdopen(fd, 'w', newline='') as f:
      write_fn(f)
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented, key-sorted JSON, atomically."""
  write_atomically(path,
                   lambda f: json.dump(value, f, indent=2, sort_keys=True))


def write_clients_csv(path: str, client_ids: Sequence[str],
                      rows: Sequence[Mapping[str, float]]) -> None:
  """One row per client: `client_id` then its metrics, atomically."""

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
