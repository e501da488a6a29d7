"""Twins of TFF's image datasets at their published sizes, random contents.

A twin has the real file's name, schema, splits, client ids' form, number of
clients and number of examples per split, so that every stage of a run
(opening, checking, pooling, rounds, evaluation) costs what it costs on the
real file; only the pixels and labels are random. They exist for the scale
benchmark (`tff_perfed.program.scale_benchmark`), which writes them in a
temporary directory.

* EMNIST-62 (`emnist_all.sqlite`, splits `all_train` / `all_test`): 3,400
  writers, 671,585 / 77,483 examples (Caldas et al. 2018, LEAF, and TFF's
  `emnist.load_data(only_digits=False)`), `pixels` float32 [28, 28] and
  `label` int64 in [0, 62). Examples per writer are drawn from a gamma law
  with the coefficient of variation of LEAF's FEMNIST (226.8 +- 88.9
  samples per user over 3,550 users: 0.392), then scaled to the exact
  total; each writer's test count is its share of the test total (at least
  one), as TFF's per-writer 90/10 split gives.
* CIFAR-100 (`cifar100.sqlite`, splits `train` / `test`): 500 train clients
  of 100 images, 100 test clients of 100 (Reddi et al. 2020; TFF's
  `cifar100.load_data()`), `image` int64 [32, 32, 3] in [0, 255], `label`
  in [0, 100) and `coarse_label` = label // 5.

The examples are serialized by hand (`tf.train.Example`'s wire format, packed
lists, one NumPy `tobytes` per feature) rather than through a proto object
per example: the whole EMNIST twin (749,068 examples, 2.9 GB) is written in
27-40 s here. The tests parse both encodings with TF and compare.
"""

import dataclasses
import os
from typing import Iterator, Mapping, Optional, Tuple

import numpy as np

from tff_perfed.data_utils import tff_sqlite


@dataclasses.dataclass(frozen=True)
class TwinShape:
  """What a twin reproduces of its file: clients and examples per split."""
  file_name: str
  splits: Tuple[str, str]
  num_train_clients: int
  num_train_examples: int
  num_test_clients: int
  num_test_examples: int


EMNIST62 = TwinShape('emnist_all.sqlite', ('all_train', 'all_test'),
                     3_400, 671_585, 3_400, 77_483)
CIFAR100 = TwinShape('cifar100.sqlite', ('train', 'test'),
                     500, 50_000, 100, 10_000)
# LEAF's FEMNIST statistics (Caldas et al. 2018, table 1): 226.83 mean and
# 88.94 standard deviation of samples per user.
EMNIST_COUNT_CV = 88.94 / 226.83


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def packed_varints(values: np.ndarray) -> bytes:
  """Non-negative ints below 2**14 as protobuf varints, vectorized."""
  values = np.asarray(values, dtype=np.int64).reshape(-1)
  if values.size and (values.min() < 0 or values.max() >= 1 << 14):
    raise ValueError('packed_varints encodes ints in [0, 2**14) only.')
  low = values & 0x7F
  high = values >> 7
  two = high > 0
  pairs = np.stack([np.where(two, low | 0x80, low), high], axis=1)
  keep = np.stack([np.ones_like(two), two], axis=1)
  return pairs[keep].astype(np.uint8).tobytes()


def _feature(name: str, kind: int, payload: bytes) -> bytes:
  # Feature {kind: List {value (packed) = 1}}; map entry {key = 1, value = 2}.
  feature = _length_delimited(kind, _length_delimited(1, payload))
  return _length_delimited(
      1, _length_delimited(1, name.encode()) + _length_delimited(2, feature))


_FLOAT_LIST, _INT64_LIST = 2, 3


def float_feature(name: str, values: np.ndarray) -> bytes:
  return _feature(name, _FLOAT_LIST,
                  np.asarray(values, '<f4').reshape(-1).tobytes())


def int64_feature(name: str, values: np.ndarray) -> bytes:
  return _feature(name, _INT64_LIST, packed_varints(values))


def example(*features: bytes) -> bytes:
  """A serialized `tf.train.Example` of encoded features."""
  return _length_delimited(1, b''.join(features))


def emnist_example(pixels: np.ndarray, label: int) -> bytes:
  return example(float_feature('pixels', pixels),
                 int64_feature('label', np.array([label])))


