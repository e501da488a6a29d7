"""TFDS datasets become federated datasets, read from their DatasetInfo.

Tiny datasets are prepared offline in a temporary TFDS data directory with
`tfds.dataset_builders.TfDataBuilder`: scikit-learn's 8x8 digits (real
images, so training learns), colour images of 4 classes, short texts of 2
classes, and a dataset of unsupported features.
"""

import collections
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from tff_perfed.data_utils import diversity
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import partitioners
from tff_perfed.data_utils import tasks
from tff_perfed.data_utils import tfds_source
from tff_perfed.program import RunConfig
from tff_perfed.program import run_experiment

TEXTS = ['the cat saw the dog', 'The dog ran!', 'a cat, a dog; a bird',
         "it's the end"] * 30


def _prepare(data_dir, name, features, splits):
  builder = tfds.dataset_builders.TfDataBuilder(
      name=name, version='1.0.0', data_dir=str(data_dir), features=features,
      split_datasets={split: tf.data.Dataset.from_tensor_slices(examples)
                      for split, examples in splits.items()})
  builder.download_and_prepare()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('tensorflow_datasets')
  digits = sklearn_datasets.load_digits()
  pixels = (digits.images * 255 / 16).round().astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  _prepare(root, 'tiny_digits', tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(8, 8, 1)),
      'label': tfds.features.ClassLabel(num_classes=10)}), {
          'train': {'image': pixels[:1500], 'label': labels[:1500]},
          'test': {'image': pixels[1500:], 'label': labels[1500:]}})
  rng = np.random.default_rng(0)
  _prepare(root, 'tiny_colour', tfds.features.FeaturesDict({
      'picture': tfds.features.Image(shape=(6, 6, 3)),
      'kind': tfds.features.ClassLabel(num_classes=4)}), {
          'train': {'picture': rng.integers(0, 256, (200, 6, 6, 3), np.uint8),
                    'kind': np.arange(200) % 4}})
  _prepare(root, 'tiny_texts', tfds.features.FeaturesDict({
      'text': tfds.features.Text(),
      'label': tfds.features.ClassLabel(num_classes=2)}), {
          'train': {'text': TEXTS, 'label': np.arange(len(TEXTS)) % 2}})
  _prepare(root, 'two_images', tfds.features.FeaturesDict({
      'left': tfds.features.Image(shape=(4, 4, 1)),
      'right': tfds.features.Image(shape=(4, 4, 1)),
      'label': tfds.features.ClassLabel(num_classes=2)}), {
          'train': {'left': np.zeros((4, 4, 4, 1), np.uint8),
                    'right': np.zeros((4, 4, 4, 1), np.uint8),
                    'label': np.arange(4) % 2}})
  return str(root), pixels, labels


def _examples(client_data):
  xs, ys = [], []
  for client_id in client_data.client_ids:
    for example in client_data.create_tf_dataset_for_client(client_id):
      xs.append(example['x'].numpy())
      ys.append(int(example['y']))
  return np.array(xs), np.array(ys)


def test_grayscale_images_train_the_mlp_on_their_pixels_over_50_users(
    data_dir):
  root, pixels, labels = data_dir
  task = tasks.get('tfds:tiny_digits', root)
  assert (task.num_classes, task.image_shape) == (10, (8, 8, 1))
  model = task.build_model(0)
  assert model.input_spec['x'].shape.as_list() == [None, 64]
  dataset = task.load(data_dir=root, use_synthetic_data=False, seed=0)
  assert len(dataset.client_ids) == tfds_source.NUM_CLIENTS
  x, y = _examples(dataset.train)
  # Every train image dealt once, as pixels / 255 (the paper's rule may
  # leave out the remainder of a class that does not divide evenly).
  source = {(int(label), image.tobytes()) for image, label in zip(
      (pixels[:1500].reshape(1500, 64) / np.float32(255)).astype(np.float32),
      labels[:1500])}
  got = [(label, image.tobytes()) for image, label in zip(x, y)]
  assert len(set(got)) == len(got) and set(got) <= source
  assert len(got) >= 1500 - 10 * tfds_source.NUM_CLIENTS
  assert dataset.origin['num_test_examples'] == len(labels) - 1500


def test_ten_classes_are_dealt_by_the_per_fedavg_rule_in_both_splits(
    data_dir):
  root, _, _ = data_dir
  dataset = tasks.get('tfds:tiny_digits', root).load(
      data_dir=root, use_synthetic_data=False, seed=0)
  for client, client_id in enumerate(dataset.client_ids):
    held = set(partitioners.per_fedavg_classes_held(
        client, tfds_source.NUM_CLIENTS))
    for split in (dataset.train, dataset.test):
      labels = {int(e['y']) for e in
                split.create_tf_dataset_for_client(client_id)}
      assert labels and labels <= held


