"""The non-IID "diversity scenario" of AFML, with diversity 1 - zeta.

AFML ("Towards generalizable personalized federated learning with adaptive
local adaptation", anonymous, under review), section 2, "Non-iid data with
diversity quantity zeta", builds its clients from a distribution-based label
non-IID split, "the distribution of classes within one client follows the
Dirichlet distribution with parameter 0.5", and a "mutually exclusive set"
of clients, each of which "augments the samples and randomly relabels the
assigned classes", so that any two of them potentially have different
objectives. zeta is the proportion of clients NOT
in that set: zeta = 1 is the plain Dirichlet non-IID split, zeta = 0 makes
every client exclusive.

The paper leaves the following open; this module chooses:

* Dirichlet proportions to samples (Hsu et al. 2019 style): the train and
  test splits of every client of the input are pooled. Client j draws class
  proportions q_j ~ Dir(concentration * 1) and, in client order, takes
  n = pool size // number of clients examples without replacement: each
  example's class is drawn from q_j restricted to the classes that still
  have examples (renormalized). All clients thus have the same size n; the
  pool size mod the number of clients examples are left out. The last
  clients take what the others left, so their histograms can stray from
  their q_j, as in Hsu et al.
* Number of clients: that of the input's train split; ids `client_000`, ...
* The exclusive set: round((1 - zeta) * C) of the C clients, Python `round`
  (ties to even), chosen uniformly at random. The set is a prefix of one
  seeded random order of the clients, so for a fixed seed lowering zeta only
  adds clients to it, and the partition does not depend on zeta at all.
* Relabelling: each exclusive client draws its own random permutation of ALL
  `num_classes` labels, y -> perm[y] (classes it does not hold included, so
  its train and test splits agree).
* Augmentation: each exclusive client draws one fixed transform applied to
  all of its samples: a horizontal flip with probability 1/2, then a shift
  by (dy, dx), each uniform on [-max_shift, max_shift], filling with zeros.
  The paper names no augmentation; this one keeps the images recognizable.
* Per-client draws (permutation, flip, shift) are made for every client and
  used only by exclusive ones, so a client's transform does not depend on
  zeta either.
* Train/test: each client's n examples are split at random, a share
  round(test_fraction * n) (at least 1 and at most n - 1 when n >= 2) held
  out; both splits follow the client's relabelled, augmented distribution
  and are disjoint (the paper's D^j and D'^j).
* Character tasks (Shakespeare) have natural clients and no classes to
  split by, so they keep their clients and splits; an exclusive client
  writes in its own substitution cipher, a random permutation of the token
  ids fixing the reserved ones (padding, out-of-vocabulary, begin, end),
  applied to x and y of its train and test examples. This is the text
  analogue of relabelling; there is no augmentation.

Every random draw comes from `seed`, in separate streams for the partition,
the exclusive set, the permutations and the augmentations.

Image data is pooled in memory once, as NumPy arrays filled batch by batch
(a file's clients read in one pipeline through their rowid spans); images
whose values are all k / 255 (CIFAR-100's) are held as uint8 codes, a
quarter of float32. For all of EMNIST-62 (749,068 images) the pool is 2.35
GB of float32 pixels, held once: a scenario client is a list of pool rows
and its transform, applied when its dataset is made. Character data is
ciphered lazily, client by client, as it is read.
"""

import collections
import dataclasses
import math
import numbers
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tff_sqlite
from tff_perfed import validation

# Above this, Dir(concentration) proportions are all close to 1/num_classes.
_IID_CONCENTRATION = 100.0
_BATCH = 4096  # Examples per read when pooling a client's data.


def _require_fraction(name: str, value: Any, *, open_interval: bool) -> None:
  """Checks that `value` is a real number in [0, 1] (or in (0, 1))."""
  expected = 'a number in (0, 1)' if open_interval else 'a number in [0, 1]'
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise validation.ArgumentTypeError(name, expected, value)
  inside = 0 < value < 1 if open_interval else 0 <= value <= 1
  if not (math.isfinite(value) and inside):
    raise validation.ArgumentValueError(name, expected, value)


