"""Any TFDS image or text classification dataset as a federated dataset.

`--dataset=tfds:NAME` (with `--data_dir`, a TFDS data directory; without it
TFDS's own default, `$TFDS_DATA_DIR` or `~/tensorflow_datasets`) reads a
dataset that is already prepared there: `tfds.builder(NAME, data_dir=...)`,
which finds registered datasets (`mnist`, `fashion_mnist`, `cifar10`,
`imdb_reviews`, ...) and datasets written from files alike (e.g. by
`tfds.dataset_builders.TfDataBuilder`). NAME may carry TFDS's own config and
version (`tfds:mnist:3.0.1`, `tfds:NAME/CONFIG`). Nothing is ever
downloaded: a registered dataset that is not prepared is one error line
saying how to prepare it elsewhere.

What the dataset is, and so which model trains on it, is read from its
`DatasetInfo`: the input and label are its `supervised_keys`, else its one
input feature beside its one `ClassLabel`:

* an `Image` of fixed shape (uint8): x = its pixels / 255 (float32);
  grayscale images train the Per-FedAvg paper's MLP (`models.build_mlp`,
  hidden layers of 80 and 60) on x flattened to [height * width], as
  `mnist` and `digits` do; colour images the CIFAR CNN's architecture
  (`models.conv_net`, 3x3 kernels, dense 128) on x [height, width,
  channels], as `cifar100` does. The diversity scenario pools and augments
  either;
* a `Text`: x = its hashed bag of words (lower-cased runs of letters, digits
  and apostrophes, each counted in bucket crc32(word) mod TEXT_BUCKETS,
  divided by the number of words: float32 [TEXT_BUCKETS]), the classic
  baseline of a linear or MLP classifier on hashed term frequencies; the
  MLP trains on it. The diversity scenario's text cipher is for character
  models, so it refuses such a dataset (one line).

Anything else (several inputs, a label that is not a `ClassLabel`, images of
unknown size, audio, ...) is one `error:` line naming the features found.

Clients: NUM_CLIENTS = 50 users, as the Per-FedAvg paper's MNIST. With 10
classes the paper's rule deals the examples (`partitioners.per_fedavg_users`:
half the users hold the classes 0-4, each other user one class of 0-4 and
one of 5-9); with another number of classes the examples are shuffled and
dealt evenly (IID), and `--diversity_zeta=1` makes the Dirichlet split over
them (`data_utils.diversity`; below 1 the AFML scenario). The `test` split,
when the dataset has one, is dealt by the same rule (each user tests on its
own classes); otherwise TEST_FRACTION = 1/7 of each user's share (MNIST's
test share) is held out. Splits are read whole into memory (uint8 pixels,
float32 bags of words): this suits the classification datasets of up to a
few hundred thousand small examples that a simulation trains on.
"""

import collections
import dataclasses
import functools
import re
import zlib
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow_federated as tff

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import partitioners
from tff_perfed import models
from tff_perfed.models import conv_net

DatasetError = federated_dataset.DatasetError

PREFIX = 'tfds:'
NUM_CLIENTS = 50
TEST_FRACTION = 1 / 7
TEXT_BUCKETS = 1024
# The rule of Fallah et al. (2020), section 5, is for ten classes.
_PER_FEDAVG_CLASSES = 10
_WORD = re.compile(r"[a-z0-9']+")
_CNN_ARCHITECTURE = dict(kernel_size=3, dense_units=128)
_SYNTHETIC_EXAMPLES = dict(train=1200, test=200)


@dataclasses.dataclass(frozen=True)
class Layout:
  """What a TFDS dataset's examples are, as this module reads them.

  Attributes:
    input_key: The feature that is x.
    label_key: The `ClassLabel` feature that is y.
    kind: 'image' or 'text'.
    num_classes: The label's number of classes.
    image_shape: (height, width, channels) of an image dataset, else None.
  """
  input_key: str
  label_key: str
  kind: str
  num_classes: int
  image_shape: Optional[Tuple[int, int, int]] = None

  @property
  def input_dim(self) -> int:
    if self.kind == 'text':
      return TEXT_BUCKETS
    return int(np.prod(self.image_shape))

  @property
  def convolutional(self) -> bool:
    return self.kind == 'image' and self.image_shape[2] > 1

  @property
  def example_shape(self) -> Tuple[int, ...]:
    """The shape of one x: an image for the CNN, else a flat vector."""
    return self.image_shape if self.convolutional else (self.input_dim,)


