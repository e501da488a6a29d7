"""Federated CIFAR-100 (TFF's `cifar100.sqlite`).

CIFAR-100 is Krizhevsky (2009), "Learning Multiple Layers of Features from
Tiny Images": 32x32 colour images in 100 fine classes (20 coarse ones).

The federated split is TFF's, from Reddi et al. (2020), "Adaptive Federated
Optimization": the 50,000 training images dealt to 500 clients of 100 images
each by a two-level Dirichlet (Pachinko allocation) over coarse then fine
labels, read through TFF's own loader. Choices made here:

* Clients are TFF's 500 *train* clients only. TFF's test split is a
  different set of 100 clients (the CIFAR-100 test images; its ids '0'..'99'
  name other clients than the train ids '0'..'99'), but personalization
  adapts and tests on the same client, so each train client's own examples
  are split in two instead: a random share of round(TEST_FRACTION * n)
  (half to even; at least 1 and at most n - 1 when n >= 2) is its test
  split, the rest its train split. The two are disjoint and cover all n
  examples; both keep the file's order. The draw depends only on `seed`,
  the client id and its number of examples (a stateless TF random
  permutation keyed by a fingerprint of the id), so it is the same in every
  run. The examples of TFF's test split are never read.
* Labels are the 100 fine labels; the coarse label is dropped.
* x is the image as float32 [32, 32, 3] scaled from uint8 to [0, 1], with
  no normalization or augmentation.
* The model is a small CNN (`tff_perfed.models.build_cifar_cnn`), not
  Reddi et al.'s ResNet-18: it has to train on two CPU cores.
"""

import collections
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tff_sqlite
from tff_perfed import models

FILE_NAME = 'cifar100.sqlite'
NUM_CLASSES = 100
IMAGE_SHAPE = (32, 32, 3)
TEST_FRACTION = 0.2
# A client's examples are split as one batch (TFF's clients hold 100); a
# larger client would be split chunk by chunk. Far larger batch sizes make
# tf.data slow even for small clients.
_MAX_CLIENT_EXAMPLES = 10_000


FEATURES = (
    # Parsed as TFF does, but not used: its range is not checked.
    tff_sqlite.Feature('coarse_label', tff_sqlite.INT64),
    tff_sqlite.Feature('image', tff_sqlite.INT64, IMAGE_SHAPE,
                       value_range=(0, 255)),
    tff_sqlite.Feature('label', tff_sqlite.INT64,
                       value_range=(0, NUM_CLASSES - 1)),
)


