"""Federated data: the paper's digits split, TFF-schema files, batching."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from data_utils import client_datasets
from data_utils import digits
from data_utils import federated_data
import tff_files


def test_digits_split_follows_the_papers_rule():
  train, test = digits.partitioned_digits(num_clients=50, seed=3)
  pairs = set()
  for index, client in enumerate(sorted(train)):
    labels = set(train[client][1]) | set(test[client][1])
    if index < 25:
      assert labels == {0, 1, 2, 3, 4}
    else:
      low, high = sorted(labels)
      assert low < 5 <= high
      pairs.add((low, high))
  assert len(pairs) == 25  # Every (low, high) combination exactly once.


def test_digits_split_uses_every_image_once_with_matching_test_labels():
  train, test = digits.partitioned_digits(num_clients=50, seed=3)
  images = np.concatenate([x for x, _ in train.values()] +
                          [x for x, _ in test.values()])
  assert len(images) == 1797
  assert len(np.unique(images, axis=0)) == len(
      np.unique(digits.sklearn_datasets.load_digits().data, axis=0))
  for client in train:
    assert set(test[client][1]) == set(train[client][1])


def test_digits_split_rejects_an_odd_number_of_users():
  with pytest.raises(ValueError, match='num_clients'):
    digits.partitioned_digits(num_clients=7)


def test_cycled_batches_cycle_through_d_d_prime_d_double_prime_sizes():
  examples = tf.data.Dataset.range(10)
  batches = list(
      client_datasets.cycled_batches(
          examples, batch_sizes=[2, 3, 4], num_batches=7, seed=1))
  assert [len(b) for b in batches] == [2, 3, 4, 2, 3, 4, 2]
  # Repeated with reshuffling: each pass over 10 examples is a permutation.
  flat = np.concatenate(batches)
  assert sorted(flat[:10]) == list(range(10))


def test_cycled_batches_are_reproducible_from_the_seed():
  examples = tf.data.Dataset.range(50)
  draw = lambda seed: np.concatenate(list(client_datasets.cycled_batches(
      examples, batch_sizes=[5], num_batches=4, seed=seed)))
  np.testing.assert_array_equal(draw(3), draw(3))
  assert not np.array_equal(draw(3), draw(4))


def test_client_sampling_is_uniform_without_replacement_and_seeded():
  ids = [f'c{i}' for i in range(20)]
  first = client_datasets.sample_clients(ids, 8, round_num=5, seed=1)
  assert len(set(first)) == 8
  assert first == client_datasets.sample_clients(ids, 8, round_num=5, seed=1)
  counts = collections.Counter()
  for r in range(2000):
    counts.update(client_datasets.sample_clients(ids, 5, round_num=r, seed=0))
  # Each client is picked with probability 5/20 per round.
  assert all(abs(c / 2000 - 0.25) < 0.04 for c in counts.values())


@pytest.mark.parametrize('name,classes', [('emnist10', 10), ('emnist', 62)])
def test_emnist_loads_tff_schema_file_through_tff_loader(tmp_path, name,
                                                         classes):
  labels = tff_files.write_emnist(str(tmp_path))
  dataset = federated_data.load_federated_dataset(name, data_dir=str(tmp_path))
  assert dataset.num_classes == classes
  split = 'digits_only_train' if name == 'emnist10' else 'all_train'
  client = dataset.client_ids[0]
  examples = list(dataset.train.create_tf_dataset_for_client(client))
  assert [int(e['y']) for e in examples] == labels[(split, client)]
  assert examples[0]['x'].shape == (28, 28, 1)


def test_shakespeare_maps_characters_to_next_character_examples(tmp_path):
  tff_files.write_shakespeare(str(tmp_path))
  dataset = federated_data.load_federated_dataset(
      'shakespeare', data_dir=str(tmp_path))
  example = next(iter(dataset.train.create_tf_dataset_for_client(
      dataset.client_ids[0])))
  x, y = example['x'].numpy(), example['y'].numpy()
  assert x.shape == y.shape == (federated_data.SHAKESPEARE_SEQUENCE_LENGTH,)
  assert x[0] == federated_data.SHAKESPEARE_BOS
  np.testing.assert_array_equal(x[1:], y[:-1])  # y is x shifted by one.
  chars = federated_data.SHAKESPEARE_CHARS
  assert chars[x[1] - 1] in 'tbonqiH'  # First letter of a word.


def test_missing_file_names_file_directory_and_source(tmp_path):
  with pytest.raises(federated_data.DatasetError) as error:
    federated_data.load_federated_dataset('emnist', data_dir=str(tmp_path))
  message = str(error.value)
  assert 'emnist_all.sqlite' in message and str(tmp_path) in message
  assert 'tff-datasets-public' in message and '\n' not in message


def test_corrupt_file_is_reported_in_one_line(tmp_path):
  (tmp_path / 'shakespeare.sqlite').write_bytes(b'not a database' * 100)
  with pytest.raises(federated_data.DatasetError) as error:
    federated_data.load_federated_dataset('shakespeare',
                                          data_dir=str(tmp_path))
  assert 'shakespeare.sqlite' in str(error.value)
  assert '\n' not in str(error.value)


def test_unknown_dataset_is_rejected():
  with pytest.raises(federated_data.DatasetError, match='mnist'):
    federated_data.load_federated_dataset('mnist')
