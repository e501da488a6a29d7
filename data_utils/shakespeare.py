"""Federated Shakespeare (Caldas et al. 2018, TFF's `shakespeare.sqlite`).

Each speaking role of each play is a client; examples are next-character
prediction over snippets of SHAKESPEARE_SEQUENCE_LENGTH characters, with the
vocabulary and special ids of TFF's baseline (google-research/federated).
The model is TFF's Shakespeare character LSTM, padding masked.
"""

import collections
import dataclasses
import functools
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import data_dirs
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tff_sqlite
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


FEATURES = (tff_sqlite.Feature('snippets', tff_sqlite.BYTES),)


def _parse(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Serialized examples -> `OrderedDict(snippets)`, as TFF parses them."""
  return dataset.map(
      lambda serialized: collections.OrderedDict(
          snippets=tff_sqlite.parse_examples(serialized, FEATURES)['snippets']),
      num_parallel_calls=tf.data.AUTOTUNE)


def _char_ids(snippet: tf.Tensor) -> tf.Tensor:
  # A constant byte->id table (no lookup-table resource, so datasets stay
  # serializable into TFF computations).
  table = np.full([256], SHAKESPEARE_OOV, np.int32)
  for i, char in enumerate(SHAKESPEARE_CHARS):
    table[ord(char)] = i + 1
  codes = tf.cast(tf.io.decode_raw(snippet, tf.uint8), tf.int32)
  ids = tf.gather(tf.constant(table), codes)
  return tf.concat([[SHAKESPEARE_BOS], ids, [SHAKESPEARE_EOS]], axis=0)


def chunk_stream(id_vectors: tf.data.Dataset, length: int) -> tf.data.Dataset:
  """The concatenation of `id_vectors`, cut into vectors of `length`.

  The same chunks as `id_vectors.unbatch().batch(length)` (TFF's baseline
  chunks across snippet boundaries; the last chunk may be shorter), but cut
  a whole snippet at a time: the pipeline makes one element per chunk, not
  one per character, so that reading a client's examples costs per example
  rather than per character of its text (a 200 KB snippet is 200,000
  characters).

  Args:
    id_vectors: Int32 vectors of any lengths.
    length: The chunk length.

  Returns:
    A dataset of int32 vectors of `length` (the last one shorter).
  """
  # A final empty vector marks the end, where the remainder is emitted.
  marked = id_vectors.map(lambda ids: (ids, False)).concatenate(
      tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), True)))

  def cut(carry, element):
    ids, last = element
    stream = tf.concat([carry, ids], axis=0)
    size = tf.shape(stream)[0]
    full = size // length
    remainder = stream[full * length:]
    chunks = tf.reshape(stream[:full * length], [full, length])
    # After the last element nothing is carried on.
    return remainder, (chunks, tf.logical_and(last, size > full * length),
                       remainder)

  def emit(chunks, has_tail, tail):
    full = tf.data.Dataset.from_tensor_slices(chunks)
    tail = tf.data.Dataset.from_tensors(tail).repeat(
        tf.cast(has_tail, tf.int64))
    return full.concatenate(tail)

  return marked.scan(tf.zeros([0], tf.int32), cut).flat_map(emit)


def _examples(dataset: tf.data.Dataset,
              sequence_length: int = SHAKESPEARE_SEQUENCE_LENGTH
             ) -> tf.data.Dataset:
  """Snippets -> next-character examples of `sequence_length`."""
  length = sequence_length + 1

  def split(chunk):
    padded = tf.pad(chunk, [[0, length - tf.shape(chunk)[0]]])
    padded = tf.ensure_shape(padded, [length])
    return collections.OrderedDict(x=padded[:-1], y=padded[1:])

  return chunk_stream(dataset.map(lambda e: _char_ids(e['snippets'])),
                      length).map(split)


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


def _dataset(name: str, train: tff.simulation.datasets.ClientData,
             test: tff.simulation.datasets.ClientData, *,
             source: Optional[tff_sqlite.SqliteSource] = None,
             origin: Optional[Dict[str, Any]] = None,
             sequence_length: int = SHAKESPEARE_SEQUENCE_LENGTH
            ) -> federated_dataset.FederatedDataset:
  """Raw snippets (parsed) -> the task's next-character dataset."""
  examples = functools.partial(_examples, sequence_length=sequence_length)
  train, test = train.preprocess(examples), test.preprocess(examples)
  if source is not None:
    train = tff_sqlite.TracedClientData(train)
    test = tff_sqlite.TracedClientData(test)
  return federated_dataset.FederatedDataset(
      name, train, test, SHAKESPEARE_VOCAB_SIZE, source=source, origin=origin)


def synthetic(name: str, seed: int, *,
              sequence_length: int = SHAKESPEARE_SEQUENCE_LENGTH
             ) -> federated_dataset.FederatedDataset:
  """Random snippets of the task's vocabulary, as dataset `name`."""
  train, test = _synthetic_raw(seed)
  return _dataset(name, train, test, sequence_length=sequence_length)


def load_file(path: str, name: str, *,
              origin: Optional[Dict[str, Any]] = None,
              sequence_length: int = SHAKESPEARE_SEQUENCE_LENGTH
             ) -> federated_dataset.FederatedDataset:
  """Reads a file in the schema of TFF's `shakespeare.sqlite` at `path`.

  The path every Shakespeare-schema file takes: TFF's own and the ones
  built here (`data_utils.shakespeare_plays`).

  Args:
    path: The file; its splits 'train' and 'test' hold `snippets`.
    name: The dataset's name, for messages and the `FederatedDataset`.
    origin: The `FederatedDataset.origin` record, if any.
    sequence_length: Characters per example (80 in TFF's baseline).

  Returns:
    The next-character dataset, read through `tff_sqlite.SqliteSource`.

  Raises:
    DatasetError: If the file is unreadable, not a TFF dataset file, or
      lacks a split, the `snippets` feature or clients.
  """
  raw_train, raw_test = tff_sqlite.open_splits(path, name, ('train', 'test'),
                                               FEATURES)
  tff_sqlite.check_has_clients(raw_train, raw_train.path)
  source = tff_sqlite.SqliteSource(
      raw_train.path, {'train': raw_train, 'test': raw_test}, FEATURES)
  return _dataset(name, raw_train.preprocess(_parse),
                  raw_test.preprocess(_parse), source=source, origin=origin,
                  sequence_length=sequence_length)


def load(*, data_dir: Optional[str] = None, use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """Loads TFF's `shakespeare.sqlite` from `data_dir`, else TFF's cache.

  Raises:
    DatasetError: If the file is missing, unreadable or not TFF's
      Shakespeare file.
  """
  if use_synthetic_data:
    return synthetic('shakespeare', seed)
  path = data_dirs.find_tff_file('shakespeare', FILE_NAME, data_dir,
                                 tff_sqlite.how_to_get(FILE_NAME))
  return load_file(path, 'shakespeare',
                   origin=tff_sqlite.file_origin('shakespeare', path))


@dataclasses.dataclass(frozen=True)
class CharModelSize:
  """The character LSTM's size (TFF's baseline by default).

  Attributes:
    embedding_dim: Width of the character embedding.
    lstm_units: Units per LSTM layer.
    num_lstm_layers: Stacked LSTM layers.
  """
  embedding_dim: int = 8
  lstm_units: int = 256
  num_lstm_layers: int = 2


def make_task(name: str, summary: str,
              load_fn: Callable[..., federated_dataset.FederatedDataset],
              data_file: str, *,
              model_size: CharModelSize = CharModelSize()
             ) -> federated_dataset.Task:
  """A task of Shakespeare's model, classes and reserved tokens.

  Args:
    name: The task's name (`--dataset`).
    summary: One line for help texts.
    load_fn: The task's `load(*, data_dir, use_synthetic_data, seed)`.
    data_file: The file `load_fn` reads.
    model_size: The character LSTM's size.

  Returns:
    The task, with the character LSTM of `model_size` and its split model.
  """
  sizes = dataclasses.asdict(model_size)
  return federated_dataset.Task(
      name=name,
      summary=summary,
      load=load_fn,
      build_model=lambda seed: models.build_char_lstm(
          vocab_size=SHAKESPEARE_VOCAB_SIZE, seed=seed, **sizes),
      num_classes=SHAKESPEARE_VOCAB_SIZE,
      data_file=data_file,
      text_reserved_tokens=(models.PAD_TOKEN, SHAKESPEARE_OOV,
                            SHAKESPEARE_BOS, SHAKESPEARE_EOS),
      build_split_model=lambda seed: models.build_char_lstm_split(
          vocab_size=SHAKESPEARE_VOCAB_SIZE, seed=seed, **sizes))


TASK = make_task(
    'shakespeare',
    'Federated Shakespeare, next character; TFF\'s character LSTM.', load,
    FILE_NAME)