def test_colour_images_train_the_cnn_and_other_class_counts_are_dealt_evenly(
    data_dir):
  root, _, _ = data_dir
  task = tasks.get('tfds:tiny_colour', root)
  assert task.build_model(0).input_spec['x'].shape.as_list() == [None, 6, 6, 3]
  dataset = task.load(data_dir=root, use_synthetic_data=False, seed=1)
  sizes = [len(list(dataset.train.create_tf_dataset_for_client(c))) +
           len(list(dataset.test.create_tf_dataset_for_client(c)))
           for c in dataset.client_ids]
  assert sizes == [4] * 50  # 200 examples, no test split: 1/7 held out.
  assert sum(len(list(dataset.test.create_tf_dataset_for_client(c)))
             for c in dataset.client_ids) == 50 * round(4 / 7)


def test_texts_are_hashed_bags_of_words_as_computed_by_hand(data_dir):
  root, _, _ = data_dir
  task = tasks.get('tfds:tiny_texts', root)
  assert task.build_model(0).input_spec['x'].shape.as_list() == [
      None, tfds_source.TEXT_BUCKETS]
  bucket = lambda w: zlib.crc32(w.encode()) % tfds_source.TEXT_BUCKETS
  want = np.zeros(tfds_source.TEXT_BUCKETS, np.float32)
  for word, count in collections.Counter(
      ['the', 'cat', 'saw', 'the', 'dog']).items():
    want[bucket(word)] += count / 5
  np.testing.assert_allclose(
      tfds_source.bag_of_words([b'the cat saw the dog'])[0], want)
  x, _ = _examples(task.load(data_dir=root, use_synthetic_data=False,
                             seed=0).train)
  rows = {tuple(np.round(row, 6)) for row in
          tfds_source.bag_of_words(TEXTS[:4])}
  assert {tuple(np.round(row, 6)) for row in x} <= rows


def test_a_text_dataset_is_refused_by_the_diversity_scenario(data_dir):
  root, _, _ = data_dir
  task = tasks.get('tfds:tiny_texts', root)
  dataset = task.load(data_dir=root, use_synthetic_data=False, seed=0)
  with pytest.raises(ValueError, match='image task'):
    diversity.build_diversity_dataset(
        dataset, task, diversity.DiversityScenario(zeta=0.5), seed=0)


@pytest.mark.parametrize('name, message', [
    ('tfds:two_images', "has features {left: Image, right: Image, label: "
     "ClassLabel}; supported are one image"),
    ('tfds:mnist', 'is not prepared in'),
    ('tfds:no_such_dataset', "TFDS cannot open 'no_such_dataset'"),
    ('tfds:', 'names no TFDS dataset'),
])
def test_unusable_tfds_datasets_are_one_line_naming_why(data_dir, name,
                                                        message):
  root, _, _ = data_dir
  with pytest.raises(federated_dataset.DatasetError) as raised:
    tasks.get(name, root)
  assert message in str(raised.value) and '\n' not in str(raised.value)


def test_an_unknown_dataset_name_lists_the_tfds_form_too():
  with pytest.raises(ValueError, match='tfds:NAME'):
    RunConfig(dataset='no_such_task')


def test_a_tfds_dataset_trains_per_fedavg_and_afml_end_to_end(data_dir,
                                                             tmp_path):
  root, _, _ = data_dir
  common = dict(dataset='tfds:tiny_digits', data_dir=root, rounds=2,
                eval_every=2, clients_per_round=4, local_steps=2,
                batch_size=8, num_eval_clients=6, personalization_steps=1)
  per_fedavg = run_experiment(RunConfig(
      algorithm='per_fedavg', output_dir=str(tmp_path / 'per_fedavg'),
      **common), show_progress=False)
  afml = run_experiment(RunConfig(
      algorithm='afml', diversity_zeta=0.5,
      output_dir=str(tmp_path / 'afml'), **common), show_progress=False)
  for result in (per_fedavg, afml):
    accuracy = [v for k, v in result.summary.items()
                if 'accuracy' in k and isinstance(v, float)]
    assert accuracy and all(0 <= v <= 1 for v in accuracy)
  with open(tmp_path / 'per_fedavg' / 'data_source.json') as f:
    assert '"tfds_name": "tiny_digits/1.0.0"' in f.read()


def test_the_console_script_trains_on_a_tfds_dataset_or_exits_with_one_line(
    data_dir, tmp_path):
  root, _, _ = data_dir
  script = os.path.join(os.path.dirname(sys.executable), 'tff-perfed-train')
  common = ['--rounds=1', '--clients_per_round=2', '--local_steps=1',
            '--batch_size=8', '--num_eval_clients=2', '--eval_every=1',
            '--personalization_steps=1', f'--data_dir={root}']
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  good = subprocess.run(
      [script, '--dataset=tfds:tiny_digits', *common,
       f'--output_dir={tmp_path}/run'], cwd=tmp_path, capture_output=True,
      text=True, timeout=300, env=environment)
  assert good.returncode == 0, good.stderr[-2000:]
  assert (tmp_path / 'run' / 'summary.json').exists()
  bad = subprocess.run(
      [script, '--dataset=tfds:two_images', *common,
       f'--output_dir={tmp_path}/bad'], cwd=tmp_path, capture_output=True,
      text=True, timeout=300, env=environment)
  assert bad.returncode == 2
  lines = bad.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: dataset '
                                                 "'tfds:two_images' has")
  assert not (tmp_path / 'bad').exists()
