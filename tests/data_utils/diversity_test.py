"""The diversity scenario: Dirichlet clients, exclusive set, ciphers."""

import collections
import functools
import json
import logging

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_perfed.data_utils import digits
from tff_perfed.data_utils import diversity
from tff_perfed.data_utils import federated_dataset
from tff_perfed import validation

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)


def _image_task(num_classes=NUM_CLASSES, image_shape=IMAGE_SHAPE):
  return federated_dataset.Task(
      name='tiny', summary='', load=None, build_model=None,
      num_classes=num_classes, image_shape=image_shape)


@functools.lru_cache(maxsize=None)  # Read-only; built once per shape.
def _image_dataset(num_clients=10, per_class=40, seed=0):
  """Distinct random flattened 8x8 images, `per_class` of each class.

  They are dealt round-robin to `num_clients` clients, 3 in 4 examples to
  train; returns the dataset and the pooled (x, y).
  """
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(NUM_CLASSES), per_class).astype(np.int32)
  x = rng.random((len(y), 64)).astype(np.float32)
  splits = [{}, {}]
  for c in range(num_clients):
    mine = np.arange(c, len(y), num_clients)
    for split, idx in zip(splits, (mine[mine % 4 != 0], mine[mine % 4 == 0])):
      split[f'writer_{c}'] = collections.OrderedDict(x=x[idx], y=y[idx])
  dataset = federated_dataset.FederatedDataset(
      'tiny', tff.simulation.datasets.TestClientData(splits[0]),
      tff.simulation.datasets.TestClientData(splits[1]), NUM_CLASSES)
  return dataset, (x, y)


def _arrays(client_data, client_id):
  """A client's (x, y) as arrays, or None if it has no examples."""
  examples = client_data.create_tf_dataset_for_client(client_id)
  batches = list(examples.batch(100_000).as_numpy_iterator())
  return (batches[0]['x'], batches[0]['y']) if batches else None


def _client_examples(dataset, client_id):
  """(x, y) of a client's train and test splits, concatenated."""
  parts = [a for a in (_arrays(dataset.train, client_id),
                       _arrays(dataset.test, client_id)) if a is not None]
  return (np.concatenate([p[0] for p in parts]),
          np.concatenate([p[1] for p in parts]))


def _expected_augmentation(x, flip, dy, dx):
  """The stated transform, written independently: np.flip, np.roll, zeros."""
  images = x.reshape((-1,) + IMAGE_SHAPE)
  if flip:
    images = np.flip(images, axis=2)  # Horizontal: the width axis.
  images = np.roll(images, (dy, dx), axis=(1, 2))
  if dy > 0:
    images[:, :dy] = 0
  elif dy < 0:
    images[:, dy:] = 0
  if dx > 0:
    images[:, :, :dx] = 0
  elif dx < 0:
    images[:, :, dx:] = 0
  return images.reshape(x.shape)


def _pooled_indices(dataset, description, pool):
  """Index in `pool` of every example of every client, checking each one.

  An example of a non-exclusive client must be a pooled example unchanged;
  one of an exclusive client must be the client's augmentation of a pooled
  image with label perm[original label].
  """
  pool_x, pool_y = pool
  indices = []
  for client_id, info in description['clients'].items():
    x, y = _client_examples(dataset, client_id)
    if info['exclusive']:
      candidates = _expected_augmentation(pool_x, info['flip'],
                                          *info['shift'])
      labels = np.array(info['label_permutation'])[pool_y]
    else:
      assert not info['flip'] and info['shift'] == [0, 0]
      assert info['label_permutation'] is None
      candidates, labels = pool_x, pool_y
    lookup = {row.tobytes(): i for i, row in enumerate(candidates)}
    for row, label in zip(x, y):
      i = lookup[row.tobytes()]  # KeyError: not a (transformed) pooled image.
      assert label == labels[i]
      indices.append(i)
  return np.array(indices)


@pytest.mark.parametrize('zeta, expected', [(0.0, 10), (0.25, 8), (0.5, 5),
                                            (0.7, 3), (1.0, 0)])
def test_exclusive_set_has_round_one_minus_zeta_times_c_clients(
    zeta, expected):
  dataset, _ = _image_dataset(num_clients=10)
  _, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=zeta), seed=1)
  exclusive = [c['exclusive'] for c in description['clients'].values()]
  assert len(exclusive) == 10
  assert sum(exclusive) == expected  # (1 - 0.25) * 10 = 7.5 rounds to even.


