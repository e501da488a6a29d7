"""Per-client checks: bad clients are dropped with a reason, or refused."""

import collections
import logging

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tasks
import tff_files

_RNG = np.random.default_rng(0)
_PIXELS = _RNG.random(784).astype(np.float32)


def _good(n=3, label=None):
  return [tff_files.emnist_example(_RNG, label=label) for _ in range(n)]


# Each bad client's examples and the reason it is dropped with.
_BAD_EMNIST_CLIENTS = {
    'missing_label': (
        _good(2) + [tff_files.example_proto(pixels=_PIXELS)],
        'train example 2: label is missing'),
    '700_pixels': (
        [tff_files.example_proto(pixels=_PIXELS[:700], label=[1])],
        'train example 0: pixels has 700 values, expected 784'),
    'int64_pixels': (
        _good(1) + [tff_files.example_proto(pixels=np.arange(784),
                                            label=[1])],
        'train example 1: pixels holds int64 values, expected float'),
    'label_100': (
        [tff_files.example_proto(pixels=_PIXELS, label=[100])],
        'train example 0: label 100 outside 0..61'),
    'unparseable': (
        _good(3) + [b'\xff\xfe not a proto'],
        'train example 3 cannot be parsed'),
    'nan_pixel': (
        [tff_files.example_proto(
            pixels=np.where(np.arange(784) == 5, np.nan, _PIXELS)
            .astype(np.float32), label=[1])],
        'train example 0: pixels has a non-finite value'),
}


def _emnist(tmp_path, train, test=None):
  tff_files.write_clients(str(tmp_path / 'emnist_all.sqlite'), train, test)
  return tasks.get('emnist').load(data_dir=str(tmp_path))


@pytest.mark.parametrize('bad_client', sorted(_BAD_EMNIST_CLIENTS))
def test_each_bad_emnist_client_is_dropped_with_its_reason(
    tmp_path, caplog, bad_client):
  examples, reason = _BAD_EMNIST_CLIENTS[bad_client]
  train = {'good_a': _good(), bad_client: examples, 'good_b': _good()}
  dataset = _emnist(tmp_path, train)
  with caplog.at_level(logging.WARNING):
    checked = client_checks.check_clients(dataset, tasks.get('emnist'),
                                          strict=False)
  assert checked.dropped == {bad_client: reason}
  assert checked.dataset.dropped == {bad_client: reason}
  assert checked.dataset.client_ids == ['good_a', 'good_b']
  assert checked.dataset.test.client_ids == ['good_a', 'good_b']
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert warnings == [f'dropping client {bad_client!r} of emnist: {reason}']
  # The good clients keep exactly their examples.
  for client in ('good_a', 'good_b'):
    assert ([int(e['y']) for e in
             checked.dataset.train.create_tf_dataset_for_client(client)] ==
            [int(e['y']) for e in
             dataset.train.create_tf_dataset_for_client(client)])


def test_a_bad_test_split_drops_the_client(tmp_path):
  train = {'a': _good(), 'b': _good()}
  test = {'a': _good(), 'b': _good(1) + [b'']}
  checked = client_checks.check_clients(
      _emnist(tmp_path, train, test), tasks.get('emnist'), strict=False)
  assert checked.dropped == {'b': 'test example 1: label is missing'}


def test_a_client_absent_from_the_test_split_trains_with_no_test_examples(
    tmp_path):
  train = {'a': _good(), 'b': _good(label=4)}
  dataset = _emnist(tmp_path, train, {'a': _good()})
  checked = client_checks.check_clients(dataset, tasks.get('emnist'),
                                        strict=True)
  assert checked.dropped == {}
  assert checked.dataset.client_ids == ['a', 'b']
  train_batches, test_batches = client_datasets.personalization_datasets(
      checked.dataset.train, checked.dataset.test, ['a', 'b'], batch_size=2,
      num_adaptation_batches=1, test_batch_size=10, seed=0)
  assert [len(list(t)) for t in test_batches] == [1, 0]
  assert train_batches[1].element_spec == train_batches[0].element_spec
  assert test_batches[1].element_spec == test_batches[0].element_spec
  (b_batch,) = list(train_batches[1])
  assert b_batch['y'].numpy().tolist() == [4, 4]


def test_strict_refuses_in_one_line_naming_first_bad_client_and_count(
    tmp_path):
  train = {'a': _good(), 'b': _BAD_EMNIST_CLIENTS['label_100'][0],
           'c': _BAD_EMNIST_CLIENTS['700_pixels'][0]}
  with pytest.raises(federated_dataset.DatasetError) as error:
    client_checks.check_clients(_emnist(tmp_path, train),
                                tasks.get('emnist'), strict=True)
  assert str(error.value) == (
      "2 of the 3 clients of emnist have unusable data; the first, 'b': "
      'train example 0: label 100 outside 0..61 (without --strict_data they '
      'are dropped).')


