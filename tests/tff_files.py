"""Writes tiny datasets in the schema of TFF's published SQLite files.

Tables `examples(split_name, client_id, serialized_example_proto)` and
`client_metadata(client_id, split_name, num_examples)`, as in
`emnist_all.sqlite` (splits digits_only_train/test, all_train/test; features
`pixels` float [28, 28], `label` int64), `shakespeare.sqlite` (splits
train/test; feature `snippets` string) and `cifar100.sqlite` (splits
train/test; features `image` int64 [32, 32, 3], `label` and `coarse_label`
int64).
"""

import os
import sqlite3

import numpy as np
import tensorflow as tf


def _write(path, rows):
  connection = sqlite3.connect(path)
  connection.execute('CREATE TABLE examples (split_name TEXT NOT NULL, '
                     'client_id TEXT NOT NULL, serialized_example_proto '
                     'BLOB NOT NULL);')
  connection.execute('CREATE TABLE client_metadata (client_id TEXT NOT NULL, '
                     'split_name TEXT NOT NULL, num_examples INTEGER NOT NULL);')
  counts = {}
  for split, client, proto in rows:
    connection.execute('INSERT INTO examples VALUES (?, ?, ?)',
                       (split, client, proto))
    counts[(client, split)] = counts.get((client, split), 0) + 1
  for (client, split), count in counts.items():
    connection.execute('INSERT INTO client_metadata VALUES (?, ?, ?)',
                       (client, split, count))
  connection.commit()
  connection.close()


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
