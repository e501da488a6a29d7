"""Federated EMNIST (Caldas et al. 2018, TFF's `emnist_all.sqlite`).

Two tasks read the same file through TFF's own loader: `emnist` (62 classes:
digits and letters) and `emnist10` (the digits-only split). Both train TFF's
EMNIST baseline CNN on 28x28x1 images.
"""

import collections
import functools
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from data_utils import federated_dataset
from data_utils import tff_sqlite
from tff_perfed import models

FILE_NAME = 'emnist_all.sqlite'


def _examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(lambda e: collections.OrderedDict(
      x=tf.expand_dims(tf.cast(e['pixels'], tf.float32), -1),
      y=tf.cast(e['label'], tf.int32)))


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
  """Loads `emnist` or `emnist10` from `data_dir/emnist_all.sqlite`."""
  if use_synthetic_data:
    train, test = _synthetic_raw(num_classes, seed)
    source = '<synthetic>'
  else:
    train, test = tff_sqlite.load_split(
        name, data_dir, FILE_NAME,
        lambda d: tff.simulation.datasets.emnist.load_data(
            only_digits=(num_classes == 10), cache_dir=d))
    source = f'{data_dir}/{FILE_NAME}'
  train, test = train.preprocess(_examples), test.preprocess(_examples)
  tff_sqlite.check_first_example(train, source)
  return federated_dataset.FederatedDataset(name, train, test, num_classes)


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