def test_lower_zeta_adds_exclusive_clients_on_the_same_partition():
  dataset, _ = _image_dataset(num_clients=10)
  runs = [diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=zeta),
      seed=4)[1] for zeta in (0.8, 0.5, 0.0)]
  sets = [{c for c, info in d['clients'].items() if info['exclusive']}
          for d in runs]
  assert sets[0] < sets[1] < sets[2]
  for description in runs[1:]:
    for client_id, info in description['clients'].items():
      assert info['class_counts'] == (
          runs[0]['clients'][client_id]['class_counts'])


def test_zeta_one_gives_clients_pooled_examples_unchanged():
  dataset, pool = _image_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=1.0), seed=2)
  assert not any(c['exclusive'] for c in description['clients'].values())
  # Raises unless every (x, y) is a pooled pair, untransformed.
  _pooled_indices(result, description, pool)


@pytest.mark.parametrize('zeta', [1.0, 0.5, 0.0])
def test_every_pooled_example_lands_in_exactly_one_client_split(zeta):
  dataset, pool = _image_dataset(num_clients=10, per_class=40)  # 400 = 10*40.
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=zeta), seed=3)
  assert result.client_ids == [f'client_{j:03d}' for j in range(10)]
  assert description['num_unused'] == 0
  indices = _pooled_indices(result, description, pool)
  np.testing.assert_array_equal(np.sort(indices), np.arange(400))
  for info in description['clients'].values():
    assert info['num_train'] + info['num_test'] == 40
    assert sum(info['class_counts']) == 40


def test_pool_remainder_is_left_out_and_clients_are_equal_sized():
  dataset, pool = _image_dataset(num_clients=7, per_class=40)  # 400 = 7*57+1.
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=0.5), seed=3)
  assert description['num_unused'] == 1
  indices = _pooled_indices(result, description, pool)
  assert len(indices) == len(set(indices)) == 399
  assert {c['num_train'] + c['num_test']
          for c in description['clients'].values()} == {57}


def test_train_and_test_are_disjoint_with_the_test_fraction_held_out():
  dataset, pool = _image_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(),
      diversity.DiversityScenario(zeta=0.5, test_fraction=0.3), seed=5)
  for client_id, info in description['clients'].items():
    train_x, _ = _arrays(result.train, client_id)
    test_x, _ = _arrays(result.test, client_id)
    assert (len(train_x), len(test_x)) == (28, 12)  # 40 * 0.3 = 12.
    assert (info['num_train'], info['num_test']) == (28, 12)
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in test_x)


def test_tiny_clients_keep_one_example_in_each_split():
  dataset, _ = _image_dataset(num_clients=10, per_class=2)  # 2 per client.
  _, description = diversity.build_diversity_dataset(
      dataset, _image_task(),
      diversity.DiversityScenario(zeta=1.0, test_fraction=0.1), seed=0)
  for info in description['clients'].values():
    assert (info['num_train'], info['num_test']) == (1, 1)


def test_relabelled_clients_have_perm_of_their_original_labels():
  dataset, pool = _image_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=0.0), seed=6)
  _pooled_indices(result, description, pool)  # Checks y == perm[original].
  for client_id, info in description['clients'].items():
    assert sorted(info['label_permutation']) == list(range(NUM_CLASSES))
    _, y = _client_examples(result, client_id)
    # class_counts are of the labels before relabelling.
    expected = np.array(info['class_counts'])[
        np.argsort(info['label_permutation'])]
    np.testing.assert_array_equal(np.bincount(y, minlength=NUM_CLASSES),
                                  expected)
  perms = {tuple(c['label_permutation'])
           for c in description['clients'].values()}
  assert len(perms) == 10  # Each exclusive client its own objective.


def test_augmentation_is_a_flip_then_a_zero_filled_shift():
  dataset, pool = _image_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _image_task(),
      diversity.DiversityScenario(zeta=0.0, max_shift=2), seed=7)
  infos = description['clients'].values()
  assert {c['flip'] for c in infos} == {True, False}
  shifts = np.array([c['shift'] for c in infos])
  assert shifts.min() >= -2 and shifts.max() <= 2 and np.any(shifts != 0)
  # Each exclusive example is the stated transform of a pooled image.
  _pooled_indices(result, description, pool)
  flipped_shifted = [c for c, info in description['clients'].items()
                     if info['flip'] and all(info['shift'])]
  assert flipped_shifted
  x, _ = _client_examples(result, flipped_shifted[0])
  dy, dx = description['clients'][flipped_shifted[0]]['shift']
  images = x.reshape((-1,) + IMAGE_SHAPE)
  # The rows and columns shifted in are zeros.
  assert not np.any(images[:, :dy] if dy > 0 else images[:, dy:])
  assert not np.any(images[:, :, :dx] if dx > 0 else images[:, :, dx:])


