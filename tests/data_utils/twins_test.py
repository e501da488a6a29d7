"""The full-size twins: TF reads their hand-made protos as TFF's files."""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import tasks
from tff_perfed.data_utils import twins


def _tf_example(**features):
  proto = {}
  for name, values in features.items():
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == 'f':
      proto[name] = tf.train.Feature(
          float_list=tf.train.FloatList(value=values.tolist()))
    else:
      proto[name] = tf.train.Feature(
          int64_list=tf.train.Int64List(value=values.tolist()))
  return tf.train.Example(features=tf.train.Features(feature=proto))


def test_hand_encoded_examples_parse_as_tf_serializes_them():
  rng = np.random.default_rng(0)
  pixels = rng.random((28, 28), dtype=np.float32)
  image = rng.integers(256, size=(32, 32, 3))
  assert (tf.train.Example.FromString(twins.emnist_example(pixels, 61)) ==
          _tf_example(pixels=pixels, label=[61]))
  assert (tf.train.Example.FromString(twins.cifar100_example(image, 37)) ==
          _tf_example(coarse_label=[7], image=image, label=[37]))


@pytest.mark.parametrize('values', [[0], [127], [128], [255], [16383],
                                    list(range(300))])
def test_packed_varints_are_protobufs_varints(values):
  encoded = twins.packed_varints(np.array(values))
  expected = b''.join(twins._varint(v) for v in values)  # pylint: disable=protected-access
  assert encoded == expected


def test_packed_varints_refuse_what_they_cannot_encode():
  with pytest.raises(ValueError, match='2\\*\\*14'):
    twins.packed_varints(np.array([1 << 14]))


def test_exact_total_counts_are_proportional_and_sum_to_the_total():
  counts = twins.exact_total_counts(np.array([1.0, 2.0, 7.0]), 103,
                                    minimum=1)
  assert counts.sum() == 103 and counts.min() >= 1
  np.testing.assert_allclose(counts - 1, 100 * np.array([0.1, 0.2, 0.7]),
                             atol=1)


def test_emnist_writer_counts_have_the_published_totals_and_leafs_spread():
  train, test = twins.emnist_writer_counts()
  assert len(train) == len(test) == 3_400
  assert train.sum() == 671_585 and test.sum() == 77_483
  assert test.min() >= 1
  assert abs(train.std() / train.mean() - twins.EMNIST_COUNT_CV) < 0.03


@pytest.mark.parametrize('name,shape', [
    ('emnist', twins.small_shape(twins.EMNIST62, 200)),
    ('cifar100', twins.small_shape(twins.CIFAR100, 50)),
])
def test_a_small_twin_loads_and_passes_every_check(tmp_path, name, shape):
  twins.write_twin(name, str(tmp_path), shape=shape)
  task = tasks.get(name)
  dataset = task.load(data_dir=str(tmp_path), seed=0)
  checked = client_checks.check_clients(dataset, task, strict=True).dataset
  assert len(checked.client_ids) == shape.num_train_clients
  examples = sum(
      len(list(checked.train.create_tf_dataset_for_client(c))) +
      len(list(checked.test.create_tf_dataset_for_client(c)))
      for c in checked.client_ids)
  if name == 'emnist':
    assert examples == shape.num_train_examples + shape.num_test_examples
  else:  # Each train client's images are split in two; the test split unread.
    assert examples == shape.num_train_examples


def test_an_unknown_twin_lists_the_known_ones(tmp_path):
  with pytest.raises(KeyError, match='emnist, cifar100'):
    twins.write_twin('shakespeare', str(tmp_path))


