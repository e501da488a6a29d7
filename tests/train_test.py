"""End-to-end runs of binaries/train.py: every algorithm, dataset and mode."""

import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

from binaries import train
import tff_files

FLAGS = flags.FLAGS
FAST = dict(rounds=2, clients_per_round=2, local_steps=1, batch_size=4,
            personalization_steps=2, eval_every=1, num_eval_clients=3)


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(['train_test'])


def run_main(output_dir, **overrides):
  settings = dict(FAST, output_dir=str(output_dir), **overrides)
  with flagsaver.flagsaver(**settings):
    train.main(['train'])
  with open(os.path.join(output_dir, 'summary.json')) as f:
    return json.load(f)


def check_outputs(output_dir, summary, steps=2):
  for k in range(steps + 1):
    assert 0.0 <= summary[f'personalized_accuracy@{k}'] <= 1.0
    assert np.isfinite(summary[f'personalized_loss@{k}'])
    assert (summary[f'personalized_accuracy@{k}/worst'] <=
            summary[f'personalized_accuracy@{k}/p10'] <=
            summary[f'personalized_accuracy@{k}'] + 1e-9)
  for name in ('metrics.csv', 'clients.csv', 'accuracy.png', 'flags.json'):
    assert os.path.getsize(os.path.join(output_dir, name)) > 0
  assert os.listdir(os.path.join(output_dir, 'tensorboard'))
  assert os.listdir(os.path.join(output_dir, 'checkpoints'))


@pytest.mark.parametrize('dataset', ['digits', 'emnist', 'emnist10',
                                     'shakespeare'])
@pytest.mark.parametrize('algorithm', ['fedavg', 'per_fedavg'])
def test_every_algorithm_trains_on_every_synthetic_dataset(
    tmp_path, algorithm, dataset):
  summary = run_main(tmp_path, algorithm=algorithm, dataset=dataset,
                     use_synthetic_data=True)
  check_outputs(tmp_path, summary)


@pytest.mark.parametrize('mode', ['first_order', 'hessian_free', 'exact'])
def test_every_hessian_mode_trains_on_the_embedded_digits(tmp_path, mode):
  summary = run_main(tmp_path, algorithm='per_fedavg', hessian_mode=mode,
                     batch_size_prime=3, batch_size_double_prime=5)
  check_outputs(tmp_path, summary)


@pytest.mark.parametrize('dataset', ['emnist', 'emnist10', 'shakespeare'])
def test_trains_on_tff_schema_files_in_data_dir(tmp_path, dataset):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  tff_files.write_emnist(str(data_dir))
  tff_files.write_shakespeare(str(data_dir))
  summary = run_main(tmp_path / 'run', algorithm='per_fedavg',
                     dataset=dataset, data_dir=str(data_dir))
  check_outputs(tmp_path / 'run', summary)


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
  settings = dict(algorithm='per_fedavg', rounds=4, eval_every=2)
  uninterrupted = run_main(tmp_path / 'a', **settings)
  run_main(tmp_path / 'b', **dict(settings, rounds=2))
  resumed = run_main(tmp_path / 'b', **settings)
  assert resumed.keys() == uninterrupted.keys()
  for name in resumed:
    assert resumed[name] == pytest.approx(uninterrupted[name], abs=1e-5)
  with open(tmp_path / 'b' / 'metrics.csv') as f:
    assert [line.split(',')[0] for line in f][1:] == ['1', '2', '3', '4']
