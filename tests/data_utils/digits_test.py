"""The digits task: the Per-FedAvg paper's split over 50 users."""

import numpy as np
import pytest

from tff_perfed.data_utils import digits
from tff_perfed.data_utils import partitioners


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


def test_partition_deals_each_class_evenly_to_its_holders():
  labels = np.repeat(np.arange(10), 20)  # 20 examples of each class.
  partition = partitioners.per_fedavg_label_partition(
      labels, num_clients=10, test_fraction=0.25,
      rng=np.random.default_rng(0))
  counts = np.zeros((10, 10), int)  # counts[client, class]
  for client, (train, test) in enumerate(partition):
    np.add.at(counts[client], labels[np.concatenate([train, test])], 1)
  # With 10 users, high user j (client 5 + j) holds classes (j, 5): class 0
  # goes to the 5 low users and client 5, class 5 to clients 5..9, and no
  # user holds classes 6..9.
  np.testing.assert_array_equal(counts[:, 0], [4, 4, 3, 3, 3, 3, 0, 0, 0, 0])
  np.testing.assert_array_equal(counts[:, 5], [0] * 5 + [4] * 5)
  assert counts[:, 6:].sum() == 0
  # Test examples are a quarter of each user's share of each class.
  assert [len(test) for _, test in partition[:2]] == [5, 5]