def test_small_concentration_gives_one_dominant_class_per_client():
  dataset, _ = _image_dataset(num_clients=10, per_class=40)
  _, description = diversity.build_diversity_dataset(
      dataset, _image_task(),
      diversity.DiversityScenario(zeta=1.0, concentration=0.05), seed=8)
  top_share = [max(c['class_counts']) / 40
               for c in description['clients'].values()]
  assert np.median(top_share) >= 0.8


def test_large_concentration_gives_near_uniform_class_histograms():
  dataset, _ = _image_dataset(num_clients=10, per_class=200)  # 200 each.
  _, description = diversity.build_diversity_dataset(
      dataset, _image_task(),
      diversity.DiversityScenario(zeta=1.0, concentration=1000.0), seed=8)
  counts = np.array([c['class_counts']
                     for c in description['clients'].values()])
  # 20 per class expected; a multinomial count's standard deviation is ~4.2.
  # The last client takes whatever the others left (sampling without
  # replacement, equal sizes), so its histogram absorbs their noise.
  assert np.abs(counts[:-1] - 20).max() <= 13
  assert np.abs(counts[:-1] - 20).mean() <= 5
  assert counts[-1].sum() == 200


def test_large_concentration_logs_that_it_is_effectively_iid(caplog):
  with caplog.at_level(logging.WARNING):
    diversity.DiversityScenario(zeta=0.5, concentration=1000.0)
  assert 'effectively IID' in caplog.text


def test_same_seed_gives_the_same_dataset_and_another_seed_another():
  dataset, _ = _image_dataset()
  build = lambda seed: diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=0.5),
      seed=seed)
  (first, first_description), (again, again_description) = build(9), build(9)
  assert first_description == again_description
  for client_id in first.client_ids:
    for a, b in zip(_client_examples(first, client_id),
                    _client_examples(again, client_id)):
      np.testing.assert_array_equal(a, b)
  other = build(10)[1]
  assert other != first_description
  assert [c['class_counts'] for c in other['clients'].values()] != [
      c['class_counts'] for c in first_description['clients'].values()]


def test_description_is_json_serializable():
  dataset, _ = _image_dataset()
  _, description = diversity.build_diversity_dataset(
      dataset, _image_task(), diversity.DiversityScenario(zeta=0.5), seed=0)
  assert json.loads(json.dumps(description)) == description
  assert set(description) == {'zeta', 'concentration', 'test_fraction',
                              'max_shift', 'num_clients', 'num_unused',
                              'clients'}


def test_digits_keep_their_example_shapes_dtypes_and_client_count():
  dataset = digits.load(use_synthetic_data=True, seed=0)
  result, description = diversity.build_diversity_dataset(
      dataset, digits.TASK, diversity.DiversityScenario(zeta=0.3), seed=0)
  assert (result.name, result.num_classes) == ('digits', 10)
  assert len(result.client_ids) == 50 == description['num_clients']
  assert result.train.element_type_structure == (
      dataset.train.element_type_structure)
  assert result.test.element_type_structure == (
      dataset.test.element_type_structure)
  # 1,800 synthetic images over 50 clients: 36 each, 7 of them held out.
  assert {(c['num_train'], c['num_test'])
          for c in description['clients'].values()} == {(29, 7)}


# ---- Character tasks ---------------------------------------------------------

VOCAB = 12
RESERVED = (0, 9, 10, 11)  # Padding, out-of-vocabulary, begin, end.


def _text_task():
  return federated_dataset.Task(
      name='chars', summary='', load=None, build_model=None,
      num_classes=VOCAB, text_reserved_tokens=RESERVED)


@functools.lru_cache(maxsize=None)
def _text_dataset(num_clients=6, seed=0):
  """Shakespeare-like snippets: y is x shifted by one, padded with 0."""
  rng = np.random.default_rng(seed)
  splits = []
  for _ in ('train', 'test'):
    clients = {}
    for c in range(num_clients):
      tokens = np.concatenate(
          [[10], rng.integers(1, VOCAB, size=12), [11], [0, 0, 0]])
      tokens = tokens.astype(np.int32)
      windows = np.stack([tokens[i:i + 9] for i in range(0, 8, 2)])
      clients[f'role_{c}'] = collections.OrderedDict(x=windows[:, :-1],
                                                     y=windows[:, 1:])
    splits.append(tff.simulation.datasets.TestClientData(clients))
  return federated_dataset.FederatedDataset('chars', splits[0], splits[1],
                                            VOCAB)


