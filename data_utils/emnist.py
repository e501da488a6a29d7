"""Federated EMNIST (Caldas et al. 2018, TFF's `emnist_all.sqlite`).

Two tasks read the same file through TFF's own loader: `emnist` (62 classes:
digits and letters) and `emnist10` (the digits-only split). Both train TFF's
EMNIST baseline CNN on 28x28x1 images.
"""

import collections
import functools
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tff_sqlite
from tff_perfed import models

FILE_NAME = 'emnist_all.sqlite'


SPLITS = {10: ('digits_only_train', 'digits_only_test'),
          62: ('all_train', 'all_test')}


def features(num_classes: int) -> Tuple[tff_sqlite.Feature, ...]:
  """The features of the file's examples, labels in 0..num_classes - 1."""
  return (tff_sqlite.Feature('label', tff_sqlite.INT64,
                             value_range=(0, num_classes - 1)),
          tff_sqlite.Feature('pixels', tff_sqlite.FLOAT, (28, 28)))


def _parse_serialized(serialized: tf.Tensor) -> collections.OrderedDict:
  """Serialized example(s) -> `OrderedDict(label, pixels)`, as TFF parses."""
  # The label range is checked, not parsed: any class count parses alike.
  parsed = tff_sqlite.parse_examples(serialized, features(62))
  return collections.OrderedDict(label=tf.cast(parsed['label'], tf.int32),
                                 pixels=parsed['pixels'])


def _to_example(parsed) -> collections.OrderedDict:
  """Parsed example(s) -> `OrderedDict(x=[..., 28, 28, 1] float32, y)`."""
  return collections.OrderedDict(
      x=tf.expand_dims(tf.cast(parsed['pixels'], tf.float32), -1),
      y=tf.cast(parsed['label'], tf.int32))


def _parse(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(_parse_serialized, num_parallel_calls=tf.data.AUTOTUNE)


def _examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(_to_example)


def parse_batch(serialized: tf.Tensor) -> collections.OrderedDict:
  """A vector of serialized rows -> the batch of their examples."""
  return _to_example(_parse_serialized(serialized))


def _synthetic_raw(num_classes: int, seed: int, num_clients: int = 8,
                   examples_per_client: int = 24):
  """Random data in the raw schema of TFF's file, for fast runs."""
  rng = np.random.default_rng(seed)
  splits = []
  for _ in ('train', 'test'):
    clients = {
        f'client_{c}': collections.OrderedDict(
            label=rng.integers(0, num_classes,
                               examples_per_client).astype(np.int32),
            pixels=rng.random((examples_per_client, 28, 28)).astype(
                np.float32)) for c in range(num_clients)
    }
    splits.append(tff.simulation.datasets.TestClientData(clients))
  return splits


def load(name: str, num_classes: int, *, data_dir: Optional[str] = None,
         use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """Loads `emnist` or `emnist10` from `emnist_all.sqlite`.

  The file is read from `data_dir`, else from TFF's cache (`~/.tff`).

  Raises:
    DatasetError: If the file is missing, unreadable or not TFF's EMNIST
      file.
  """
  source = origin = None
  if use_synthetic_data:
    train, test = _synthetic_raw(num_classes, seed)
  else:
    task_features = features(num_classes)
    raw_train, raw_test = tff_sqlite.load_split(
        name, data_dir, FILE_NAME, SPLITS[num_classes], task_features)
    tff_sqlite.check_has_clients(raw_train, raw_train.path)
    source = tff_sqlite.SqliteSource(
        raw_train.path, {'train': raw_train, 'test': raw_test}, task_features,
        parse_batch=parse_batch)
    origin = tff_sqlite.file_origin(name, raw_train.path)
    train, test = raw_train.preprocess(_parse), raw_test.preprocess(_parse)
  train, test = train.preprocess(_examples), test.preprocess(_examples)
  if source is not None:
    train = tff_sqlite.TracedClientData(train)
    test = tff_sqlite.TracedClientData(test)
  return federated_dataset.FederatedDataset(name, train, test, num_classes,
                                            source=source, origin=origin)


def _task(name: str, num_classes: int, summary: str) -> federated_dataset.Task:
  return federated_dataset.Task(
      name=name,
      summary=summary,
      load=functools.partial(load, name, num_classes),
      build_model=lambda seed: models.build_emnist_cnn(
          num_classes=num_classes, seed=seed),
      num_classes=num_classes,
      data_file=FILE_NAME,
      image_shape=(28, 28, 1),
      build_split_model=lambda seed: models.build_emnist_cnn_split(
          num_classes=num_classes, seed=seed))


EMNIST_TASK = _task('emnist', 62, 'Federated EMNIST, 62 classes (3,400 '
                    'writers); TFF\'s EMNIST CNN.')
EMNIST10_TASK = _task('emnist10', 10, 'Federated EMNIST, digits only; TFF\'s '
                      'EMNIST CNN.')