@dataclasses.dataclass(frozen=True)
class DiversityScenario:
  """Settings of the diversity scenario; validated on construction.

  Attributes:
    zeta: In [0, 1], the fraction of clients NOT in the mutually exclusive
      set (AFML's zeta; the diversity is 1 - zeta).
    concentration: > 0, the Dirichlet parameter of each client's class
      proportions (the paper's 0.5).
    test_fraction: In (0, 1), each client's held-out share (image tasks).
    max_shift: >= 0, the largest shift in pixels of an exclusive client's
      augmentation (image tasks).
  """
  zeta: float
  concentration: float = 0.5
  test_fraction: float = 0.2
  max_shift: int = 2

  def __post_init__(self):
    _require_fraction('zeta', self.zeta, open_interval=False)
    validation.require_real('concentration', self.concentration,
                            positive=True)
    _require_fraction('test_fraction', self.test_fraction, open_interval=True)
    validation.require_int('max_shift', self.max_shift, minimum=0)
    if self.concentration > _IID_CONCENTRATION:
      logging.warning('Diversity scenario: concentration %g is effectively '
                      'IID.', self.concentration)


def build_diversity_dataset(
    dataset: federated_dataset.FederatedDataset,
    task: federated_dataset.Task, scenario: DiversityScenario, *,
    seed: int) -> Tuple[federated_dataset.FederatedDataset, Dict[str, Any]]:
  """Builds the scenario's clients from `dataset` (see the module docstring).

  Args:
    dataset: The task's federated data, as `task.load` returns it.
    task: The task; its `image_shape` or `text_reserved_tokens` says how
      the scenario is built.
    scenario: zeta and the other settings.
    seed: Non-negative seed of every random draw.

  Returns:
    `(scenario_dataset, description)`: the new `FederatedDataset` (same
    name and `num_classes`, examples of the input's structure, shapes and
    dtypes) and a JSON-serializable description of the partition: for image
    tasks `{'zeta', 'concentration', 'test_fraction', 'max_shift',
    'num_clients', 'num_unused', 'clients': {id: {'exclusive', 'num_train',
    'num_test', 'class_counts' (before relabelling), 'label_permutation'
    (or None), 'flip', 'shift': [dy, dx]}}}`; for character tasks `{'zeta',
    'num_clients', 'clients': {id: {'exclusive', 'cipher' (or None)}}}`.
    With no exclusive client, a character task's `dataset` is returned as is.

  Raises:
    ArgumentValueError: If `task` is neither an image nor a character task,
      or `dataset` does not fit it.
    ArgumentError: If `seed` is not a non-negative int.
  """
  validation.require_int('seed', seed, minimum=0)
  if not isinstance(scenario, DiversityScenario):
    raise validation.ArgumentTypeError('scenario', 'a DiversityScenario',
                                       scenario)
  if dataset.num_classes != task.num_classes:
    raise validation.ArgumentValueError(
        'dataset', f"data with the task's {task.num_classes} classes",
        f'{dataset.num_classes} classes')
  # Independent streams, so e.g. the partition does not move with zeta.
  streams = [np.random.default_rng(s)
             for s in np.random.SeedSequence(seed).spawn(4)]
  if task.image_shape is not None:
    return _image_scenario(dataset, task, scenario, *streams)
  if task.text_reserved_tokens is not None:
    return _text_scenario(dataset, task, scenario, streams[1], streams[2])
  raise validation.ArgumentValueError(
      'dataset', 'an image task (image_shape) or a character task '
      '(text_reserved_tokens)', dataset.name)


def _num_exclusive(zeta: float, num_clients: int) -> int:
  """The size of the mutually exclusive set: round((1 - zeta) * C)."""
  return int(round((1 - zeta) * num_clients))


def _exclusive_mask(num_clients: int, zeta: float,
                    rng: np.random.Generator) -> np.ndarray:
  # A prefix of one random order: nested across zeta for a fixed seed.
  order = rng.permutation(num_clients)
  mask = np.zeros(num_clients, bool)
  mask[order[:_num_exclusive(zeta, num_clients)]] = True
  return mask


# ---- Image tasks -------------------------------------------------------------


def _check_structure(spec: Any, name: str) -> None:
  if not (isinstance(spec, Mapping) and set(spec) == {'x', 'y'}):
    raise validation.ArgumentValueError(
        'dataset', 'examples OrderedDict(x=..., y=...)', f'{name} {spec}')


