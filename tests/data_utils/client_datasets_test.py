"""Per-round batching, client sampling and seeds."""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import client_datasets


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


def _two_clients_one_missing_from_test():
  data = lambda ids: tff.simulation.datasets.TestClientData({
      c: collections.OrderedDict(x=np.full((5, 2), i, np.float32),
                                 y=np.arange(5, dtype=np.int32))
      for i, c in enumerate(ids)})
  return data(['a', 'b']), data(['a'])


def test_a_client_absent_from_the_test_split_gets_an_empty_test_dataset():
  train, test = _two_clients_one_missing_from_test()
  adaptation, scoring = client_datasets.personalization_datasets(
      train, test, ['a', 'b'], batch_size=2, num_adaptation_batches=2,
      test_batch_size=4, seed=0)
  assert [len(list(d)) for d in adaptation] == [2, 2]
  assert [sum(len(b['y']) for b in d) for d in scoring] == [5, 0]
  # Same type as every other client's, as one TFF computation needs.
  assert scoring[1].element_spec == scoring[0].element_spec


def test_test_examples_can_be_capped_per_client():
  train, _ = _two_clients_one_missing_from_test()
  _, scoring = client_datasets.personalization_datasets(
      train, train, ['a', 'b'], batch_size=2, num_adaptation_batches=1,
      test_batch_size=2, seed=0, max_test_examples=3)
  assert [[b['y'].numpy().tolist() for b in d] for d in scoring] == [
      [[0, 1], [2]], [[0, 1], [2]]]
