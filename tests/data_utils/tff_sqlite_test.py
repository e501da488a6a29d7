"""TFF SQLite files: TFF's examples, escaped client ids, unusable files."""

import os

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import emnist
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tasks
from tff_perfed.data_utils import tff_sqlite
import tff_files


def _labels(dataset):
  return [int(e['y']) for e in dataset]


def test_examples_and_order_equal_tffs_loader_for_ordinary_ids(tmp_path):
  tff_files.write_emnist(str(tmp_path), num_clients=3, examples_per_client=5)
  path = str(tmp_path / 'emnist_all.sqlite')
  for split in ('all_train', 'digits_only_test'):
    ours = tff_sqlite.SqliteClientData(path, split)
    theirs = tff.simulation.datasets.SqlClientData(path, split)
    assert ours.client_ids == theirs.client_ids
    for client in ours.client_ids:
      assert ([bytes(e.numpy()) for e in ours.create_tf_dataset_for_client(
          client)] == [bytes(e.numpy()) for e in
                       theirs.create_tf_dataset_for_client(client)])
  # And the parsed examples equal TFF's own EMNIST loader's.
  dataset = tasks.get('emnist').load(data_dir=str(tmp_path))
  tff_train, _ = tff.simulation.datasets.emnist.load_data(
      only_digits=False, cache_dir=str(tmp_path))
  for client in dataset.client_ids:
    ours = list(dataset.train.create_tf_dataset_for_client(client))
    theirs = list(tff_train.create_tf_dataset_for_client(client))
    assert [int(e['y']) for e in ours] == [int(e['label']) for e in theirs]
    for a, b in zip(ours, theirs):
      np.testing.assert_array_equal(a['x'].numpy()[..., 0],
                                    b['pixels'].numpy())


@pytest.mark.parametrize('directory', ['run#1', 'a?b', '50%20off'])
def test_a_data_dir_with_uri_characters_is_read_and_left_alone(
    tmp_path, directory):
  data_dir = tmp_path / directory
  data_dir.mkdir()
  tff_files.write_emnist(str(data_dir), num_clients=3, examples_per_client=4)
  before = sorted(p.name for p in tmp_path.iterdir())
  dataset = tasks.get('emnist').load(data_dir=str(data_dir))
  assert len(dataset.client_ids) == 3
  # sqlite would have opened (and created) another file for 'file:<path>'.
  assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize('client_id', [
    "o'brien", "x' OR '1'='1", "''", 'Ünïcødé 字 ✓', 'a"b;--',
    'back\\slash'])
def test_client_ids_with_quotes_or_unicode_read_only_their_examples(
    tmp_path, client_id):
  rng = np.random.default_rng(0)
  train = {
      client_id: [tff_files.emnist_example(rng, label=7) for _ in range(2)],
      'other': [tff_files.emnist_example(rng, label=3) for _ in range(3)],
  }
  tff_files.write_clients(str(tmp_path / 'emnist_all.sqlite'), train)
  dataset = tasks.get('emnist').load(data_dir=str(tmp_path))
  checked = client_checks.check_clients(dataset, tasks.get('emnist'),
                                        strict=True)
  assert checked.dropped == {}
  assert sorted(dataset.client_ids) == sorted(train)
  assert _labels(dataset.train.create_tf_dataset_for_client(client_id)) == [
      7, 7]
  assert _labels(dataset.test.create_tf_dataset_for_client(client_id)) == [
      7, 7]
  # Through the per-round pipeline, seeded by the id, and sampling.
  seed = client_datasets.derive_seed(0, 1, client_id)
  assert seed == client_datasets.derive_seed(0, 1, client_id)
  assert 0 <= seed < 2**31
  assert seed != client_datasets.derive_seed(0, 1, 'other')
  assert client_id in client_datasets.sample_clients(
      dataset.client_ids, 2, round_num=0, seed=0)
  (batches,) = client_datasets.training_datasets(
      dataset.train, [client_id], batch_sizes=[2], local_steps=2,
      round_num=1, seed=0)
  assert [b['y'].numpy().tolist() for b in batches] == [[7, 7], [7, 7]]


def _emnist_rows(splits=tff_files.EMNIST_SPLITS):
  rng = np.random.default_rng(0)
  return [(split, 'f0', tff_files.emnist_example(rng)) for split in splits]


def _write_without_column(path, table, column):
  if table == 'examples':
    columns = tuple(c for c in tff_files.EXAMPLES_COLUMNS if c != column)
    tff_files.write_file(path, [], examples_columns=columns)
  else:
    columns = tuple(c for c in tff_files.METADATA_COLUMNS if c != column)
    tff_files.write_file(path, _emnist_rows(), metadata_columns=columns)


