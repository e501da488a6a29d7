"""Reading TFF's published SQLite dataset files, failing in one line.

TFF publishes its datasets as `<name>.sqlite.lzma` files with two tables,
`examples(split_name, client_id, serialized_example_proto)` and
`client_metadata(client_id, split_name, num_examples)`. Nothing is ever
downloaded here: a missing file is an error that says where to get it, and
a file that is not the task's TFF dataset (no such tables or columns, empty
tables, other split names, other features) fails at load time with one line
naming the file and what is wrong, not mid-training.

`SqliteClientData` reads the same examples in the same order as TFF's
`SqlClientData`, whose query is built by string concatenation: a client id
holding a quote breaks it. Here the id is escaped inside the TF graph
(quotes doubled, as SQL quotes them), so the dataset stays serializable
into TFF computations.
"""

import contextlib
import dataclasses
import os
import pathlib
import sqlite3
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from google.protobuf import message as protobuf_message
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from data_utils import federated_dataset

PUBLISHED_URL = 'https://storage.googleapis.com/tff-datasets-public/{}.lzma'

ClientData = tff.simulation.datasets.ClientData
DatasetError = federated_dataset.DatasetError

REQUIRED_COLUMNS = {
    'examples': ('split_name', 'client_id', 'serialized_example_proto'),
    'client_metadata': ('client_id', 'split_name'),
}
# Examples sampled from a split to recognize the task's features; a file is
# refused only if none of them has any (one bad example is a bad client).
_FEATURE_SAMPLE = 20

# tf.train.Feature's value kinds, as the proto names them.
FLOAT, INT64, BYTES = 'float_list', 'int64_list', 'bytes_list'
_TF_DTYPES = {FLOAT: tf.float32, INT64: tf.int64, BYTES: tf.string}
_KIND_NAMES = {FLOAT: 'float', INT64: 'int64', BYTES: 'bytes'}


@dataclasses.dataclass(frozen=True)
class Feature:
  """One feature of a task's serialized `tf.train.Example`s.

  Attributes:
    name: The feature's key.
    kind: `FLOAT`, `INT64` or `BYTES`, the proto's value list.
    shape: The parsed shape; the proto holds `prod(shape)` values.
    value_range: Inclusive (low, high) bounds of an int64 feature's values.
  """
  name: str
  kind: str
  shape: Tuple[int, ...] = ()
  value_range: Optional[Tuple[int, int]] = None

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64))

  def parse_spec(self) -> tf.io.FixedLenFeature:
    return tf.io.FixedLenFeature(shape=self.shape, dtype=_TF_DTYPES[self.kind])


def parse_examples(serialized: tf.Tensor,
                   features: Sequence[Feature]) -> Dict[str, tf.Tensor]:
  """`tf.io.parse_example` of `serialized` protos into `features`."""
  return tf.io.parse_example(
      serialized, {feature.name: feature.parse_spec() for feature in features})


def _value_fault(feature: Feature, values: np.ndarray) -> Optional[str]:
  """Why parsed `values` of one example are unusable, or None."""
  if feature.kind == FLOAT and not np.all(np.isfinite(values)):
    return f'{feature.name} has a non-finite value'
  if feature.value_range is not None:
    low, high = feature.value_range
    outside = values[(values < low) | (values > high)]
    if outside.size:
      return f'{feature.name} {int(outside[0])} outside {low}..{high}'
  return None


def example_fault(serialized: bytes,
                  features: Sequence[Feature]) -> Optional[str]:
  """Why one serialized example is unusable for `features`, or None.

  Args:
    serialized: A serialized `tf.train.Example`.
    features: The features the task parses.

  Returns:
    A short phrase ('cannot be parsed', 'label is missing', 'pixels has 700
    values, expected 784', 'pixels holds int64 values, expected float',
    'label 100 outside 0..61', 'pixels has a non-finite value'), or None if
    the example is usable.
  """
  try:
    example = tf.train.Example.FromString(serialized)
  except (protobuf_message.DecodeError, TypeError, ValueError):
    return 'cannot be parsed'
  proto_features = example.features.feature
  for feature in features:
    if feature.name not in proto_features:
      return f'{feature.name} is missing'
    value = proto_features[feature.name]
    kind = value.WhichOneof('kind')
    if kind != feature.kind:
      held = _KIND_NAMES.get(kind, 'no')
      return (f'{feature.name} holds {held} values, expected '
              f'{_KIND_NAMES[feature.kind]}')
    values = getattr(value, kind).value
    if len(values) != feature.size:
      return (f'{feature.name} has {len(values)} values, expected '
              f'{feature.size}')
    if feature.kind != BYTES:
      fault = _value_fault(feature, np.asarray(values))
      if fault:
        return fault
  return None