def cifar100_example(image: np.ndarray, label: int) -> bytes:
  return example(int64_feature('coarse_label', np.array([label // 5])),
                 int64_feature('image', image),
                 int64_feature('label', np.array([label])))


def exact_total_counts(weights: np.ndarray, total: int,
                       minimum: int = 1) -> np.ndarray:
  """Integer counts proportional to `weights`, each >= `minimum`, summing to
  `total` (largest remainders get the leftover)."""
  weights = np.asarray(weights, np.float64)
  if total < minimum * weights.size:
    raise ValueError(f'total {total} < {minimum} x {weights.size} clients')
  spare = total - minimum * weights.size
  ideal = spare * weights / weights.sum()
  counts = np.floor(ideal).astype(np.int64)
  leftover = spare - counts.sum()
  counts[np.argsort(counts - ideal, kind='stable')[:leftover]] += 1
  return counts + minimum


def emnist_writer_counts(shape: TwinShape = EMNIST62, seed: int = 0
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """(train, test) examples per writer: gamma-spread, exact totals."""
  rng = np.random.default_rng(seed)
  k = 1 / EMNIST_COUNT_CV**2
  weights = rng.gamma(k, 1 / k, size=shape.num_train_clients)
  train = exact_total_counts(weights, shape.num_train_examples, minimum=2)
  test = exact_total_counts(train, shape.num_test_examples, minimum=1)
  return train, test


def emnist_client_ids(num_clients: int) -> list:
  # TFF's writers read like 'f0000_14' (LEAF's writer id and a suffix).
  return [f'f{c:04d}_{c % 100:02d}' for c in range(num_clients)]


def emnist_rows(shape: TwinShape = EMNIST62, seed: int = 0
               ) -> Iterator[Tuple[str, str, bytes]]:
  """The twin's `(split, client, example)` rows, split by split."""
  rng = np.random.default_rng(seed)
  ids = emnist_client_ids(shape.num_train_clients)
  for split, counts in zip(shape.splits, emnist_writer_counts(shape, seed)):
    for client_id, count in zip(ids, counts):
      pixels = rng.random((count, 28, 28), dtype=np.float32)
      labels = rng.integers(62, size=count)
      for image, label in zip(pixels, labels):
        yield split, client_id, emnist_example(image, int(label))


def cifar100_rows(shape: TwinShape = CIFAR100, seed: int = 0
                 ) -> Iterator[Tuple[str, str, bytes]]:
  rng = np.random.default_rng(seed)
  for split, num_clients, num_examples in (
      (shape.splits[0], shape.num_train_clients, shape.num_train_examples),
      (shape.splits[1], shape.num_test_clients, shape.num_test_examples)):
    per_client = num_examples // num_clients
    for c in range(num_clients):
      images = rng.integers(256, size=(per_client, 32, 32, 3))
      labels = rng.integers(100, size=per_client)
      for image, label in zip(images, labels):
        yield split, str(c), cifar100_example(image, int(label))


TWINS: Mapping[str, Tuple[TwinShape, object]] = {
    'emnist': (EMNIST62, emnist_rows),
    'cifar100': (CIFAR100, cifar100_rows),
}


def write_twin(name: str, data_dir: str, seed: int = 0,
               shape: Optional[TwinShape] = None) -> str:
  """Writes the twin of dataset `name` into `data_dir`; returns its path.

  Args:
    name: A key of `TWINS` ('emnist' or 'cifar100').
    data_dir: Where to write the file (under the real file's name).
    seed: Seed of the counts and contents.
    shape: Another size than the published one (`small_shape`, for tests).

  Raises:
    KeyError: If `name` has no twin; the message lists the twins.
  """
  if name not in TWINS:
    raise KeyError(f'no twin of {name!r}; twins: {", ".join(TWINS)}')
  published, rows = TWINS[name]
  shape = shape or published
  path = os.path.join(data_dir, shape.file_name)
  tff_sqlite.write_file(path, rows(shape, seed))
  return path


def small_shape(shape: TwinShape, divisor: int) -> TwinShape:
  """`shape` with clients and examples divided by `divisor` (for tests)."""
  return dataclasses.replace(
      shape,
      num_train_clients=shape.num_train_clients // divisor,
      num_train_examples=shape.num_train_examples // divisor,
      num_test_clients=shape.num_test_clients // divisor,
      num_test_examples=shape.num_test_examples // divisor)