class _PoolBuffer:
  """Pooled examples appended batch by batch into one array each.

  The arrays are allocated once for the expected number of examples (grown
  by half when more come, trimmed at the end), so the pool never exists
  twice, as it would as a list of batches and their concatenation. Float
  images whose every value is k / 255 for an integer k (CIFAR-100's, any
  8-bit image scaled to [0, 1]) are stored as the codes k in uint8: a
  quarter of the memory, decoded exactly (`decode`) when a client's
  dataset is made. A batch that is not so is the end of that: the codes so
  far are decoded and the pool goes on in the images' own dtype.
  """

  def __init__(self, capacity: int):
    self._capacity = max(int(capacity), 1)
    self._size = 0
    self._x = None
    self._y = None
    self.codes = None  # Whether x holds uint8 codes of k / 255 values.

  @staticmethod
  def _codes(x: np.ndarray):
    if x.dtype != np.float32:
      return None
    codes = np.rint(x * np.float32(255))
    if codes.min(initial=0) < 0 or codes.max(initial=0) > 255:
      return None
    codes = codes.astype(np.uint8)
    return codes if np.array_equal(decode_codes(codes), x) else None

  def append(self, x: np.ndarray, y: np.ndarray) -> None:
    codes = self._codes(x) if self.codes in (None, True) else None
    if self._x is None:
      self.codes = codes is not None
      stored = codes if self.codes else x
      self._x = np.empty((self._capacity,) + x.shape[1:], stored.dtype)
      self._y = np.empty((self._capacity,) + y.shape[1:], y.dtype)
    elif self.codes and codes is None:
      self._x = decode_codes(self._x[:self._capacity]).astype(x.dtype)
      self.codes = False
    stored = codes if self.codes else x
    end = self._size + len(x)
    if end > self._capacity:
      self._capacity = max(end, self._capacity + self._capacity // 2)
      self._x = _resized(self._x, self._capacity)
      self._y = _resized(self._y, self._capacity)
    self._x[self._size:end] = stored
    self._y[self._size:end] = y
    self._size = end

  def arrays(self) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of every appended example; x as codes if `codes`."""
    if self._x is None:
      return np.empty((0,)), np.empty((0,))
    return _resized(self._x, self._size), _resized(self._y, self._size)


def _resized(array: np.ndarray, length: int) -> np.ndarray:
  """`array` with `length` rows, in place where NumPy can (no copy)."""
  if len(array) == length:
    return array
  try:
    array.resize((length,) + array.shape[1:], refcheck=False)
    return array
  except ValueError:  # Not the array's own memory (a view).
    resized = np.empty((length,) + array.shape[1:], array.dtype)
    keep = min(length, len(array))
    resized[:keep] = array[:keep]
    return resized


def decode_codes(codes: np.ndarray) -> np.ndarray:
  """uint8 codes k -> float32 k / 255, as `tf.cast(k, float32) / 255`."""
  return codes.astype(np.float32) / np.float32(255)


def _split_batches(split, client_ids: Sequence[str], source, side: str):
  """Batches of every example of `client_ids`, client after client.

  For a TFF SQLite file (`source`) whose rows are the task's examples, the
  rows are read client by client through their spans and parsed thousands
  at a time (`SqliteSource.parse_batch`); for another file-backed split,
  one pipeline reads every client through the split's serializable dataset
  function; otherwise each client's dataset is made and read in turn.
  """
  if source is not None and source.parse_batch is not None:
    for rows in source.splits[side].iterate_client_rows(client_ids, _BATCH):
      batch = source.parse_batch(tf.constant(rows, tf.string))
      yield {key: value.numpy() for key, value in batch.items()}
    return
  if source is not None:
    examples = tf.data.Dataset.from_tensor_slices(
        tf.constant(list(client_ids), tf.string)).flat_map(
            split.serializable_dataset_fn)
    yield from examples.batch(_BATCH).as_numpy_iterator()
    return
  for client_id in client_ids:
    yield from split.create_tf_dataset_for_client(client_id).batch(
        _BATCH).as_numpy_iterator()


def _pool(dataset: federated_dataset.FederatedDataset
         ) -> Tuple[np.ndarray, np.ndarray, bool]:
  """All examples of every client of train and test, in a fixed order.

  Returns:
    `(x, y, codes)`: x holds uint8 codes of x's values (`decode_codes`)
    when `codes`, else x itself.
  """
  source = dataset.source
  if not isinstance(source, tff_sqlite.SqliteSource):
    source = None
  # An image task's raw rows are its examples: the pool's size.
  capacity = source.expected_examples() if source is not None else 0
  buffer = _PoolBuffer(capacity or 1024)
  for side, split in (('train', dataset.train), ('test', dataset.test)):
    spec = split.element_type_structure
    _check_structure(spec, dataset.name)
    # Sorted ids: the pool (and so the partition) does not depend on the
    # order a ClientData lists its clients in.
    for batch in _split_batches(split, sorted(split.client_ids), source,
                                side):
      buffer.append(batch['x'], batch['y'])
  x, y = buffer.arrays()
  if not len(y):
    raise validation.ArgumentValueError('dataset', 'some examples',
                                        f'{dataset.name} with none')
  return x, y, buffer.codes


class _PooledClientData(tff.simulation.datasets.ClientData):
  """The scenario's clients: rows of the shared pool, transformed on read.

  Each client is a list of pool rows and its transform (label permutation,
  flip, shift; none for a client outside the exclusive set). Its examples
  are gathered, augmented and decoded only when its dataset is made, so
  the pool is held once, not once more as every client's copy.
  """

  def __init__(self, x: np.ndarray, y: np.ndarray, codes: bool,
               image_shape: Sequence[int],
               clients: Mapping[str, Tuple[np.ndarray, Any]]):
    self._x, self._y, self._codes = x, y, codes
    self._image_shape = tuple(image_shape)
    self._clients = dict(clients)
    self._client_ids = list(self._clients)
    x_dtype = tf.float32 if codes else tf.as_dtype(x.dtype)
    self._spec = collections.OrderedDict(
        x=tf.TensorSpec(x.shape[1:], x_dtype),
        y=tf.TensorSpec(y.shape[1:], tf.as_dtype(y.dtype)))

  @property
  def client_ids(self) -> List[str]:
    return self._client_ids

  def arrays(self, client_id: str) -> Tuple[np.ndarray, np.ndarray]:
    """The client's (x, y), relabelled, augmented and decoded."""
    rows, transform = self._clients[client_id]
    x, y = self._x[rows], self._y[rows]
    if transform is not None:
      perm, flip, dy, dx = transform
      y = perm[y].astype(self._y.dtype)
      x = _augment(x, self._image_shape, flip, dy, dx)
    if self._codes:
      x = decode_codes(x)
    return x, y

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._clients:
      raise ValueError(f'{client_id!r} is not a client of this scenario.')
    x, y = self.arrays(client_id)
    return tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(x=x, y=y))

  @property
  def serializable_dataset_fn(self):
    raise NotImplementedError(
        'The diversity scenario\'s image clients are made in this process '
        'from its pool; use create_tf_dataset_for_client.')

  @property
  def element_type_structure(self):
    return self._spec