def examples_faults(serialized: Sequence[bytes],
                    features: Sequence[Feature]) -> List[Optional[str]]:
  """`example_fault` of each of `serialized`, parsed in bulk when possible.

  TF parses a well-formed chunk at once and the values are checked
  vectorized; only a chunk that TF cannot parse is examined example by
  example.
  """
  try:
    parsed = parse_examples(tf.constant(list(serialized), tf.string), features)
  except (tf.errors.InvalidArgumentError, UnicodeDecodeError):
    # TF's message quotes the unparseable bytes, which may not even decode.
    return [example_fault(s, features) for s in serialized]
  faults: List[Optional[str]] = [None] * len(serialized)
  for feature in features:
    if feature.kind == BYTES:
      continue
    values = parsed[feature.name].numpy().reshape(len(serialized), -1)
    bad = ~np.isfinite(values).all(axis=1) if feature.kind == FLOAT else (
        np.zeros(len(serialized), bool))
    if feature.value_range is not None:
      low, high = feature.value_range
      bad |= ((values < low) | (values > high)).any(axis=1)
    for row in np.flatnonzero(bad):
      faults[row] = faults[row] or _value_fault(feature, values[row])
  return faults


@contextlib.contextmanager
def _connect(path: str) -> Iterator[sqlite3.Connection]:
  """A read-only connection to `path`, closed on leaving the block."""
  # As a file URI, so that '#', '?' or '%' in the path stay part of it
  # (in 'file:<path>' they would start a fragment or a query, and sqlite
  # would open, even create, another file).
  uri = pathlib.Path(os.path.abspath(path)).as_uri() + '?mode=ro'
  connection = sqlite3.connect(uri, uri=True)
  try:
    yield connection
  finally:
    connection.close()


def _sql_quote(text: tf.Tensor) -> tf.Tensor:
  """`text` as the inside of an SQL string literal (quotes doubled)."""
  return tf.strings.regex_replace(text, "'", "''")


class SqliteClientData(ClientData):
  """One split of a TFF SQLite file, as TFF's `SqlClientData` reads it.

  The same client ids (sorted, from `client_metadata`) and the same query,
  hence the same examples in the same order, but the client id and split
  name are quoted as SQL literals: an id may hold quotes or any Unicode.
  """

  def __init__(self, path: str, split_name: str):
    self._path = path
    self._split_name = split_name
    with _connect(path) as connection:
      self._client_ids = sorted(row[0] for row in connection.execute(
          'SELECT DISTINCT client_id FROM client_metadata WHERE '
          'split_name = ?', (split_name,)))
    self._client_id_set = frozenset(self._client_ids)

  @property
  def path(self) -> str:
    return self._path

  @property
  def split_name(self) -> str:
    return self._split_name

  def _create_dataset(self, client_id) -> tf.data.Dataset:
    query = tf.strings.join([
        "SELECT serialized_example_proto FROM examples WHERE client_id = '",
        _sql_quote(client_id), "' and split_name ='",
        _sql_quote(self._split_name), "'"
    ])
    return tf.data.experimental.SqlDataset(
        driver_name='sqlite', data_source_name=self._path, query=query,
        output_types=tf.string)

  @property
  def serializable_dataset_fn(self):
    return self._create_dataset

  @property
  def client_ids(self) -> List[str]:
    return self._client_ids

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._client_id_set:
      raise ValueError(f'{client_id!r} is not a client of split '
                       f'{self._split_name!r} of {self._path}.')
    return self._create_dataset(client_id)

  @property
  def element_type_structure(self):
    return tf.TensorSpec(shape=(), dtype=tf.string)

  def iterate_split_rows(self, chunk_size: int = 4096
                        ) -> Iterator[List[Tuple[str, bytes]]]:
    """Every `(client_id, serialized_example)` of the split, in chunks.

    One query over the whole split (rows in the table's order, as each
    client's query returns them), for checks that read every example.
    """
    with _connect(self._path) as connection:
      cursor = connection.execute(
          'SELECT client_id, serialized_example_proto FROM examples WHERE '
          'split_name = ?', (self._split_name,))
      while True:
        rows = cursor.fetchmany(chunk_size)
        if not rows:
          return
        yield rows


@dataclasses.dataclass(frozen=True)
class SqliteSource:
  """Where a task's examples come from in a TFF SQLite file.

  Attributes:
    path: The file.
    splits: `{'train': ..., 'test': ...}`: the raw `SqliteClientData` each
      side of the task's dataset is made from (CIFAR-100 makes both from
      the file's train split).
    features: The features the task parses from each example.
  """
  path: str
  splits: Mapping[str, SqliteClientData]
  features: Tuple[Feature, ...]