def test_cipher_fixes_reserved_tokens_and_is_a_bijection():
  _, description = diversity.build_diversity_dataset(
      _text_dataset(), _text_task(), diversity.DiversityScenario(zeta=0.0),
      seed=0)
  ciphers = [c['cipher'] for c in description['clients'].values()]
  assert len(ciphers) == 6
  for cipher in ciphers:
    assert sorted(cipher) == list(range(VOCAB))
    assert [cipher[t] for t in RESERVED] == list(RESERVED)
  assert len({tuple(c) for c in ciphers}) > 1
  assert json.loads(json.dumps(description)) == description


@pytest.mark.parametrize('zeta', [0.5, 0.0])
def test_cipher_maps_x_and_y_of_train_and_test_alike(zeta):
  dataset = _text_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _text_task(), diversity.DiversityScenario(zeta=zeta), seed=1)
  assert sum(c['exclusive'] for c in description['clients'].values()) == (
      round((1 - zeta) * 6))
  assert result.client_ids == dataset.client_ids
  for client_id, info in description['clients'].items():
    cipher = np.array(info['cipher'] if info['exclusive'] else range(VOCAB))
    for before, after in ((dataset.train, result.train),
                          (dataset.test, result.test)):
      x, y = _arrays(before, client_id)
      new_x, new_y = _arrays(after, client_id)
      assert new_x.dtype == x.dtype == np.int32
      np.testing.assert_array_equal(new_x, cipher[x])
      np.testing.assert_array_equal(new_y, cipher[y])
      # y is still x shifted by one: the same cipher on both.
      np.testing.assert_array_equal(new_x[:, 1:], new_y[:, :-1])


def test_ciphered_clients_read_in_graph_through_a_string_tensor_id():
  dataset = _text_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _text_task(), diversity.DiversityScenario(zeta=0.5), seed=2)
  expected = []
  for client_id, info in description['clients'].items():
    cipher = np.array(info['cipher'] if info['exclusive'] else range(VOCAB))
    expected.append(cipher[_arrays(dataset.train, client_id)[0]])
  # flat_map calls serializable_dataset_fn with a string tensor, in a graph.
  everyone = result.train.create_tf_dataset_from_all_clients(seed=0)
  x = next(everyone.batch(1000).as_numpy_iterator())['x']
  sort_rows = lambda a: a[np.lexsort(a.T[::-1])]
  np.testing.assert_array_equal(sort_rows(x),
                                sort_rows(np.concatenate(expected)))


def test_zeta_one_leaves_text_untouched():
  dataset = _text_dataset()
  result, description = diversity.build_diversity_dataset(
      dataset, _text_task(), diversity.DiversityScenario(zeta=1.0), seed=0)
  assert result is dataset
  assert all(c['cipher'] is None for c in description['clients'].values())


# ---- Validation --------------------------------------------------------------


@pytest.mark.parametrize('settings, name', [
    (dict(zeta=1.5), 'zeta'),
    (dict(zeta=-0.1), 'zeta'),
    (dict(zeta=0.5, concentration=0), 'concentration'),
    (dict(zeta=0.5, test_fraction=1.0), 'test_fraction'),
    (dict(zeta=0.5, max_shift=-1), 'max_shift'),
])
def test_scenario_rejects_out_of_range_settings_naming_them(settings, name):
  with pytest.raises(validation.ArgumentValueError) as error:
    diversity.DiversityScenario(**settings)
  assert error.value.argument == name
  assert f'`{name}`' in str(error.value)
  assert repr(settings[name]) in str(error.value)


def test_scenario_rejects_a_non_number_zeta():
  with pytest.raises(validation.ArgumentTypeError, match='`zeta`'):
    diversity.DiversityScenario(zeta='0.5')


def test_tasks_neither_image_nor_text_are_rejected_naming_dataset():
  task = federated_dataset.Task(name='tiny', summary='', load=None,
                                build_model=None, num_classes=NUM_CLASSES)
  dataset, _ = _image_dataset()
  with pytest.raises(validation.ArgumentValueError) as error:
    diversity.build_diversity_dataset(
        dataset, task, diversity.DiversityScenario(zeta=0.5), seed=0)
  assert error.value.argument == 'dataset'


def test_images_of_another_shape_are_rejected_naming_dataset():
  dataset, _ = _image_dataset()
  with pytest.raises(validation.ArgumentValueError, match='`dataset`'):
    diversity.build_diversity_dataset(
        dataset, _image_task(image_shape=(28, 28, 1)),
        diversity.DiversityScenario(zeta=0.5), seed=0)