def _class_proportions(concentration: float, num_classes: int,
                       rng: np.random.Generator) -> np.ndarray:
  q = rng.dirichlet(np.full(num_classes, concentration))
  if not np.all(np.isfinite(q)) or q.sum() <= 0:  # Underflow at tiny alpha.
    q = np.full(num_classes, 1.0 / num_classes)
  return q


def _draw_counts(q: np.ndarray, available: np.ndarray, size: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Class counts of `size` draws from `q` renormalized over what is left.

  Drawing all at once and redrawing the excess of exhausted classes is
  rejection sampling, i.e. the same law as drawing one example at a time
  from q restricted (and renormalized) to the classes still available.
  """
  counts = np.zeros_like(available)
  need = size
  while need > 0:
    left = available - counts
    p = np.where(left > 0, q, 0.0)
    if p.sum() <= 0:  # q is zero on every class left: fall back to uniform.
      p = (left > 0).astype(float)
    draw = np.minimum(rng.multinomial(need, p / p.sum()), left)
    counts += draw
    need -= int(draw.sum())
  return counts


def _dirichlet_partition(labels: np.ndarray, num_clients: int,
                         num_classes: int, concentration: float,
                         rng: np.random.Generator) -> List[np.ndarray]:
  """Pool indices of each client, `len(labels) // num_clients` each."""
  queues = [rng.permutation(np.flatnonzero(labels == c))
            for c in range(num_classes)]
  available = np.array([len(q) for q in queues])
  taken = np.zeros(num_classes, int)
  size = len(labels) // num_clients
  shares = []
  for _ in range(num_clients):
    q = _class_proportions(concentration, num_classes, rng)
    counts = _draw_counts(q, available - taken, size, rng)
    share = np.concatenate([
        queues[c][taken[c]:taken[c] + counts[c]] for c in range(num_classes)
    ])
    taken += counts
    shares.append(rng.permutation(share))
  return shares


def _shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """Moves `images` [n, H, W, C] down by dy and right by dx, zero-filled."""
  out = np.zeros_like(images)
  height, width = images.shape[1:3]
  if abs(dy) >= height or abs(dx) >= width:
    return out
  rows = slice(max(dy, 0), height + min(dy, 0))
  cols = slice(max(dx, 0), width + min(dx, 0))
  src_rows = slice(max(-dy, 0), height - max(dy, 0))
  src_cols = slice(max(-dx, 0), width - max(dx, 0))
  out[:, rows, cols] = images[:, src_rows, src_cols]
  return out


def _augment(x: np.ndarray, image_shape: Sequence[int], flip: bool, dy: int,
            dx: int) -> np.ndarray:
  """An exclusive client's augmentation of `x` ([n] + stored example shape).

  A horizontal flip (if `flip`), then `_shift_images`; the result has the
  stored shape and dtype.
  """
  images = x.reshape((len(x),) + tuple(image_shape))
  if flip:
    images = images[:, :, ::-1]
  return _shift_images(images, dy, dx).reshape(x.shape)


def _num_test(n: int, test_fraction: float) -> int:
  """Number of test examples of a client with `n` examples."""
  if n < 2:
    return 0
  return min(max(int(round(test_fraction * n)), 1), n - 1)


def _image_scenario(dataset, task, scenario, partition_rng, exclusive_rng,
                    permutation_rng, augmentation_rng):
  """The image-task scenario; see `build_diversity_dataset`."""
  x, y, codes = _pool(dataset)
  num_classes = task.num_classes
  image_size = int(np.prod(task.image_shape))
  if int(np.prod(x.shape[1:])) != image_size:
    raise validation.ArgumentValueError(
        'dataset', f'images of shape {tuple(task.image_shape)}',
        f'{dataset.name} examples of shape {x.shape[1:]}')
  if y.size != len(y):
    raise validation.ArgumentValueError(
        'dataset', 'one label per example', f'labels of shape {y.shape[1:]}')
  labels = y.reshape(-1)
  if np.any(labels < 0) or np.any(labels >= num_classes):
    raise validation.ArgumentValueError(
        'dataset', f'labels in [0, {num_classes})',
        f'labels in [{labels.min()}, {labels.max()}]')
  num_clients = len(dataset.train.client_ids)
  size = len(y) // num_clients
  if size < 2:
    logging.warning('Diversity scenario: %d examples for %d clients leave '
                    'them fewer than 2 each.', len(y), num_clients)
  if scenario.max_shift >= min(task.image_shape[:2]):
    logging.warning('Diversity scenario: max_shift %d can move images out of '
                    'the frame.', scenario.max_shift)

  shares = _dirichlet_partition(labels, num_clients, num_classes,
                                scenario.concentration, partition_rng)
  exclusive = _exclusive_mask(num_clients, scenario.zeta, exclusive_rng)
  width = max(3, len(str(num_clients - 1)))
  train, test = {}, {}
  clients = {}
  for j, share in enumerate(shares):
    # Drawn for every client so that a client's transform ignores zeta.
    perm = permutation_rng.permutation(num_classes)
    flip = bool(augmentation_rng.random() < 0.5)
    dy, dx = (int(d) for d in augmentation_rng.integers(
        -scenario.max_shift, scenario.max_shift + 1, size=2))
    class_counts = np.bincount(labels[share], minlength=num_classes)
    transform = (perm, flip, dy, dx) if exclusive[j] else None
    if not exclusive[j]:
      perm, flip, dy, dx = None, False, 0, 0
    num_test = _num_test(len(share), scenario.test_fraction)
    order = partition_rng.permutation(len(share))
    test_idx, train_idx = order[:num_test], order[num_test:]
    client_id = f'client_{j:0{width}d}'
    train[client_id] = (share[train_idx], transform)
    test[client_id] = (share[test_idx], transform)
    clients[client_id] = {
        'exclusive': bool(exclusive[j]),
        'num_train': int(len(train_idx)),
        'num_test': int(num_test),
        'class_counts': [int(c) for c in class_counts],
        'label_permutation': None if perm is None else [int(p) for p in perm],
        'flip': flip,
        'shift': [dy, dx],
    }
  description = {
      'zeta': float(scenario.zeta),
      'concentration': float(scenario.concentration),
      'test_fraction': float(scenario.test_fraction),
      'max_shift': int(scenario.max_shift),
      'num_clients': num_clients,
      'num_unused': int(len(y) - size * num_clients),
      'clients': clients,
  }
  result = federated_dataset.FederatedDataset(
      dataset.name,
      _PooledClientData(x, y, codes, task.image_shape, train),
      _PooledClientData(x, y, codes, task.image_shape, test),
      dataset.num_classes)
  return result, description


# ---- Character tasks ---------------------------------------------------------


def _cipher(vocab_size: int, reserved: Sequence[int],
            rng: np.random.Generator) -> np.ndarray:
  """A permutation of range(vocab_size) fixing every reserved id."""
  cipher = np.arange(vocab_size)
  free = np.setdiff1d(cipher, reserved)
  cipher[free] = rng.permutation(free)
  return cipher


def _ciphered(client_data: tff.simulation.datasets.ClientData,
              ciphers: Mapping[str, np.ndarray]
             ) -> tff.simulation.datasets.ClientData:
  """`client_data` with each client's x and y mapped through its cipher.

  Clients without a cipher keep their examples. The mapping is lazy (a
  `tf.gather` in a dataset map), so large data is never materialized.
  """
  client_ids = list(client_data.client_ids)
  spec = client_data.element_type_structure
  _check_structure(spec, 'text')
  vocab_size = len(next(iter(ciphers.values()))) if ciphers else 0
  identity = np.arange(vocab_size)

  def apply(examples, table):
    return examples.map(lambda e: collections.OrderedDict(
        x=tf.gather(tf.cast(table, spec['x'].dtype), e['x']),
        y=tf.gather(tf.cast(table, spec['y'].dtype), e['y'])))

  def dataset_fn(client_id):
    if isinstance(client_id, str):  # create_tf_dataset_for_client: eager.
      examples = client_data.create_tf_dataset_for_client(client_id)
      if client_id not in ciphers:
        return examples
      return apply(examples, tf.constant(ciphers[client_id]))
    # A string tensor (e.g. create_tf_dataset_from_all_clients, or a
    # serialized dataset computation): look the cipher up in the graph.
    # Constants built here, not captured, keep the function serializable.
    ids = tf.constant(client_ids)
    table = tf.constant(np.stack(
        [ciphers.get(c, identity) for c in client_ids]))
    row = tf.argmax(tf.cast(tf.equal(ids, client_id), tf.int32))
    return apply(client_data.serializable_dataset_fn(client_id), table[row])

  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      client_ids, dataset_fn)


def _text_scenario(dataset, task, scenario, exclusive_rng, permutation_rng):
  """The character-task scenario; see `build_diversity_dataset`."""
  reserved = sorted(set(int(t) for t in task.text_reserved_tokens))
  vocab_size = task.num_classes
  if reserved and (reserved[0] < 0 or reserved[-1] >= vocab_size):
    raise validation.ArgumentValueError(
        'task', f'reserved tokens in [0, {vocab_size})', reserved)
  if vocab_size - len(reserved) < 2:
    logging.warning('Diversity scenario: %d unreserved tokens leave nothing '
                    'to permute.', vocab_size - len(reserved))
  client_ids = sorted(dataset.train.client_ids)
  exclusive = _exclusive_mask(len(client_ids), scenario.zeta, exclusive_rng)
  ciphers, clients = {}, {}
  for client_id, is_exclusive in zip(client_ids, exclusive):
    cipher = _cipher(vocab_size, reserved, permutation_rng)  # Every client.
    if is_exclusive:
      ciphers[client_id] = cipher
    clients[client_id] = {
        'exclusive': bool(is_exclusive),
        'cipher': [int(c) for c in cipher] if is_exclusive else None,
    }
  description = {
      'zeta': float(scenario.zeta),
      'num_clients': len(client_ids),
      'clients': clients,
  }
  if not ciphers:  # zeta = 1: the natural data, untouched.
    return dataset, description
  result = federated_dataset.FederatedDataset(
      dataset.name, _ciphered(dataset.train, ciphers),
      _ciphered(dataset.test, ciphers), dataset.num_classes)
  return result, description
