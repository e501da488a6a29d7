"""Checks every client's examples before they reach a TFF computation.

One client with bad data (a missing label, 700 pixels instead of 784, int64
pixels, a label outside the task's classes, a non-finite value, an example
that does not parse) would otherwise fail inside a round, deep in TFF, after
the run's output directory is populated. `check_clients` reads every
example of every client once, train and test split, and returns the dataset
restricted to the good clients with the reason each other client was
dropped; with `strict=True` any bad client is an error instead.

Clients read from a TFF SQLite file (`FederatedDataset.source`) are checked
on their serialized examples, read in bulk (one query per split) and parsed
in chunks, so the check costs about as much as reading the file once; a bad
example is named with what is wrong with it. Other data (in memory,
synthetic, re-partitioned) is checked client by client on the examples the
task yields.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tff_sqlite

ClientData = tff.simulation.datasets.ClientData
DatasetError = federated_dataset.DatasetError

_SIDES = ('train', 'test')
_MAX_ERROR_CHARS = 120
_STATS_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class CheckedDataset:
  """A dataset restricted to its good clients.

  Attributes:
    dataset: The `FederatedDataset` of the good clients (the input itself
      when no client was dropped), its `dropped` set to `dropped`. A good
      client absent from the test split stays absent from it.
    dropped: `{client_id: reason}` of the dropped clients, the reason one
      short phrase (e.g. "train example 3: label 100 outside 0..61").
  """
  dataset: federated_dataset.FederatedDataset
  dropped: Dict[str, str]


class _SubsetClientData(ClientData):
  """`base` with only `client_ids`; their datasets are `base`'s own."""

  def __init__(self, base: ClientData, client_ids: Sequence[str]):
    self._base = base
    self._client_ids = list(client_ids)
    self._client_id_set = frozenset(self._client_ids)

  @property
  def client_ids(self) -> List[str]:
    return self._client_ids

  @property
  def serializable_dataset_fn(self):
    return self._base.serializable_dataset_fn

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._client_id_set:
      raise ValueError(f'{client_id!r} is not a client of this ClientData.')
    return self._base.create_tf_dataset_for_client(client_id)

  @property
  def element_type_structure(self):
    return self._base.element_type_structure


def spec_fault(element_spec, input_spec: Mapping[str, tf.TensorSpec]
              ) -> Optional[str]:
  """Why examples of `element_spec` cannot be batched into `input_spec`.

  Args:
    element_spec: The element spec of a client's unbatched examples.
    input_spec: The model's batched input spec (`OrderedDict(x=, y=)`).

  Returns:
    A short phrase, or None when the examples fit.
  """
  if not isinstance(element_spec, Mapping):
    return f'examples are {type(element_spec).__name__}, expected x and y'
  for key, spec in input_spec.items():
    if key not in element_spec:
      return f'examples have no {key}'
    held = element_spec[key]
    if not isinstance(held, tf.TensorSpec):
      return f'{key} is a {type(held).__name__}, expected a tensor'
    if held.dtype != spec.dtype:
      return f'{key} is {held.dtype.name}, expected {spec.dtype.name}'
    expected = spec.shape[1:]
    if not held.shape.is_compatible_with(expected):
      held_size = held.shape.num_elements()
      if held_size is not None and expected.num_elements() is not None:
        return (f'{key} has {held_size} values, expected '
                f'{expected.num_elements()}')
      return f'{key} has shape {held.shape}, expected {expected}'
  return None


def values_fault(stats: Mapping[str, np.ndarray], num_classes: int,
                 integer_inputs: bool) -> Optional[str]:
  """Why a client's examples with these summary `stats` are unusable.

  Args:
    stats: From `batch_stats`/`merge_stats`: `count` (examples),
      `nonfinite` (count of non-finite x values), `x_min`, `x_max`, `y_min`,
      `y_max` (0 when there are no such values).
    num_classes: Labels (and token inputs) lie in 0..num_classes - 1.
    integer_inputs: Whether x holds token ids (range-checked) rather than
      floats (finiteness-checked).

  Returns:
    A short phrase, or None.
  """
  top = num_classes - 1
  if int(stats['count']) == 0:
    return None
  if int(stats['nonfinite']):
    return f'x has {int(stats["nonfinite"])} non-finite values'
  for name, low, high in (('label', stats['y_min'], stats['y_max']),
                          ('token', stats['x_min'], stats['x_max'])):
    if name == 'token' and not integer_inputs:
      continue
    for value in (int(low), int(high)):
      if not 0 <= value <= top:
        return f'{name} {value} outside 0..{top}'
  return None