def is_tfds_name(name: Any) -> bool:
  """Whether `name` is a `tfds:NAME` dataset name."""
  return isinstance(name, str) and name.startswith(PREFIX)


def _tfds():
  try:
    import tensorflow_datasets  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DatasetError(
        'datasets tfds:NAME need tensorflow-datasets, which does not import '
        f'here ({" ".join(str(e).split())}); install tff-perfed[tfds].'
    ) from e
  return tensorflow_datasets


def _where(data_dir: Optional[str]) -> str:
  if data_dir:
    return f'--data_dir {data_dir!r}'
  return 'TFDS\'s default data directory (without --data_dir)'


def builder(name: str, data_dir: Optional[str]):
  """The prepared TFDS builder of the dataset `name` ('tfds:NAME').

  Raises:
    DatasetError: If NAME is empty, unknown to TFDS and not in the data
      directory, or not prepared there.
  """
  tfds = _tfds()
  tfds_name = name[len(PREFIX):]
  if not tfds_name:
    raise DatasetError(f'dataset {name!r} names no TFDS dataset; use '
                       'tfds:NAME, e.g. tfds:mnist.')
  try:
    found = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS raises DatasetNotFoundError, ValueError or a builder's own import
    # errors; its message lists every registered dataset.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ''
    raise DatasetError(
        f'dataset {name!r}: TFDS cannot open {tfds_name!r} in '
        f'{_where(data_dir)} ({type(e).__name__}: {first_line}).') from e
  if not found.is_prepared():
    raise DatasetError(
        f'dataset {name!r} is not prepared in {_where(data_dir)} (looked in '
        f'{found.data_dir}), and this program never downloads: prepare it '
        f'where there is a network (tfds build {tfds_name}, or '
        f'tfds.builder({tfds_name!r}).download_and_prepare()) and copy that '
        'data directory here.')
  return found


def _describe(features) -> str:
  return ', '.join(f'{key}: {type(value).__name__}'
                   for key, value in features.items())


def layout(name: str, info) -> Layout:
  """The `Layout` of a dataset from its `tfds.core.DatasetInfo`.

  Raises:
    DatasetError: Naming the features, if they are not one fixed-shape
      uint8 image or one text with one class label.
  """
  tfds = _tfds()
  features = info.features
  unsupported = (
      f'dataset {name!r} has features {{{_describe(features)}}}; supported '
      'are one image of fixed shape (uint8) or one text, with one class '
      'label (ClassLabel)')
  image_type, text_type = tfds.features.Image, tfds.features.Text
  label_type = tfds.features.ClassLabel
  keys = info.supervised_keys
  if (isinstance(keys, tuple) and len(keys) == 2 and
      all(isinstance(k, str) for k in keys)):
    input_key, label_key = keys
  else:
    inputs = [k for k, v in features.items()
              if isinstance(v, (image_type, text_type))]
    labels = [k for k, v in features.items() if isinstance(v, label_type)]
    if len(inputs) != 1 or len(labels) != 1:
      raise DatasetError(unsupported + '.')
    input_key, label_key = inputs[0], labels[0]
  if input_key not in features or label_key not in features:
    raise DatasetError(unsupported + '.')
  label = features[label_key]
  if not isinstance(label, label_type) or not label.num_classes:
    raise DatasetError(f'{unsupported}: its label {label_key!r} is a '
                       f'{type(label).__name__}.')
  x = features[input_key]
  if isinstance(x, text_type):
    return Layout(input_key, label_key, 'text', int(label.num_classes))
  if isinstance(x, image_type):
    shape = tuple(x.shape)
    if (len(shape) != 3 or any(d is None for d in shape) or
        x.dtype != np.uint8):
      raise DatasetError(f'{unsupported}: its image {input_key!r} has shape '
                         f'{shape} and dtype {np.dtype(x.dtype).name}.')
    return Layout(input_key, label_key, 'image', int(label.num_classes),
                  tuple(int(d) for d in shape))
  raise DatasetError(f'{unsupported}: its input {input_key!r} is a '
                     f'{type(x).__name__}.')


