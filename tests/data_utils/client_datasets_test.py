"""Per-round batching, client sampling and seeds."""

import collections

import numpy as np
import tensorflow as tf

from data_utils import client_datasets


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
