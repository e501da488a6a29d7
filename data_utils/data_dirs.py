"""Where datasets' files are looked for and where built ones are written.

* TFF's cache: `tff.simulation.datasets.<name>.load_data()` downloads and
  decompresses its SQLite files into `~/.tff` (TFF's `download.py`). A task
  that reads one of those files looks in `--data_dir` when given, else in
  TFF's cache, so that a TFF user's own download works without flags.
* Keras's cache: `tf.keras.datasets.mnist.load_data()` keeps `mnist.npz` in
  `~/.keras/datasets` (or `/tmp/.keras/datasets` when `~/.keras` cannot be
  written, as Keras's `get_file` does).
* Built files: a dataset built from package data (the Shakespeare plays) is
  written once into `--data_dir` when given, else into this package's own
  cache, `$XDG_CACHE_HOME/tff_perfed` (default `~/.cache/tff_perfed`).
"""

import os
from typing import List, Optional

from tff_perfed.data_utils import federated_dataset

DatasetError = federated_dataset.DatasetError


def tff_cache_dir() -> str:
  """TFF's download cache, as `tff.simulation.datasets` computes it."""
  return os.path.join(os.path.expanduser('~'), '.tff')


def keras_dataset_dirs() -> List[str]:
  """Where Keras's `get_file` keeps datasets, in the order it tries them."""
  return [os.path.join(os.path.expanduser('~'), '.keras', 'datasets'),
          os.path.join('/tmp', '.keras', 'datasets')]


def built_data_dir(data_dir: Optional[str]) -> str:
  """Where files built from package data go: `data_dir`, else our cache."""
  if data_dir:
    return data_dir
  cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(cache, 'tff_perfed')


def find_tff_file(task_name: str, file_name: str, data_dir: Optional[str],
                  how_to_get: str) -> str:
  """The path of a TFF dataset file: in `data_dir`, else in TFF's cache.

  Args:
    task_name: The task, for the message.
    file_name: e.g. 'emnist_all.sqlite'.
    data_dir: `--data_dir`, or None to look in TFF's cache.
    how_to_get: How to obtain the file, for the message.

  Returns:
    The path of an existing file.

  Raises:
    DatasetError: If there is no such file, naming every place looked in.
  """
  places = [data_dir] if data_dir else [tff_cache_dir()]
  for place in places:
    path = os.path.join(place, file_name)
    if os.path.isfile(path):
      return path
  if data_dir:
    where = (f'--data_dir {data_dir!r}, which has no such file (without '
             f'--data_dir TFF\'s cache {tff_cache_dir()!r} is used)')
  else:
    where = (f'TFF\'s cache {tff_cache_dir()!r} (where TFF\'s load_data() '
             'puts it), which has no such file, or in --data_dir')
  raise DatasetError(
      f'dataset {task_name!r} needs {file_name} in {where}; {how_to_get}, or '
      'pass --use_synthetic_data.')
