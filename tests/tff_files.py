"""Writes tiny datasets in the schema of TFF's published SQLite files.

Tables `examples(split_name, client_id, serialized_example_proto)` and
`client_metadata(client_id, split_name, num_examples)`, as in
`emnist_all.sqlite` (splits digits_only_train/test, all_train/test; features
`pixels` float [28, 28], `label` int64), `shakespeare.sqlite` (splits
train/test; feature `snippets` string) and `cifar100.sqlite` (splits
train/test; features `image` int64 [32, 32, 3], `label` and `coarse_label`
int64).

Besides the well-formed files, writers of broken ones for the fault tests:
examples of any features (`example_proto`), clients of chosen examples
(`write_clients`), and files with a table's column missing or tables
empty (`write_file`).
"""

import os
import sqlite3

import numpy as np
import tensorflow as tf


EXAMPLES_COLUMNS = ('split_name', 'client_id', 'serialized_example_proto')
METADATA_COLUMNS = ('client_id', 'split_name', 'num_examples')


def write_file(path, rows, *, examples_columns=EXAMPLES_COLUMNS,
               metadata_columns=METADATA_COLUMNS, metadata=True, index=False):
  """A TFF-schema file of `rows` (split, client, serialized example).

  Args:
    path: The file to write.
    rows: `(split_name, client_id, serialized_example_proto)` triples.
    examples_columns: The `examples` table's columns (drop one to break it).
    metadata_columns: The `client_metadata` table's columns.
    metadata: Whether to fill `client_metadata` from the rows.
    index: Whether to index the examples by client (TFF's query then reads
      a client's rows without scanning the table).
  """
  connection = sqlite3.connect(path)
  types = dict(split_name='TEXT', client_id='TEXT',
               serialized_example_proto='BLOB', num_examples='INTEGER')
  for table, columns in (('examples', examples_columns),
                         ('client_metadata', metadata_columns)):
    connection.execute(f'CREATE TABLE {table} (' + ', '.join(
        f'{c} {types[c]} NOT NULL' for c in columns) + ');')
  counts = {}
  values = []
  for split, client, proto in rows:
    row = dict(split_name=split, client_id=client,
               serialized_example_proto=proto)
    values.append(tuple(row[c] for c in examples_columns))
    counts[(client, split)] = counts.get((client, split), 0) + 1
  connection.executemany(
      f'INSERT INTO examples VALUES ({", ".join("?" * len(examples_columns))})',
      values)
  if metadata:
    metadata_rows = []
    for (client, split), count in counts.items():
      row = dict(client_id=client, split_name=split, num_examples=count)
      metadata_rows.append(tuple(row[c] for c in metadata_columns))
    connection.executemany(
        'INSERT INTO client_metadata VALUES '
        f'({", ".join("?" * len(metadata_columns))})', metadata_rows)
  if index:
    connection.execute('CREATE INDEX client_examples ON examples '
                       '(client_id, split_name);')
  connection.commit()
  connection.close()


_write = write_file


def example_proto(**features):
  """A serialized `tf.train.Example` of `name=values` features.

  A value's type picks its list: floats (or a float array) a float_list,
  ints an int64_list, bytes or str a bytes_list.
  """
  proto = {}
  for name, values in features.items():
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == 'f':
      feature = tf.train.Feature(float_list=tf.train.FloatList(
          value=values.tolist()))
    elif values.dtype.kind in 'iub':
      feature = tf.train.Feature(int64_list=tf.train.Int64List(
          value=values.astype(np.int64).tolist()))
    else:
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[
          v if isinstance(v, bytes) else str(v).encode() for v in values]))
    proto[name] = feature
  return tf.train.Example(features=tf.train.Features(
      feature=proto)).SerializeToString()


def emnist_example(rng, label=None, num_classes=62):
  """A well-formed EMNIST example (random pixels, a random or given label)."""
  if label is None:
    label = int(rng.integers(num_classes))
  return example_proto(pixels=rng.random((28, 28)).astype(np.float32),
                       label=[label])


