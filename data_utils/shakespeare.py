"""Federated Shakespeare (Caldas et al. 2018, TFF's `shakespeare.sqlite`).

Each speaking role of each play is a client; examples are next-character
prediction over snippets of SHAKESPEARE_SEQUENCE_LENGTH characters, with the
vocabulary and special ids of TFF's baseline (google-research/federated).
The model is TFF's Shakespeare character LSTM, padding masked.
"""

import collections
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from data_utils import federated_dataset
from data_utils import tff_sqlite
from tff_perfed import models

FILE_NAME = 'shakespeare.sqlite'

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


def _char_ids(snippet: tf.Tensor) -> tf.Tensor:
  # A constant byte->id table (no lookup-table resource, so datasets stay
  # serializable into TFF computations).
  table = np.full([256], SHAKESPEARE_OOV, np.int32)
  for i, char in enumerate(SHAKESPEARE_CHARS):
    table[ord(char)] = i + 1
  codes = tf.cast(tf.io.decode_raw(snippet, tf.uint8), tf.int32)
  ids = tf.gather(tf.constant(table), codes)
  return tf.concat([[SHAKESPEARE_BOS], ids, [SHAKESPEARE_EOS]], axis=0)


def _examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Snippets -> next-character examples of SHAKESPEARE_SEQUENCE_LENGTH."""
  length = SHAKESPEARE_SEQUENCE_LENGTH + 1

  def split(chunk):
    padded = tf.pad(chunk, [[0, length - tf.shape(chunk)[0]]])
    padded = tf.ensure_shape(padded, [length])
    return collections.OrderedDict(x=padded[:-1], y=padded[1:])

  return (dataset.map(lambda e: _char_ids(e['snippets'])).unbatch().batch(
      length).map(split))


def _synthetic_raw(seed: int, num_clients: int = 8,
                   snippets_per_client: int = 6):
  """Random snippets in the raw schema of TFF's file, for fast runs."""
  rng = np.random.default_rng(seed)
  alphabet = np.array(list(SHAKESPEARE_CHARS[:40]))
  splits = []
  for _ in ('train', 'test'):
    clients = {}
    for c in range(num_clients):
      snippets = [''.join(rng.choice(alphabet, size=rng.integers(20, 120)))
                  for _ in range(snippets_per_client)]
      clients[f'client_{c}'] = collections.OrderedDict(
          snippets=np.array(snippets, dtype=object))
    splits.append(tff.simulation.datasets.TestClientData(clients))
  return splits


def load(*, data_dir: Optional[str] = None, use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """Loads Shakespeare from `data_dir/shakespeare.sqlite`."""
  if use_synthetic_data:
    train, test = _synthetic_raw(seed)
    source = '<synthetic>'
  else:
    train, test = tff_sqlite.load_split(
        'shakespeare', data_dir, FILE_NAME,
        lambda d: tff.simulation.datasets.shakespeare.load_data(cache_dir=d))
    source = f'{data_dir}/{FILE_NAME}'
  train, test = train.preprocess(_examples), test.preprocess(_examples)
  tff_sqlite.check_first_example(train, source)
  return federated_dataset.FederatedDataset('shakespeare', train, test,
                                            SHAKESPEARE_VOCAB_SIZE)


TASK = federated_dataset.Task(
    name='shakespeare',
    summary='Federated Shakespeare, next character; TFF\'s character LSTM.',
    load=load,
    build_model=lambda seed: models.build_char_lstm(
        vocab_size=SHAKESPEARE_VOCAB_SIZE, seed=seed),
    num_classes=SHAKESPEARE_VOCAB_SIZE,
    data_file=FILE_NAME,
    text_reserved_tokens=(models.PAD_TOKEN, SHAKESPEARE_OOV, SHAKESPEARE_BOS,
                          SHAKESPEARE_EOS),
    build_split_model=lambda seed: models.build_char_lstm_split(
        vocab_size=SHAKESPEARE_VOCAB_SIZE, seed=seed))