def _check_file(path: str, task_name: str, data_dir: str) -> None:
  file_name = os.path.basename(path)
  if not os.path.isfile(path):
    raise DatasetError(
        f'dataset {task_name!r} needs {file_name} in --data_dir {data_dir!r}, '
        f'which has no such file; it is published at '
        f'{PUBLISHED_URL.format(file_name)} (decompress the .lzma), or pass '
        '--use_synthetic_data.')
  try:
    with _connect(path) as connection:
      tables = {
          row[0] for row in connection.execute(
              "SELECT name FROM sqlite_master WHERE type='table'")
      }
  except sqlite3.DatabaseError as e:
    raise DatasetError(f'{path} is not a readable SQLite file ({e}).') from e
  missing = set(REQUIRED_COLUMNS) - tables
  if missing:
    raise DatasetError(
        f'{path} is not a TFF dataset file: it has no '
        f'{" or ".join(sorted(missing))} table.')


def _check_contents(path: str, task_name: str, split_names: Sequence[str],
                    features: Sequence[Feature]) -> None:
  """Columns, non-empty tables, the task's splits and features."""
  with _connect(path) as connection:
    for table, required in REQUIRED_COLUMNS.items():
      columns = {row[1] for row in connection.execute(
          f'PRAGMA table_info({table})')}
      missing = [c for c in required if c not in columns]
      if missing:
        raise DatasetError(
            f'{path} is not a TFF dataset file: table {table} has no column '
            f'{", ".join(missing)}.')
    for table in REQUIRED_COLUMNS:
      first_row = connection.execute(f'SELECT 1 FROM {table} LIMIT 1')
      if first_row.fetchone() is None:
        raise DatasetError(f'{path} holds no data: its {table} table is '
                           'empty.')
    present = sorted(str(row[0]) for row in connection.execute(
        'SELECT DISTINCT split_name FROM client_metadata'))
    absent = [s for s in split_names if s not in present]
    if absent:
      raise DatasetError(
          f'{path} is not the file of dataset {task_name!r}: it has no split '
          f'{", ".join(map(repr, absent))} (its splits: '
          f'{", ".join(map(repr, present))}).')
    for split in split_names:
      sample = [row[0] for row in connection.execute(
          'SELECT serialized_example_proto FROM examples WHERE split_name = ? '
          'LIMIT ?', (split, _FEATURE_SAMPLE))]
      if not sample:
        raise DatasetError(f'{path} holds no examples in split {split!r}.')
      found = set()
      for serialized in sample:
        try:
          found |= set(tf.train.Example.FromString(
              bytes(serialized)).features.feature)
        except (protobuf_message.DecodeError, TypeError, ValueError):
          pass
      if not found & {f.name for f in features}:
        expected = ', '.join(f.name for f in features)
        held = ', '.join(sorted(found)) or 'none readable'
        raise DatasetError(
            f'{path} is not the file of dataset {task_name!r}: its {split!r} '
            f'examples have features {held}, expected {expected}.')


def load_split(task_name: str, data_dir: Optional[str], file_name: str,
               split_names: Sequence[str], features: Sequence[Feature]
              ) -> Tuple[SqliteClientData, ...]:
  """Checks `data_dir/file_name`, then opens each of its `split_names`.

  Args:
    task_name: The task, for messages.
    data_dir: The directory `--data_dir` names.
    file_name: The task's file.
    split_names: The splits to open, e.g. ('all_train', 'all_test').
    features: The features the task parses, to recognize another
      dataset's file.

  Returns:
    A `SqliteClientData` of serialized examples per split.

  Raises:
    DatasetError: If `data_dir` is unset, or the file is missing, is not a
      TFF dataset, lacks a column, a split or the task's features, has an
      empty table, or cannot be read.
  """
  if not data_dir:
    raise DatasetError(
        f'dataset {task_name!r} needs --data_dir (a directory with '
        f'{file_name}) or --use_synthetic_data.')
  path = os.path.join(data_dir, file_name)
  _check_file(path, task_name, data_dir)
  try:
    _check_contents(path, task_name, split_names, features)
    return tuple(SqliteClientData(path, split) for split in split_names)
  except sqlite3.DatabaseError as e:
    raise DatasetError(f'{path} cannot be read ({e}).') from e


def check_has_clients(data: ClientData, source: str) -> None:
  """Fails in one line when `data` holds no client."""
  if not data.client_ids:
    raise DatasetError(f'{source} holds no clients for this dataset.')
