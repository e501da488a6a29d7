"""EMNIST and Shakespeare from files in the schema of TFF's SQLite files."""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import tasks
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


def _dataset_ops(dataset):
  variant = dataset._variant_tensor  # pylint: disable=protected-access
  graph = tf.compat.v1.GraphDef.FromString(
      tf.raw_ops.DatasetToGraphV2(input_dataset=variant).numpy())
  ops = {node.op for node in graph.node}
  for function in graph.library.function:
    ops |= {node.op for node in function.node_def}
  return ops


def test_a_200kb_snippet_is_cut_per_snippet_not_per_character(tmp_path):
  # A round reads up to a shuffle buffer of examples: one element per
  # character (an unbatch) made that 81,000 elements for such a client.
  text = ('to be or not to be that is the question ' * 5000)[:200_000]
  tff_files.write_clients(
      str(tmp_path / 'shakespeare.sqlite'),
      {'HAMLET': [tff_files.shakespeare_example(text)]},
      splits=('train', 'test'))
  dataset = shakespeare.load(data_dir=str(tmp_path))
  examples = dataset.train.create_tf_dataset_for_client('HAMLET')
  assert 'UnbatchDataset' not in _dataset_ops(examples)
  # The examples are the 81-id windows of BOS + text + EOS, the last padded.
  ids = ([shakespeare.SHAKESPEARE_BOS] +
         [shakespeare.SHAKESPEARE_CHARS.index(c) + 1 for c in text] +
         [shakespeare.SHAKESPEARE_EOS])
  windows = [ids[i:i + 81] for i in range(0, len(ids), 81)]
  windows[-1] = windows[-1] + [0] * (81 - len(windows[-1]))
  got = list(examples)
  assert len(got) == len(windows) == 2470
  for i in (0, 1, 1234, len(windows) - 1):
    assert got[i]['x'].numpy().tolist() == windows[i][:-1]
    assert got[i]['y'].numpy().tolist() == windows[i][1:]
