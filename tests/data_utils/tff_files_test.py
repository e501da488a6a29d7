"""EMNIST and Shakespeare from files in the schema of TFF's SQLite files."""

import numpy as np
import pytest

from data_utils import federated_dataset
from data_utils import shakespeare
from data_utils import tasks
import tff_files


@pytest.mark.parametrize('name,classes', [('emnist10', 10), ('emnist', 62)])
def test_emnist_loads_tff_schema_file_through_tff_loader(tmp_path, name,
                                                         classes):
  labels = tff_files.write_emnist(str(tmp_path))
  dataset = tasks.get(name).load(data_dir=str(tmp_path))
  assert dataset.num_classes == classes
  split = 'digits_only_train' if name == 'emnist10' else 'all_train'
  client = dataset.client_ids[0]
  examples = list(dataset.train.create_tf_dataset_for_client(client))
  assert [int(e['y']) for e in examples] == labels[(split, client)]
  assert examples[0]['x'].shape == (28, 28, 1)


def test_shakespeare_maps_characters_to_next_character_examples(tmp_path):
  tff_files.write_shakespeare(str(tmp_path))
  dataset = shakespeare.load(data_dir=str(tmp_path))
  example = next(iter(dataset.train.create_tf_dataset_for_client(
      dataset.client_ids[0])))
  x, y = example['x'].numpy(), example['y'].numpy()
  assert x.shape == y.shape == (shakespeare.SHAKESPEARE_SEQUENCE_LENGTH,)
  assert x[0] == shakespeare.SHAKESPEARE_BOS
  np.testing.assert_array_equal(x[1:], y[:-1])  # y is x shifted by one.
  chars = shakespeare.SHAKESPEARE_CHARS
  assert chars[x[1] - 1] in 'tbonqiH'  # First letter of a word.


def test_missing_file_names_file_directory_and_source(tmp_path):
  with pytest.raises(federated_dataset.DatasetError) as error:
    tasks.get('emnist').load(data_dir=str(tmp_path))
  message = str(error.value)
  assert 'emnist_all.sqlite' in message and str(tmp_path) in message
  assert 'tff-datasets-public' in message and '\n' not in message


def test_corrupt_file_is_reported_in_one_line(tmp_path):
  (tmp_path / 'shakespeare.sqlite').write_bytes(b'not a database' * 100)
  with pytest.raises(federated_dataset.DatasetError) as error:
    shakespeare.load(data_dir=str(tmp_path))
  assert 'shakespeare.sqlite' in str(error.value)
  assert '\n' not in str(error.value)
