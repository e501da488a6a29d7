"""Federated datasets: embedded digits, EMNIST, Shakespeare, and synthetic.

Every dataset is returned as a `FederatedDataset` whose train and test
`tff.simulation.datasets.ClientData` hold unbatched
`OrderedDict(x=..., y=...)` examples that match the model built for it in
`tff_perfed.models`. Real EMNIST and Shakespeare are read from TFF's
published SQLite files in `data_dir` through TFF's own loaders; nothing is
ever downloaded (a missing file is an error that says where to get it).
"""

import collections
import dataclasses
import os
import sqlite3
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from data_utils import digits as digits_lib

DATASET_NAMES = ('digits', 'emnist', 'emnist10', 'shakespeare')

# TFF's published files (decompress the .lzma to get the .sqlite).
_PUBLISHED_URL = 'https://storage.googleapis.com/tff-datasets-public/{}.lzma'
_SQLITE_FILES = {
    'emnist': 'emnist_all.sqlite',
    'emnist10': 'emnist_all.sqlite',
    'shakespeare': 'shakespeare.sqlite',
}

# Shakespeare character vocabulary of TFF's baseline (federated_research).
SHAKESPEARE_CHARS = (
    'dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#\'/37;?bfjnrvzBFJNRVZ"&*.26:\naeimquyAEIM'
    'QUY]!%)-159\r')
SHAKESPEARE_SEQUENCE_LENGTH = 80
# Ids: 0 padding, 1..86 characters, then out-of-vocabulary, begin, end.
SHAKESPEARE_OOV = len(SHAKESPEARE_CHARS) + 1
SHAKESPEARE_BOS = SHAKESPEARE_OOV + 1
SHAKESPEARE_EOS = SHAKESPEARE_OOV + 2
SHAKESPEARE_VOCAB_SIZE = SHAKESPEARE_EOS + 1


class DatasetError(ValueError):
  """A dataset cannot be loaded; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
  """Train/test client data of one federated dataset.

  Attributes:
    name: One of `DATASET_NAMES`.
    train: `ClientData` of unbatched `OrderedDict(x, y)` training examples.
    test: `ClientData` of test examples; same client ids as `train`.
    num_classes: Output size of the model (vocabulary size for Shakespeare).
  """
  name: str
  train: tff.simulation.datasets.ClientData
  test: tff.simulation.datasets.ClientData
  num_classes: int

  @property
  def client_ids(self) -> List[str]:
    return list(self.train.client_ids)


def sqlite_path(name: str, data_dir: str) -> str:
  """The file a real dataset is read from."""
  return os.path.join(data_dir, _SQLITE_FILES[name])


def _emnist_examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(lambda e: collections.OrderedDict(
      x=tf.expand_dims(tf.cast(e['pixels'], tf.float32), -1),
      y=tf.cast(e['label'], tf.int32)))


def _char_ids(snippet: tf.Tensor) -> tf.Tensor:
  # A constant byte->id table (no lookup-table resource, so datasets stay
  # serializable into TFF computations).
  table = np.full([256], SHAKESPEARE_OOV, np.int32)
  for i, char in enumerate(SHAKESPEARE_CHARS):
    table[ord(char)] = i + 1
  codes = tf.cast(tf.io.decode_raw(snippet, tf.uint8), tf.int32)
  ids = tf.gather(tf.constant(table), codes)
  return tf.concat([[SHAKESPEARE_BOS], ids, [SHAKESPEARE_EOS]], axis=0)


def _shakespeare_examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Snippets -> next-character examples of SHAKESPEARE_SEQUENCE_LENGTH."""
  length = SHAKESPEARE_SEQUENCE_LENGTH + 1

  def split(chunk):
    padded = tf.pad(chunk, [[0, length - tf.shape(chunk)[0]]])
    padded = tf.ensure_shape(padded, [length])
    return collections.OrderedDict(x=padded[:-1], y=padded[1:])

  return (dataset.map(lambda e: _char_ids(e['snippets'])).unbatch().batch(
      length).map(split))


def _check_sqlite(path: str, name: str, data_dir: str) -> None:
  if not os.path.isfile(path):
    raise DatasetError(
        f'dataset {name!r} needs {os.path.basename(path)} in --data_dir '
        f'{data_dir!r}, which has no such file; it is published at '
        f'{_PUBLISHED_URL.format(os.path.basename(path))} (decompress the '
        '.lzma), or pass --use_synthetic_data.')
  try:
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as connection:
      tables = {
          row[0] for row in connection.execute(
              "SELECT name FROM sqlite_master WHERE type='table'")
      }
  except sqlite3.DatabaseError as e:
    raise DatasetError(f'{path} is not a readable SQLite file ({e}).') from e
  missing = {'examples', 'client_metadata'} - tables
  if missing:
    raise DatasetError(f'{path} is not a TFF dataset file: it has no '
                       f'{" or ".join(sorted(missing))} table.')