def shakespeare_example(text):
  return example_proto(snippets=[text.encode()])


EMNIST_SPLITS = ('all_train', 'all_test')
EMNIST10_SPLITS = ('digits_only_train', 'digits_only_test')


def write_clients(path, train, test=None, *, splits=EMNIST_SPLITS, **kwargs):
  """A TFF-schema file holding exactly the given clients' examples.

  Args:
    path: The file to write.
    train: `{client_id: [serialized examples]}` of the train split.
    test: The same for the test split; defaults to `train`.
    splits: The (train, test) split names.
    **kwargs: Passed to `write_file`.
  """
  test = train if test is None else test
  rows = [(split, client, proto)
          for split, clients in zip(splits, (train, test))
          for client, protos in clients.items() for proto in protos]
  write_file(path, rows, **kwargs)
  return path


def _emnist_proto(pixels, label):
  return tf.train.Example(features=tf.train.Features(feature={
      'pixels': tf.train.Feature(float_list=tf.train.FloatList(
          value=pixels.reshape(-1).tolist())),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
  })).SerializeToString()


def write_emnist(data_dir, num_clients=6, examples_per_client=12, seed=0):
  """emnist_all.sqlite; returns {(split, client): [labels]}."""
  rng = np.random.default_rng(seed)
  rows, labels = [], {}
  for split, classes in (('digits_only_train', 10), ('digits_only_test', 10),
                         ('all_train', 62), ('all_test', 62)):
    for c in range(num_clients):
      client = f'f{c:04d}_00'
      for _ in range(examples_per_client):
        label = int(rng.integers(classes))
        rows.append((split, client,
                     _emnist_proto(rng.random((28, 28)).astype(np.float32),
                                   label)))
        labels.setdefault((split, client), []).append(label)
  path = os.path.join(data_dir, 'emnist_all.sqlite')
  _write(path, rows)
  return labels


def write_shakespeare(data_dir, num_clients=6, snippets_per_client=3, seed=0):
  """shakespeare.sqlite with lines of plain text per client."""
  rng = np.random.default_rng(seed)
  words = ['to', 'be', 'or', 'not', 'that', 'is', 'the', 'question', 'Hamlet']
  rows = []
  for split in ('train', 'test'):
    for c in range(num_clients):
      client = f'THE_PLAY_CHARACTER_{c}'
      for _ in range(snippets_per_client):
        text = ' '.join(rng.choice(words, size=int(rng.integers(5, 30))))
        proto = tf.train.Example(features=tf.train.Features(feature={
            'snippets': tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[text.encode()]))
        })).SerializeToString()
        rows.append((split, client, proto))
  path = os.path.join(data_dir, 'shakespeare.sqlite')
  _write(path, rows)
  return path


def _cifar100_proto(image, label):
  return tf.train.Example(features=tf.train.Features(feature={
      'coarse_label': tf.train.Feature(int64_list=tf.train.Int64List(
          value=[label // 5])),
      'image': tf.train.Feature(int64_list=tf.train.Int64List(
          value=image.reshape(-1).tolist())),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
  })).SerializeToString()


def write_cifar100(data_dir, num_clients=4, examples_per_client=10, seed=0):
  """cifar100.sqlite; returns {(split, client): [(image uint8, label)]}.

  As in TFF's file, the test split's clients are other clients than the
  train split's (here ids `test_0`, ... against `0`, ...).
  """
  rng = np.random.default_rng(seed)
  rows, examples = [], {}
  for split, prefix in (('train', ''), ('test', 'test_')):
    for c in range(num_clients):
      client = f'{prefix}{c}'
      for _ in range(examples_per_client):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        label = int(rng.integers(100))
        rows.append((split, client, _cifar100_proto(image, label)))
        examples.setdefault((split, client), []).append((image, label))
  _write(os.path.join(data_dir, 'cifar100.sqlite'), rows)
  return examples