def _parse(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Serialized examples -> `OrderedDict(coarse_label, image, label)`, as TFF
  parses them (image uint8)."""

  def parse(serialized):
    parsed = tff_sqlite.parse_examples(serialized, FEATURES)
    return collections.OrderedDict(
        coarse_label=parsed['coarse_label'],
        image=tf.cast(parsed['image'], tf.uint8),
        label=parsed['label'])

  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _test_size(n: tf.Tensor) -> tf.Tensor:
  """round(TEST_FRACTION * n), kept in [1, n - 1] when n >= 2."""
  size = tf.cast(tf.round(TEST_FRACTION * tf.cast(n, tf.float32)), tf.int32)
  return tf.where(n >= 2, tf.minimum(tf.maximum(size, 1), n - 1), 0)


def _split_client(raw: tf.data.Dataset, client_id: tf.Tensor, seed: int,
                  test: bool) -> tf.data.Dataset:
  """One side of the seeded, disjoint per-client train/test split."""
  # int32-sized key so that the stateless seed is a valid int64 pair.
  key = tf.strings.to_hash_bucket_fast(client_id, 2**31 - 1)

  def select(examples):
    n = tf.shape(examples['label'])[0]
    order = tf.argsort(tf.random.stateless_uniform(
        [n], seed=tf.stack([tf.constant(seed, tf.int64), key])))
    num_test = _test_size(n)
    chosen = order[:num_test] if test else order[num_test:]
    # Sorted, so that each side keeps the file's order.
    return tf.nest.map_structure(
        lambda t: tf.gather(t, tf.sort(chosen)), examples)

  return raw.batch(_MAX_CLIENT_EXAMPLES).map(select).unbatch()


def _examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(lambda e: collections.OrderedDict(
      x=tf.cast(e['image'], tf.float32) / 255.0,
      y=tf.cast(e['label'], tf.int32)))


def _synthetic_raw(seed: int, num_clients: int = 8,
                   examples_per_client: int = 20):
  """Random data in the raw schema of TFF's train split, for fast runs."""
  rng = np.random.default_rng(seed)
  clients = {}
  for c in range(num_clients):
    labels = rng.integers(0, NUM_CLASSES, examples_per_client)
    clients[str(c)] = collections.OrderedDict(
        coarse_label=(labels // 5).astype(np.int64),
        image=rng.integers(0, 256, (examples_per_client, *IMAGE_SHAPE),
                           dtype=np.uint8),
        label=labels.astype(np.int64))
  return tff.simulation.datasets.TestClientData(clients)


def split_clients(raw: tff.simulation.datasets.ClientData, seed: int):
  """Each client's examples split into (train, test) `ClientData`s.

  Args:
    raw: Client data in the schema of TFF's CIFAR-100 split (`image` uint8
      [32, 32, 3], `label` and `coarse_label` int64).
    seed: Seed of the per-client split.

  Returns:
    `(train, test)` over the same client ids, of unbatched
    `OrderedDict(x=float32 [32, 32, 3] in [0, 1], y=int32 fine label)`.
  """

  def side(test):
    def dataset_fn(client_id):
      if isinstance(client_id, str):
        # Eagerly, for one client: `create_tf_dataset_for_client` gives the
        # same examples, and for in-memory data does not build every
        # client's dataset as the serializable function does.
        raw_dataset = raw.create_tf_dataset_for_client(client_id)
      else:
        raw_dataset = raw.serializable_dataset_fn(client_id)
      client_id = tf.convert_to_tensor(client_id, tf.string)
      return _examples(_split_client(raw_dataset, client_id, seed, test))

    return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
        raw.client_ids, dataset_fn)

  return side(test=False), side(test=True)


def load(*, data_dir: Optional[str] = None, use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """TFF's CIFAR-100 train clients from `cifar100.sqlite`.

  The file is read from `data_dir`, else from TFF's cache (`~/.tff`).

  Each client's examples are split 80/20 into train and test by `seed`
  (see the module docstring); TFF's test split is not used.

  Raises:
    DatasetError: If the file is missing, unreadable or not TFF's
      CIFAR-100 file.
  """
  source = origin = None
  if use_synthetic_data:
    raw = _synthetic_raw(seed)
  else:
    # TFF's test split is read only to check that the file is CIFAR-100's.
    serialized, _ = tff_sqlite.load_split('cifar100', data_dir, FILE_NAME,
                                          ('train', 'test'), FEATURES)
    tff_sqlite.check_has_clients(serialized, serialized.path)
    # Both sides of each client come from its train-split examples.
    source = tff_sqlite.SqliteSource(
        serialized.path, {'train': serialized, 'test': serialized}, FEATURES)
    raw = serialized.preprocess(_parse)
    origin = tff_sqlite.file_origin('cifar100', serialized.path)
  train, test = split_clients(raw, seed)
  if source is not None:
    train = tff_sqlite.TracedClientData(train)
    test = tff_sqlite.TracedClientData(test)
  return federated_dataset.FederatedDataset('cifar100', train, test,
                                            NUM_CLASSES, source=source,
                                            origin=origin)


TASK = federated_dataset.Task(
    name='cifar100',
    summary='Federated CIFAR-100 (TFF\'s 500 train clients, each split 80/20);'
    ' a small CNN.',
    load=load,
    build_model=lambda seed: models.build_cifar_cnn(
        num_classes=NUM_CLASSES, seed=seed),
    build_split_model=lambda seed: models.build_cifar_cnn_split(
        num_classes=NUM_CLASSES, seed=seed),
    num_classes=NUM_CLASSES,
    # A client's whole test split (20 of TFF's 100 images) is one batch.
    eval_batch_size=100,
    data_file=FILE_NAME,
    image_shape=IMAGE_SHAPE)