def _first_example_or_raise(data: tff.simulation.datasets.ClientData,
                            path: str) -> None:
  """Reads one example so that a corrupt file fails now, not mid-training."""
  if not data.client_ids:
    raise DatasetError(f'{path} holds no clients for this dataset.')
  try:
    next(iter(data.create_tf_dataset_for_client(data.client_ids[0])))
  except (tf.errors.OpError, StopIteration, KeyError, ValueError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DatasetError(f'{path} has unreadable examples ({message}).') from e


def _load_from_sqlite(name: str, data_dir: str) -> FederatedDataset:
  path = sqlite_path(name, data_dir)
  _check_sqlite(path, name, data_dir)
  try:
    if name == 'shakespeare':
      train, test = tff.simulation.datasets.shakespeare.load_data(
          cache_dir=data_dir)
    else:
      train, test = tff.simulation.datasets.emnist.load_data(
          only_digits=(name == 'emnist10'), cache_dir=data_dir)
  except (sqlite3.DatabaseError, tf.errors.OpError) as e:
    raise DatasetError(f'{path} cannot be read ({e}).') from e
  return _wrap(name, train, test, path)


def _wrap(name: str, train, test, path: str) -> FederatedDataset:
  if name == 'shakespeare':
    preprocess, num_classes = _shakespeare_examples, SHAKESPEARE_VOCAB_SIZE
  else:
    preprocess = _emnist_examples
    num_classes = 10 if name == 'emnist10' else 62
  train, test = train.preprocess(preprocess), test.preprocess(preprocess)
  _first_example_or_raise(train, path)
  return FederatedDataset(name, train, test, num_classes)


def _in_memory(clients: Dict[str, Dict[str, np.ndarray]]):
  return tff.simulation.datasets.TestClientData(clients)


def _synthetic_raw(name: str, seed: int, num_clients: int = 8,
                   examples_per_client: int = 24):
  """Random data in the raw schema of TFF's files, for fast tests."""
  rng = np.random.default_rng(seed)
  splits = []
  for _ in ('train', 'test'):
    clients = {}
    for c in range(num_clients):
      if name == 'shakespeare':
        alphabet = np.array(list(SHAKESPEARE_CHARS[:40]))
        snippets = [''.join(rng.choice(alphabet, size=rng.integers(20, 120)))
                    for _ in range(examples_per_client // 4)]
        clients[f'client_{c}'] = collections.OrderedDict(
            snippets=np.array(snippets, dtype=object))
      else:
        classes = 10 if name == 'emnist10' else 62
        clients[f'client_{c}'] = collections.OrderedDict(
            label=rng.integers(0, classes, examples_per_client).astype(np.int32),
            pixels=rng.random((examples_per_client, 28, 28)).astype(np.float32))
    splits.append(_in_memory(clients))
  return splits


def load_federated_dataset(name: str,
                           *,
                           data_dir: Optional[str] = None,
                           use_synthetic_data: bool = False,
                           seed: int = 0,
                           num_digits_clients: int = digits_lib.NUM_CLIENTS
                          ) -> FederatedDataset:
  """Loads a federated dataset by name.

  Args:
    name: One of `DATASET_NAMES`.
    data_dir: Directory holding TFF's SQLite files (EMNIST, Shakespeare).
    use_synthetic_data: Random data of the same structure, for fast runs.
    seed: Seed of the digits partition and of synthetic data.
    num_digits_clients: Number of users of the digits split (even).

  Returns:
    A `FederatedDataset`.

  Raises:
    DatasetError: Unknown name, or a missing or unreadable data file.
  """
  if name not in DATASET_NAMES:
    raise DatasetError(f'unknown dataset {name!r}; expected one of '
                       f'{", ".join(DATASET_NAMES)}.')
  if name == 'digits':
    train, test = digits_lib.partitioned_digits(
        num_clients=num_digits_clients,
        seed=seed,
        use_synthetic_data=use_synthetic_data)
    to_client_data = lambda split: _in_memory(
        {cid: collections.OrderedDict(x=x, y=y) for cid, (x, y) in split.items()})
    return FederatedDataset(name, to_client_data(train), to_client_data(test),
                            digits_lib.NUM_CLASSES)
  if use_synthetic_data:
    train, test = _synthetic_raw(name, seed)
    return _wrap(name, train, test, '<synthetic>')
  if not data_dir:
    raise DatasetError(f'dataset {name!r} needs --data_dir (a directory '
                       f'with {_SQLITE_FILES[name]}) or --use_synthetic_data.')
  return _load_from_sqlite(name, data_dir)
