"""Reading TFF's published SQLite dataset files, failing in one line.

TFF publishes its datasets as `<name>.sqlite.lzma` files; its loaders
(`tff.simulation.datasets.*.load_data(cache_dir=...)`) read the decompressed
`.sqlite` from a directory. Nothing is ever downloaded here: a missing file
is an error that says where to get it, and a file that is not a TFF dataset
fails now, not mid-training.
"""

import os
import sqlite3
from typing import Callable, Tuple

import tensorflow as tf
import tensorflow_federated as tff

from data_utils import federated_dataset

PUBLISHED_URL = 'https://storage.googleapis.com/tff-datasets-public/{}.lzma'

ClientData = tff.simulation.datasets.ClientData


def _check_file(path: str, task_name: str, data_dir: str) -> None:
  file_name = os.path.basename(path)
  if not os.path.isfile(path):
    raise federated_dataset.DatasetError(
        f'dataset {task_name!r} needs {file_name} in --data_dir {data_dir!r}, '
        f'which has no such file; it is published at '
        f'{PUBLISHED_URL.format(file_name)} (decompress the .lzma), or pass '
        '--use_synthetic_data.')
  try:
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as connection:
      tables = {
          row[0] for row in connection.execute(
              "SELECT name FROM sqlite_master WHERE type='table'")
      }
  except sqlite3.DatabaseError as e:
    raise federated_dataset.DatasetError(
        f'{path} is not a readable SQLite file ({e}).') from e
  missing = {'examples', 'client_metadata'} - tables
  if missing:
    raise federated_dataset.DatasetError(
        f'{path} is not a TFF dataset file: it has no '
        f'{" or ".join(sorted(missing))} table.')


def check_first_example(data: ClientData, source: str) -> None:
  """Reads one example so that a corrupt file fails now, not mid-training."""
  if not data.client_ids:
    raise federated_dataset.DatasetError(
        f'{source} holds no clients for this dataset.')
  try:
    next(iter(data.create_tf_dataset_for_client(data.client_ids[0])))
  except (tf.errors.OpError, StopIteration, KeyError, ValueError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise federated_dataset.DatasetError(
        f'{source} has unreadable examples ({message}).') from e


def load_split(task_name: str, data_dir: str, file_name: str,
               tff_loader: Callable[[str], Tuple[ClientData, ClientData]]
              ) -> Tuple[ClientData, ClientData]:
  """Checks `data_dir/file_name`, then `tff_loader(data_dir)` reads it.

  Raises:
    DatasetError: If `data_dir` is unset, or the file is missing, is not a
      TFF dataset, or cannot be read.
  """
  if not data_dir:
    raise federated_dataset.DatasetError(
        f'dataset {task_name!r} needs --data_dir (a directory with '
        f'{file_name}) or --use_synthetic_data.')
  path = os.path.join(data_dir, file_name)
  _check_file(path, task_name, data_dir)
  try:
    return tff_loader(data_dir)
  except (sqlite3.DatabaseError, tf.errors.OpError) as e:
    raise federated_dataset.DatasetError(f'{path} cannot be read ({e}).') from e