def bag_of_words(texts) -> np.ndarray:
  """Hashed term frequencies, float32 [len(texts), TEXT_BUCKETS].

  Args:
    texts: Strings or UTF-8 bytes.
  """
  bags = np.zeros((len(texts), TEXT_BUCKETS), np.float32)
  for row, text in enumerate(texts):
    if isinstance(text, bytes):
      text = text.decode('utf-8', errors='replace')
    words = _WORD.findall(text.lower())
    for word in words:
      bags[row, zlib.crc32(word.encode()) % TEXT_BUCKETS] += 1
    if words:
      bags[row] /= len(words)
  return bags


def _read_split(found, split: str, shape: Layout
               ) -> Tuple[np.ndarray, np.ndarray]:
  """(x, y) of one split: x uint8 pixels or float32 bags; y int32."""
  tfds = _tfds()
  examples = tfds.as_numpy(found.as_dataset(split=split, batch_size=-1))
  x, y = examples[shape.input_key], examples[shape.label_key]
  x = bag_of_words(x) if shape.kind == 'text' else x.reshape(
      (len(x),) + shape.example_shape)
  return x, y.astype(np.int32)


def _synthetic_split(shape: Layout, n: int, rng: np.random.Generator
                    ) -> Tuple[np.ndarray, np.ndarray]:
  # Class-conditional means plus noise, so that there is something to learn.
  labels = np.arange(n, dtype=np.int32) % shape.num_classes
  if shape.kind == 'text':
    means = rng.random((shape.num_classes, TEXT_BUCKETS), np.float32)
    x = means[labels] + 0.2 * rng.random((n, TEXT_BUCKETS), np.float32)
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32), labels
  means = rng.random((shape.num_classes, shape.input_dim), np.float32) * 255
  x = means[labels] + 60 * rng.standard_normal((n, shape.input_dim),
                                               np.float32)
  x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
  return x.reshape((n,) + shape.example_shape), labels


def _deal(x: np.ndarray, y: np.ndarray, num_classes: int,
          test_fraction: float, rng: np.random.Generator
         ) -> Tuple[partitioners.UserArrays, partitioners.UserArrays]:
  if num_classes == _PER_FEDAVG_CLASSES:
    return partitioners.per_fedavg_users(
        x, y, num_clients=NUM_CLIENTS, test_fraction=test_fraction, rng=rng)
  train, test = {}, {}
  for client, rows in enumerate(np.array_split(rng.permutation(len(y)),
                                               NUM_CLIENTS)):
    held = int(round(test_fraction * len(rows)))
    client_id = f'user_{client:03d}'
    train[client_id] = (x[rows[held:]], y[rows[held:]])
    test[client_id] = (x[rows[:held]], y[rows[:held]])
  return train, test


def _client_data(users: partitioners.UserArrays,
                 shape: Layout) -> tff.simulation.datasets.ClientData:
  def features(x):
    # Pixels scaled user by user: the uint8 pool is never float32 whole.
    return x.astype(np.float32) / np.float32(255) if shape.kind == 'image' \
        else x
  return tff.simulation.datasets.TestClientData({
      client_id: collections.OrderedDict(x=features(x), y=y)
      for client_id, (x, y) in users.items()})


