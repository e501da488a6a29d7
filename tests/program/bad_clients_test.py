"""A run over data with a bad client: dropped and listed, or refused."""

import json
import os

import numpy as np
import pytest

from tff_perfed.data_utils import federated_dataset
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config
import tff_files

_RNG = np.random.default_rng(0)


def _emnist_dir(tmp_path):
  """emnist_all.sqlite with 3 good writers and one with a label of 100."""
  good = lambda: [tff_files.emnist_example(_RNG) for _ in range(6)]
  bad = [tff_files.example_proto(
      pixels=_RNG.random(784).astype(np.float32), label=[100])]
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  tff_files.write_clients(
      str(data_dir / 'emnist_all.sqlite'),
      {'w0': good(), "o'brien": bad, 'w1': good(), 'w2': good()})
  return str(data_dir)


def _config(tmp_path, **settings):
  return run_config.RunConfig(
      algorithm='fedavg', dataset='emnist', data_dir=_emnist_dir(tmp_path),
      rounds=1, clients_per_round=2, local_steps=1, batch_size=4,
      personalization_steps=1, eval_every=1,
      output_dir=str(tmp_path / 'run'), **settings)


def test_a_bad_client_is_dropped_listed_and_the_rest_train(tmp_path):
  config = _config(tmp_path)
  result = experiment.run_experiment(config, show_progress=False)
  with open(os.path.join(config.output_dir,
                         outputs.DROPPED_CLIENTS_FILE)) as f:
    assert json.load(f) == {"o'brien": 'train example 0: label 100 outside '
                                       '0..61'}
  assert result.client_ids == ['w0', 'w1', 'w2']
  assert result.summary['num_evaluated_clients'] == 3


def test_strict_data_refuses_before_the_output_dir_is_touched(tmp_path):
  config = _config(tmp_path, strict_data=True)
  with pytest.raises(federated_dataset.DatasetError,
                     match='"o\'brien".*label 100') as raised:
    experiment.run_experiment(config, show_progress=False)
  assert '\n' not in str(raised.value)
  assert not os.path.exists(config.output_dir)