def batch_stats(x: np.ndarray, y: np.ndarray) -> Dict[str, int]:
  """`values_fault`'s summary of a batch of examples (x, y arrays)."""
  x, y = np.asarray(x), np.asarray(y)
  stats = dict(count=len(y), nonfinite=0, x_min=0, x_max=0, y_min=0, y_max=0)
  if x.dtype.kind == 'f':
    stats['nonfinite'] = int(np.count_nonzero(~np.isfinite(x)))
  elif x.size:
    stats.update(x_min=int(x.min()), x_max=int(x.max()))
  if y.size:
    stats.update(y_min=int(y.min()), y_max=int(y.max()))
  return stats


def merge_stats(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
  """The summary of two batches' examples together."""
  if not a['count']:
    return b
  if not b['count']:
    return a
  return dict(count=a['count'] + b['count'],
              nonfinite=a['nonfinite'] + b['nonfinite'],
              x_min=min(a['x_min'], b['x_min']),
              x_max=max(a['x_max'], b['x_max']),
              y_min=min(a['y_min'], b['y_min']),
              y_max=max(a['y_max'], b['y_max']))


def _client_stats(dataset: tf.data.Dataset) -> Dict[str, int]:
  """One pass over a client's examples, in large batches."""
  # Without tf.data's rewrites and autotuning, making the iterator costs
  # about 1 ms instead of 10 (see client_datasets.pipeline_options).
  batches = dataset.batch(_STATS_BATCH).with_options(
      client_datasets.pipeline_options())
  stats = dict(count=0)
  for batch in batches:
    stats = merge_stats(stats, batch_stats(batch['x'].numpy(),
                                           batch['y'].numpy()))
  return stats


def _one_line(error: Exception) -> str:
  text = ' '.join(str(error).split()) or type(error).__name__
  return text[:_MAX_ERROR_CHARS]


def _client_data_faults(data: ClientData, side: str,
                        input_spec: Mapping[str, tf.TensorSpec],
                        num_classes: int) -> Dict[str, str]:
  """Faults of each client of `data`, reading its examples one client at a
  time."""
  faults = {}
  for client_id in data.client_ids:
    try:
      dataset = data.create_tf_dataset_for_client(client_id)
      fault = spec_fault(dataset.element_spec, input_spec)
      if fault is None:
        fault = values_fault(
            _client_stats(dataset), num_classes,
            integer_inputs=dataset.element_spec['x'].dtype.is_integer)
    except (tf.errors.OpError, ValueError, TypeError, KeyError) as e:
      fault = f'examples cannot be read ({_one_line(e)})'
    if fault is not None:
      faults[client_id] = f'{side} {fault}'
  return faults


def _describe(side: str, index: int, fault: str) -> str:
  if fault == 'cannot be parsed':
    return f'{side} example {index} cannot be parsed'
  return f'{side} example {index}: {fault}'


def sqlite_split_faults(data: tff_sqlite.SqliteClientData, side: str,
                        features: Sequence[tff_sqlite.Feature]
                       ) -> Dict[str, str]:
  """The first bad example of each client of a TFF SQLite split.

  One query reads the whole split; examples are parsed in chunks (see
  `tff_sqlite.examples_faults`).

  Args:
    data: The split.
    side: 'train' or 'test', for the reasons.
    features: The features the task parses.

  Returns:
    `{client_id: reason}` for the clients of `data.client_ids` holding a
    bad example, e.g. "train example 3: label 100 outside 0..61".
  """
  clients = frozenset(data.client_ids)
  seen: Dict[str, int] = {}
  faults: Dict[str, str] = {}
  for rows in data.iterate_split_rows():
    positions = []
    for client_id, _ in rows:
      positions.append(seen.get(client_id, 0))
      seen[client_id] = positions[-1] + 1
    chunk_faults = tff_sqlite.examples_faults(
        [bytes(serialized) for _, serialized in rows], features)
    for (client_id, _), index, fault in zip(rows, positions, chunk_faults):
      if fault and client_id in clients and client_id not in faults:
        faults[client_id] = _describe(side, index, fault)
  return faults


def _id_fault(client_id) -> Optional[str]:
  if not isinstance(client_id, str):
    return f'client id is a {type(client_id).__name__}, not a string'
  if '\x00' in client_id:
    # SQLite's C interface would cut the id at the NUL.
    return 'client id holds a NUL character'
  return None


def find_bad_clients(dataset: federated_dataset.FederatedDataset,
                     input_spec: Mapping[str, tf.TensorSpec]
                    ) -> Dict[str, str]:
  """`{client_id: reason}` of every train client with a bad example.

  Both splits are read; a fault in a client's test split makes it bad too.
  A client absent from the test split is not bad (it trains; its test
  dataset is empty).

  Args:
    dataset: The data to check.
    input_spec: The model's batched input spec.

  Returns:
    The bad clients in `dataset.client_ids` order, with one reason each
    (its train split's first fault, else its test split's).
  """
  train_ids = dataset.client_ids
  faults_by_side: Dict[str, Dict[str, str]] = {}
  source = dataset.source
  for side in _SIDES:
    data = dataset.train if side == 'train' else dataset.test
    spec_problem = spec_fault(data.element_type_structure, input_spec)
    if spec_problem is not None:
      # Every client has the split's layout: none can be trained.
      faults_by_side[side] = {c: f'{side} {spec_problem}' for c in train_ids}
    elif isinstance(source, tff_sqlite.SqliteSource):
      raw = source.splits[side]
      if side == 'test' and raw is source.splits['train']:
        continue  # Both sides come from the same raw examples.
      faults_by_side[side] = sqlite_split_faults(raw, side, source.features)
    else:
      faults_by_side[side] = _client_data_faults(
          data, side, input_spec, dataset.num_classes)
  test_ids = frozenset(dataset.test.client_ids)
  bad = {}
  for client_id in train_ids:
    reason = _id_fault(client_id) or faults_by_side['train'].get(client_id)
    if reason is None and client_id in test_ids:
      reason = faults_by_side.get('test', {}).get(client_id)
    if reason is not None:
      bad[client_id] = reason
  return bad


def restrict(dataset: federated_dataset.FederatedDataset,
             client_ids: Sequence[str]) -> federated_dataset.FederatedDataset:
  """`dataset` with only `client_ids` (in train and, where present, test)."""
  test_ids = frozenset(dataset.test.client_ids)
  return dataclasses.replace(
      dataset,
      train=_SubsetClientData(dataset.train, client_ids),
      test=_SubsetClientData(dataset.test,
                             [c for c in client_ids if c in test_ids]))


def check_clients(dataset: federated_dataset.FederatedDataset,
                  task: federated_dataset.Task, *,
                  strict: bool) -> CheckedDataset:
  """Drops (or with `strict`, refuses) the clients with unusable examples.

  Every example of each client's train and test split is checked: the
  example parses; it has x and y of the dtype and shape the task's model
  takes; labels (and token ids) lie in 0..num_classes - 1; float values are
  finite.

  Args:
    dataset: The task's loaded data.
    task: The task, whose model's `input_spec` the examples must fit.
    strict: Whether a bad client is an error rather than dropped.

  Returns:
    A `CheckedDataset`. Each dropped client is logged in one warning line
    naming it and the reason.

  Raises:
    DatasetError: With `strict` and any bad client (naming the first, its
      reason, and how many there are), or when every client is bad.
  """
  input_spec = task.build_model(0).input_spec
  bad = find_bad_clients(dataset, input_spec)
  if not bad:
    return CheckedDataset(dataset, {})
  first_id, first_reason = next(iter(bad.items()))
  total = len(dataset.client_ids)
  summary = (f'{len(bad)} of the {total} clients of {dataset.name} have '
             f'unusable data; the first, {first_id!r}: {first_reason}')
  if strict:
    raise DatasetError(f'{summary} (without --strict_data they are dropped).')
  if len(bad) == total:
    raise DatasetError(f'{summary}; no client is left to train.')
  for client_id, reason in bad.items():
    logging.warning('dropping client %r of %s: %s', client_id, dataset.name,
                    reason)
  good = [c for c in dataset.client_ids if c not in bad]
  return CheckedDataset(
      dataclasses.replace(restrict(dataset, good), dropped=dict(bad)), bad)