def load(name: str, shape: Layout, *, data_dir: Optional[str] = None,
         use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """The federated dataset `name` (module docstring).

  Args:
    name: 'tfds:NAME'.
    shape: Its `Layout` (from its `DatasetInfo`).
    data_dir: The TFDS data directory; None for TFDS's default.
    use_synthetic_data: Random class-conditional examples of the dataset's
      layout instead; no example is read (the layout still comes from the
      prepared dataset's `DatasetInfo`).
    seed: Seed of the deal to users (and of the synthetic examples).

  Returns:
    The dataset; `origin` names the TFDS dataset, its version, directory
    and numbers of examples (None with synthetic data).

  Raises:
    DatasetError: As `builder`, or if the dataset has no `train` split.
  """
  rng = np.random.default_rng(seed)
  origin = None
  if use_synthetic_data:
    train_x, train_y = _synthetic_split(shape, _SYNTHETIC_EXAMPLES['train'],
                                        rng)
    test_split = _synthetic_split(shape, _SYNTHETIC_EXAMPLES['test'], rng)
  else:
    found = builder(name, data_dir)
    splits = found.info.splits
    if 'train' not in splits:
      raise DatasetError(f'dataset {name!r} has no train split (it has '
                         f'{", ".join(sorted(splits)) or "none"}).')
    train_x, train_y = _read_split(found, 'train', shape)
    test_split = (_read_split(found, 'test', shape) if 'test' in splits
                  else None)
    origin = {
        'dataset': name,
        'tfds_name': found.info.full_name,
        'version': str(found.info.version),
        'data_dir': str(found.data_dir),
        'num_train_examples': int(len(train_y)),
        'num_test_examples': int(len(test_split[1])) if test_split else 0,
        'input': shape.input_key,
        'label': shape.label_key,
    }
  bad = np.flatnonzero((train_y < 0) | (train_y >= shape.num_classes))
  if bad.size:
    raise DatasetError(f'dataset {name!r} has label {train_y[bad[0]]}, '
                       f'expected 0-{shape.num_classes - 1}.')
  if test_split is None:
    train, test = _deal(train_x, train_y, shape.num_classes, TEST_FRACTION,
                        rng)
  else:
    train, _ = _deal(train_x, train_y, shape.num_classes, 0, rng)
    test, _ = _deal(*test_split, shape.num_classes, 0, rng)
  return federated_dataset.FederatedDataset(
      name, _client_data(train, shape), _client_data(test, shape),
      shape.num_classes, origin=origin)


def _model_builders(shape: Layout):
  if shape.convolutional:
    architecture = dict(image_shape=shape.image_shape,
                        num_classes=shape.num_classes, **_CNN_ARCHITECTURE)
    return (
        lambda seed: conv_net.build_conv_net(seed=seed,
                                                    **architecture),
        lambda seed: conv_net.build_conv_net_split(seed=seed,
                                                          **architecture),
        'the CIFAR CNN\'s architecture')
  architecture = dict(input_dim=shape.input_dim,
                      num_classes=shape.num_classes)
  return (lambda seed: models.build_mlp(seed=seed, **architecture),
          lambda seed: models.build_mlp_split(seed=seed, **architecture),
          'the Per-FedAvg paper\'s MLP')


@functools.lru_cache(maxsize=32)
def task(name: str, data_dir: Optional[str] = None) -> federated_dataset.Task:
  """The `Task` of 'tfds:NAME', its model chosen from its `DatasetInfo`.

  Args:
    name: 'tfds:NAME'.
    data_dir: The TFDS data directory whose copy is described; None for
      TFDS's default.

  Raises:
    DatasetError: As `builder` and `layout`.
  """
  found = builder(name, data_dir)
  shape = layout(name, found.info)
  build_model, build_split_model, model_name = _model_builders(shape)
  what = (f'{shape.image_shape[0]}x{shape.image_shape[1]}x'
          f'{shape.image_shape[2]} images' if shape.kind == 'image' else
          f'texts as hashed bags of {TEXT_BUCKETS} words')
  return federated_dataset.Task(
      name=name,
      summary=(f'TFDS {found.info.full_name}: {what}, '
               f'{shape.num_classes} classes, over {NUM_CLIENTS} users; '
               f'{model_name}.'),
      load=functools.partial(load, name, shape),
      build_model=build_model,
      num_classes=shape.num_classes,
      image_shape=shape.image_shape,
      build_split_model=build_split_model)
