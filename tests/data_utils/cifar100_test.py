"""CIFAR-100 from a file in the schema of TFF's, split within each client."""

import numpy as np
import pytest

from tff_perfed.data_utils import cifar100
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tasks
import tff_files


def _arrays(dataset):
  examples = list(dataset)
  return ([e['x'].numpy() for e in examples],
          [int(e['y']) for e in examples])


def _written_index(written_images, image):
  """Position of `image` (scaled to [0, 1]) among a client's written ones."""
  matches = [i for i, w in enumerate(written_images)
             if np.allclose(w / 255.0, image, atol=1e-6)]
  assert len(matches) == 1
  return matches[0]


def test_loads_train_clients_split_disjointly_within_each_client(tmp_path):
  written = tff_files.write_cifar100(str(tmp_path), num_clients=3,
                                     examples_per_client=10)
  dataset = tasks.get('cifar100').load(data_dir=str(tmp_path), seed=0)
  assert dataset.num_classes == 100
  # TFF's train clients only: its test split holds other clients.
  assert sorted(dataset.client_ids) == ['0', '1', '2']
  assert sorted(dataset.test.client_ids) == ['0', '1', '2']
  for client in dataset.client_ids:
    images, labels = zip(*written[('train', client)])
    train_x, train_y = _arrays(
        dataset.train.create_tf_dataset_for_client(client))
    test_x, test_y = _arrays(dataset.test.create_tf_dataset_for_client(client))
    assert (len(train_x), len(test_x)) == (8, 2)  # 20% of 10 held out.
    for x in train_x + test_x:
      assert x.shape == (32, 32, 3) and x.dtype == np.float32
      assert 0.0 <= x.min() and x.max() <= 1.0
    train_idx = [_written_index(images, x) for x in train_x]
    test_idx = [_written_index(images, x) for x in test_x]
    # Disjoint, covering all of the client's examples, in the file's order.
    assert sorted(train_idx + test_idx) == list(range(10))
    assert train_idx == sorted(train_idx) and test_idx == sorted(test_idx)
    assert train_y == [labels[i] for i in train_idx]
    assert test_y == [labels[i] for i in test_idx]


def test_split_is_a_function_of_the_seed(tmp_path):
  tff_files.write_cifar100(str(tmp_path), num_clients=2,
                           examples_per_client=20)

  def test_labels(seed):
    dataset = cifar100.load(data_dir=str(tmp_path), seed=seed)
    return [_arrays(dataset.test.create_tf_dataset_for_client(c))[1]
            for c in dataset.client_ids]

  assert test_labels(0) == test_labels(0)
  assert test_labels(0) != test_labels(1)


@pytest.mark.parametrize('n,num_test', [(1, 0), (2, 1), (3, 1), (10, 2),
                                        (100, 20)])
def test_test_share_is_a_fifth_but_leaves_both_sides_nonempty(n, num_test):
  assert int(cifar100._test_size(n)) == num_test


def test_missing_file_is_one_line_naming_file_directory_and_source(tmp_path):
  with pytest.raises(federated_dataset.DatasetError) as error:
    cifar100.load(data_dir=str(tmp_path))
  message = str(error.value)
  assert 'cifar100.sqlite' in message and str(tmp_path) in message
  assert 'tff-datasets-public' in message and '\n' not in message


def test_synthetic_data_loads_without_a_file():
  dataset = cifar100.load(use_synthetic_data=True, seed=0)
  client = dataset.client_ids[0]
  train_x, train_y = _arrays(dataset.train.create_tf_dataset_for_client(client))
  _, test_y = _arrays(dataset.test.create_tf_dataset_for_client(client))
  assert len(train_y) == 16 and len(test_y) == 4
  assert train_x[0].shape == (32, 32, 3) and train_x[0].dtype == np.float32
  assert all(0 <= y < 100 for y in train_y + test_y)
