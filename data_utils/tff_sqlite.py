"""Reading TFF's published SQLite dataset files, failing in one line.

TFF publishes its datasets as `<name>.sqlite.lzma` files with two tables,
`examples(split_name, client_id, serialized_example_proto)` and
`client_metadata(client_id, split_name, num_examples)`. Nothing is ever
downloaded here: a file is looked for in `--data_dir`, else in TFF's cache
(`~/.tff`, where TFF's own `load_data()` leaves it); a missing file is an
error that names both places and says where to get it, and a file that is
not the task's TFF dataset (no such tables or columns, empty tables, other
split names, other features) fails at load time with one line naming the
file and what is wrong, not mid-training. `write_file` writes a dataset in
the same schema (for datasets built here, and the benchmark's twins).

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
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

from absl import logging
from google.protobuf import message as protobuf_message
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import data_dirs
from tff_perfed.data_utils import federated_dataset

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


def _sql_literal(text: str) -> str:
  """`text` as an SQL string literal (quotes doubled)."""
  return "'" + text.replace("'", "''") + "'"


# A client's rows lie between two rowids of `examples`: (first, last).
RowSpan = Tuple[int, int]
_NO_ROWS: RowSpan = (1, 0)
# Reading a client scans its span; warn when spans hold far more rows than
# their clients (a file whose clients' rows are interleaved).
_SPAN_WARNING_RATIO = 4


def client_row_spans(path: str) -> Dict[str, Dict[str, RowSpan]]:
  """`{split: {client_id: (first rowid, last rowid)}}` of `path`'s examples.

  One pass over the table (SQLite reads each row's first columns only).
  TFF's writer (`sql_client_data_utils.save_to_sql_client_data`) inserts a
  client's examples one after the other, so a client's span holds exactly
  its rows, and a query restricted to it reads them through the table's
  rowid B-tree instead of scanning the whole table: the table has no index
  on `client_id`, and TFF's own query reads the whole file for every
  client (1.4 s a client on a 2.9 GB EMNIST-sized file, 0.03 s here). The
  query still filters on client and split, so interleaved rows are read
  correctly, only more slowly (a warning says so).

  Returns:
    The spans, or an empty dict when the table has no rowids (a WITHOUT
    ROWID table): its clients are then read by scanning, as TFF does.
  """
  spans: Dict[str, Dict[str, RowSpan]] = {}
  rows = held = 0
  with _connect(path) as connection:
    try:
      result = connection.execute(
          'SELECT split_name, client_id, MIN(rowid), MAX(rowid), COUNT(*) '
          'FROM examples GROUP BY split_name, client_id').fetchall()
    except sqlite3.OperationalError:  # No rowid column.
      return {}
  for split, client_id, first, last, count in result:
    spans.setdefault(str(split), {})[client_id] = (int(first), int(last))
    rows += count
    held += last - first + 1
  if rows and held > _SPAN_WARNING_RATIO * rows:
    logging.warning(
        '%s stores its clients\' examples interleaved: reading a client '
        'scans %.0f times as many rows as it holds.', path, held / rows)
  return spans


class SqliteClientData(ClientData):
  """One split of a TFF SQLite file, as TFF's `SqlClientData` reads it.

  The same client ids (sorted, from `client_metadata`) and the same rows in
  the same order (rowid order, as TFF's query returns them), but:

  * the client id and split name are quoted as SQL literals: an id may hold
    quotes or any Unicode;
  * with `row_spans` (`client_row_spans`), a client's query reads only the
    rows between its first and last rowid, not the whole table.
  """

  def __init__(self, path: str, split_name: str,
               row_spans: Optional[Mapping[str, RowSpan]] = None):
    self._path = path
    self._split_name = split_name
    with _connect(path) as connection:
      self._client_ids = sorted(row[0] for row in connection.execute(
          'SELECT DISTINCT client_id FROM client_metadata WHERE '
          'split_name = ?', (split_name,)))
    self._client_id_set = frozenset(self._client_ids)
    self._row_spans = None if row_spans is None else dict(row_spans)

  @property
  def path(self) -> str:
    return self._path

  @property
  def split_name(self) -> str:
    return self._split_name

  @property
  def num_rows(self) -> Optional[int]:
    """Rows in the split's client spans (its examples, when not
    interleaved with other clients'), or None without spans."""
    if self._row_spans is None:
      return None
    return sum(last - first + 1 for first, last in self._row_spans.values())

  def _sql_dataset(self, query) -> tf.data.Dataset:
    return tf.data.experimental.SqlDataset(
        driver_name='sqlite', data_source_name=self._path, query=query,
        output_types=tf.string)

  def _graph_dataset(self, client_id: tf.Tensor) -> tf.data.Dataset:
    """The client's rows for an id given as a string tensor (in graphs)."""
    client_id = tf.convert_to_tensor(client_id, tf.string)
    query = [
        "SELECT serialized_example_proto FROM examples WHERE client_id = '",
        _sql_quote(client_id), "' and split_name ='",
        _sql_quote(tf.constant(self._split_name)), "'"
    ]
    if self._row_spans is not None:
      # Constants built here, not captured, keep the function serializable.
      ids = list(self._row_spans)
      bounds = np.array([self._row_spans[c] for c in ids] + [_NO_ROWS],
                        np.int64).reshape(-1, 2)
      found = tf.where(tf.equal(tf.constant(ids, tf.string), client_id))[:, 0]
      row = tf.cond(tf.size(found) > 0, lambda: found[0],
                    lambda: tf.constant(len(ids), tf.int64))
      span = tf.strings.as_string(tf.gather(tf.constant(bounds), row))
      query += [' and rowid BETWEEN ', span[0], ' AND ', span[1]]
    return self._sql_dataset(tf.strings.join(query))

  @property
  def serializable_dataset_fn(self):
    return self._graph_dataset

  @property
  def client_ids(self) -> List[str]:
    return self._client_ids

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._client_id_set:
      raise ValueError(f'{client_id!r} is not a client of split '
                       f'{self._split_name!r} of {self._path}.')
    query = ('SELECT serialized_example_proto FROM examples WHERE client_id '
             f'= {_sql_literal(client_id)} and split_name = '
             f'{_sql_literal(self._split_name)}')
    if self._row_spans is not None:
      first, last = self._row_spans.get(client_id, _NO_ROWS)
      query += f' and rowid BETWEEN {first} AND {last}'
    return self._sql_dataset(query)

  @property
  def element_type_structure(self):
    return tf.TensorSpec(shape=(), dtype=tf.string)

  def iterate_client_rows(self, client_ids: Sequence[str],
                          chunk_size: int = 4096) -> Iterator[List[bytes]]:
    """The serialized examples of `client_ids`, client after client.

    Each client's rows in the order its dataset yields them, read through
    its span; in chunks of about `chunk_size` rows.
    """
    chunk: List[bytes] = []
    with _connect(self._path) as connection:
      for client_id in client_ids:
        query = ('SELECT serialized_example_proto FROM examples WHERE '
                 'client_id = ? and split_name = ?')
        parameters = (client_id, self._split_name)
        if self._row_spans is not None:
          query += ' and rowid BETWEEN ? AND ?'
          parameters += self._row_spans.get(client_id, _NO_ROWS)
        chunk.extend(bytes(row[0]) for row in
                     connection.execute(query, parameters))
        if len(chunk) >= chunk_size:
          yield chunk
          chunk = []
    if chunk:
      yield chunk

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
    parse_batch: For a task whose every row is one example (EMNIST): maps a
      vector of serialized rows to the batch of the examples the task's
      datasets yield for them, so that readers of every example (the
      diversity scenario's pool) parse thousands at once instead of one
      pipeline element at a time (about 8x faster). None otherwise.
  """
  path: str
  splits: Mapping[str, SqliteClientData]
  features: Tuple[Feature, ...]
  parse_batch: Optional[Callable[[tf.Tensor], Mapping[str, tf.Tensor]]] = None

  def expected_examples(self) -> int:
    """About how many raw examples the task's two sides read (0: unknown).

    Each raw split once (CIFAR-100 makes both sides from one split).
    """
    splits = {id(s): s for s in self.splits.values()}.values()
    return sum(s.num_rows or 0 for s in splits)


def how_to_get(file_name: str) -> str:
  """Where a TFF dataset file comes from, for messages."""
  loader = _TFF_LOADERS.get(file_name)
  via = (f'tff.simulation.datasets.{loader}.load_data() downloads it into '
         'TFF\'s cache; ' if loader else '')
  return (f'{via}it is published at {PUBLISHED_URL.format(file_name)} '
          '(decompress the .lzma)')


# The TFF loader that caches each file.
_TFF_LOADERS = {'emnist_all.sqlite': 'emnist',
                'shakespeare.sqlite': 'shakespeare',
                'cifar100.sqlite': 'cifar100'}


def _check_file(path: str) -> None:
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
  """Finds and checks `file_name`, then opens each of its `split_names`.

  Args:
    task_name: The task, for messages.
    data_dir: The directory `--data_dir` names; None looks in TFF's cache
      (`data_dirs.tff_cache_dir()`, where TFF's `load_data()` puts it).
    file_name: The task's file.
    split_names: The splits to open, e.g. ('all_train', 'all_test').
    features: The features the task parses, to recognize another
      dataset's file.

  Returns:
    A `SqliteClientData` of serialized examples per split, each client read
    through its row span (`client_row_spans`).

  Raises:
    DatasetError: If the file is missing (naming the places looked in), is
      not a TFF dataset, lacks a column, a split or the task's features, has
      an empty table, or cannot be read.
  """
  path = data_dirs.find_tff_file(task_name, file_name, data_dir,
                                 how_to_get(file_name))
  return open_splits(path, task_name, split_names, features)


def open_splits(path: str, task_name: str, split_names: Sequence[str],
                features: Sequence[Feature]) -> Tuple[SqliteClientData, ...]:
  """`load_split` of a file at a known path."""
  _check_file(path)
  try:
    _check_contents(path, task_name, split_names, features)
    spans = client_row_spans(path)
    return tuple(
        SqliteClientData(path, split,
                         spans.get(split, {}) if spans else None)
        for split in split_names)
  except sqlite3.DatabaseError as e:
    raise DatasetError(f'{path} cannot be read ({e}).') from e


BUILD_TABLE = 'tff_perfed_build'


def write_file(path: str, rows: Iterable[Tuple[str, str, bytes]], *,
               build_info: Optional[Mapping[str, str]] = None) -> None:
  """Writes `rows` as a TFF SQLite dataset file, atomically.

  The schema `tff.simulation.datasets.sql_client_data_utils` writes (no
  index), so that every reader of TFF's files reads it; `build_info`, if
  given, goes to one more table (`read_build_info`), which TFF ignores. The
  file is written beside `path` and renamed into place: a reader sees the
  old file or the new one, never half of one.

  Args:
    path: The file to write (its directory is created).
    rows: `(split_name, client_id, serialized_example_proto)`; each
      client's rows of a split one after the other, as TFF writes them.
    build_info: `{key: value}` strings describing how the file was made.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  temporary = os.path.join(
      directory, f'.{os.path.basename(path)}.{os.getpid()}.tmp')
  if os.path.exists(temporary):
    os.remove(temporary)
  try:
    connection = sqlite3.connect(temporary)
    try:
      connection.execute(
          'CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT '
          'NOT NULL, serialized_example_proto BLOB NOT NULL);')
      connection.execute(
          'CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name '
          'TEXT NOT NULL, num_examples INTEGER NOT NULL);')
      counts: Dict[Tuple[str, str], int] = {}
      batch = []
      for split, client_id, serialized in rows:
        batch.append((split, client_id, serialized))
        counts[(client_id, split)] = counts.get((client_id, split), 0) + 1
        if len(batch) >= 4096:
          connection.executemany('INSERT INTO examples VALUES (?, ?, ?)',
                                 batch)
          batch = []
      connection.executemany('INSERT INTO examples VALUES (?, ?, ?)', batch)
      connection.executemany(
          'INSERT INTO client_metadata VALUES (?, ?, ?)',
          [(client_id, split, n) for (client_id, split), n in counts.items()])
      if build_info is not None:
        connection.execute(f'CREATE TABLE {BUILD_TABLE} (key TEXT PRIMARY '
                           'KEY, value TEXT NOT NULL);')
        connection.executemany(f'INSERT INTO {BUILD_TABLE} VALUES (?, ?)',
                               sorted(build_info.items()))
      connection.commit()
    finally:
      connection.close()
    with open(temporary, 'rb') as f:
      os.fsync(f.fileno())
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


class TracedClientData(ClientData):
  """`data`, each client's dataset made by one function traced once.

  Making a dataset eagerly traces its `map` functions and adds them to the
  eager context's function library, which TensorFlow never frees: on
  CIFAR-100 about 0.5 MB every time a client's dataset is made, that is
  for every sampled client of every round and every evaluated client of
  every evaluation (measured: +270 MiB per 500 clients' test datasets, and
  0 through this class). Here `serializable_dataset_fn` is traced once, as
  a `tf.function` of the client id, and each client's dataset is a call of
  it: the same examples in the same order, and nothing added per client.
  """

  def __init__(self, data: ClientData):
    self._data = data
    self._client_id_set = frozenset(data.client_ids)
    self._make = tf.function(
        data.serializable_dataset_fn,
        input_signature=[tf.TensorSpec([], tf.string)])

  @property
  def client_ids(self) -> List[str]:
    return self._data.client_ids

  @property
  def serializable_dataset_fn(self):
    return self._data.serializable_dataset_fn

  @property
  def element_type_structure(self):
    return self._data.element_type_structure

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._client_id_set:
      # The wrapped data's own error.
      return self._data.create_tf_dataset_for_client(client_id)
    return self._make(tf.constant(client_id))


def read_build_info(path: str) -> Optional[Dict[str, str]]:
  """The `build_info` `write_file` stored in `path`, or None.

  None also when the file is missing or is not a readable SQLite file.
  """
  if not os.path.isfile(path):
    return None
  try:
    with _connect(path) as connection:
      return dict(connection.execute(
          f'SELECT key, value FROM {BUILD_TABLE}').fetchall())
  except sqlite3.DatabaseError:
    return None


def file_origin(task_name: str, path: str) -> Dict[str, Any]:
  """`FederatedDataset.origin` of a TFF file: which file, of what size.

  Size and modification time rather than a digest: hashing EMNIST's 2.9
  GB file would cost seconds at every start.
  """
  status = os.stat(path)
  return {'dataset': task_name, 'file': os.path.abspath(path),
          'bytes': status.st_size, 'modified_ns': status.st_mtime_ns}


def check_has_clients(data: ClientData, source: str) -> None:
  """Fails in one line when `data` holds no client."""
  if not data.client_ids:
    raise DatasetError(f'{source} holds no clients for this dataset.')