def test_every_client_bad_is_one_error_line(tmp_path):
  train = {'b': _BAD_EMNIST_CLIENTS['label_100'][0]}
  with pytest.raises(federated_dataset.DatasetError) as error:
    client_checks.check_clients(_emnist(tmp_path, train),
                                tasks.get('emnist'), strict=False)
  assert 'no client is left to train' in str(error.value)
  assert '\n' not in str(error.value)


def test_emnist10_labels_must_be_digits(tmp_path):
  train = {'a': _good(label=3), 'b': _good(label=12)}
  tff_files.write_clients(str(tmp_path / 'emnist_all.sqlite'), train,
                          splits=tff_files.EMNIST10_SPLITS)
  dataset = tasks.get('emnist10').load(data_dir=str(tmp_path))
  checked = client_checks.check_clients(dataset, tasks.get('emnist10'),
                                        strict=False)
  assert checked.dropped == {'b': 'train example 0: label 12 outside 0..9'}


@pytest.mark.parametrize('snippet,reason', [
    ({}, 'train example 0: snippets is missing'),
    ({'snippets': [1.5]},
     'train example 0: snippets holds float values, expected bytes'),
])
def test_shakespeare_snippet_missing_or_float_drops_the_client(
    tmp_path, snippet, reason):
  train = {'good': [tff_files.shakespeare_example('to be or not')],
           'bad': [tff_files.example_proto(**snippet)]}
  tff_files.write_clients(str(tmp_path / 'shakespeare.sqlite'), train,
                          splits=('train', 'test'))
  dataset = tasks.get('shakespeare').load(data_dir=str(tmp_path))
  checked = client_checks.check_clients(dataset, tasks.get('shakespeare'),
                                        strict=False)
  assert checked.dropped == {'bad': reason}


def test_cifar100_label_and_pixel_ranges(tmp_path):
  image = np.zeros((32, 32, 3), np.int64)
  cifar = lambda image, label: tff_files.example_proto(
      coarse_label=[0], image=image, label=[label])
  train = {'good': [cifar(image, 3)] * 5,
           'label': [cifar(image, 3)] * 4 + [cifar(image, 100)],
           'pixel': [cifar(np.full((32, 32, 3), 300), 3)] * 5}
  tff_files.write_clients(str(tmp_path / 'cifar100.sqlite'), train,
                          splits=('train', 'test'))
  dataset = tasks.get('cifar100').load(data_dir=str(tmp_path))
  checked = client_checks.check_clients(dataset, tasks.get('cifar100'),
                                        strict=False)
  assert checked.dropped == {
      'label': 'train example 4: label 100 outside 0..99',
      'pixel': 'train example 0: image 300 outside 0..255'}


def _in_memory(clients, num_classes=10):
  data = tff.simulation.datasets.TestClientData(clients)
  return federated_dataset.FederatedDataset('digits', data, data, num_classes)


def test_in_memory_clients_are_checked_on_the_examples_they_yield():
  rng = np.random.default_rng(1)
  good = lambda: collections.OrderedDict(
      x=rng.random((4, 64)).astype(np.float32),
      y=np.array([0, 1, 2, 9], np.int32))
  clients = {'good': good(), 'nan': good(), 'label': good(),
             'negative': good()}
  clients['nan']['x'][2, 7] = np.nan
  clients['label']['y'][1] = 10
  clients['negative']['y'][0] = -1
  clients['narrow'] = collections.OrderedDict(
      x=np.zeros((2, 63), np.float32), y=np.zeros(2, np.int32))
  clients['float_labels'] = collections.OrderedDict(
      x=np.zeros((2, 64), np.float32), y=np.zeros(2, np.float32))
  checked = client_checks.check_clients(_in_memory(clients),
                                        tasks.get('digits'), strict=False)
  assert checked.dropped == {
      'nan': 'train x has 1 non-finite values',
      'label': 'train label 10 outside 0..9',
      'negative': 'train label -1 outside 0..9',
      'narrow': 'train x has 63 values, expected 64',
      'float_labels': 'train y is float32, expected int32',
  }
  assert checked.dataset.client_ids == ['good']


@pytest.mark.parametrize('name', tasks.names())
def test_every_tasks_synthetic_data_passes_unchanged(name):
  task = tasks.get(name)
  dataset = task.load(use_synthetic_data=True, seed=0)
  checked = client_checks.check_clients(dataset, task, strict=True)
  assert checked.dropped == {} and checked.dataset is dataset


def test_digits_pass_unchanged():
  dataset = tasks.get('digits').load(seed=0)
  checked = client_checks.check_clients(dataset, tasks.get('digits'),
                                        strict=True)
  assert checked.dropped == {} and checked.dataset is dataset