_BROKEN_FILES = {
    'empty tables': (
        'emnist', lambda p: tff_files.write_file(p, []),
        'its examples table is empty'),
    'empty metadata': (
        'emnist', lambda p: tff_files.write_file(p, _emnist_rows(),
                                                 metadata=False),
        'its client_metadata table is empty'),
    'unexpected split names': (
        'emnist', lambda p: tff_files.write_file(
            p, _emnist_rows(('training', 'testing'))),
        "it has no split 'all_train', 'all_test' (its splits: 'testing', "
        "'training')"),
    'digits-only file as all of EMNIST': (
        'emnist', lambda p: tff_files.write_file(
            p, _emnist_rows(tff_files.EMNIST10_SPLITS)),
        "it has no split 'all_train', 'all_test'"),
    'missing example column': (
        'emnist', lambda p: _write_without_column(
            p, 'examples', 'serialized_example_proto'),
        'table examples has no column serialized_example_proto'),
    'missing metadata column': (
        'emnist', lambda p: _write_without_column(
            p, 'client_metadata', 'split_name'),
        'table client_metadata has no column split_name'),
    'shakespeare file as cifar100': (
        'cifar100', lambda p: tff_files.write_clients(
            p, {'a': [tff_files.shakespeare_example('to be')]},
            splits=('train', 'test')),
        'its \'train\' examples have features snippets, expected '
        'coarse_label, image, label'),
}


@pytest.mark.parametrize('fault', sorted(_BROKEN_FILES))
def test_unusable_file_is_one_line_naming_file_and_fault(tmp_path, fault):
  task_name, write, expected = _BROKEN_FILES[fault]
  task = tasks.get(task_name)
  path = str(tmp_path / task.data_file)
  write(path)
  with pytest.raises(federated_dataset.DatasetError) as error:
    task.load(data_dir=str(tmp_path))
  message = str(error.value)
  assert path in message and expected in message
  assert '\n' not in message


def test_cifar100_file_passed_as_emnist_names_the_splits_it_has(tmp_path):
  tff_files.write_cifar100(str(tmp_path), num_clients=1,
                           examples_per_client=1)
  os.rename(tmp_path / 'cifar100.sqlite', tmp_path / 'emnist_all.sqlite')
  with pytest.raises(federated_dataset.DatasetError) as error:
    tasks.get('emnist').load(data_dir=str(tmp_path))
  assert str(error.value) == (
      f'{tmp_path}/emnist_all.sqlite is not the file of dataset \'emnist\': '
      "it has no split 'all_train', 'all_test' (its splits: 'test', "
      "'train').")


@pytest.mark.parametrize('serialized,fault', [
    (tff_files.example_proto(pixels=np.zeros(784, np.float32)),
     'label is missing'),
    (tff_files.example_proto(pixels=np.zeros(700, np.float32), label=[1]),
     'pixels has 700 values, expected 784'),
    (tff_files.example_proto(pixels=np.zeros(784, np.int64), label=[1]),
     'pixels holds int64 values, expected float'),
    (tff_files.example_proto(pixels=np.zeros(784, np.float32), label=[100]),
     'label 100 outside 0..61'),
    (tff_files.example_proto(pixels=np.full(784, np.inf, np.float32),
                             label=[1]),
     'pixels has a non-finite value'),
    (b'\xff\xff\xff garbage', 'cannot be parsed'),
    (tff_files.example_proto(pixels=np.zeros(784, np.float32), label=[5]),
     None),
])
def test_example_fault_names_what_is_wrong_in_bulk_and_one_by_one(
    serialized, fault):
  features = emnist.features(62)
  assert tff_sqlite.example_fault(serialized, features) == fault
  good = tff_files.example_proto(pixels=np.zeros(784, np.float32), label=[2])
  assert tff_sqlite.examples_faults([good, serialized, good], features) == [
      None, fault, None]


@pytest.mark.parametrize('dataset', ['emnist', 'shakespeare', 'cifar100'])
def test_client_datasets_are_made_by_one_traced_function_adding_nothing(
    tmp_path, dataset):
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  writers = dict(emnist=tff_files.write_emnist,
                 shakespeare=tff_files.write_shakespeare,
                 cifar100=tff_files.write_cifar100)
  writers[dataset](str(tmp_path))
  loaded = tasks.get(dataset).load(data_dir=str(tmp_path), seed=0)
  traced = loaded.test
  assert isinstance(traced, tff_sqlite.TracedClientData)
  for client_id in traced.client_ids:  # The same examples, in order.
    made = traced.create_tf_dataset_for_client(client_id)
    reference = traced._data.create_tf_dataset_for_client(client_id)  # pylint: disable=protected-access
    for a, b in zip(made, reference, strict=True):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])
  functions = len(context.context().list_function_names())
  for client_id in traced.client_ids * 3:
    traced.create_tf_dataset_for_client(client_id)
  # Making them again adds no function to TF's library, which keeps every
  # function for good.
  assert len(context.context().list_function_names()) == functions
  with pytest.raises(ValueError, match='not a client'):
    traced.create_tf_dataset_for_client('nobody')
