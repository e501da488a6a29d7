"""Bad input: one line on stderr, exit code 2, earlier results untouched."""

import json
import os

from absl import flags
from absl.testing import flagsaver
import pytest

from binaries import train

FLAGS = flags.FLAGS
GOOD = dict(algorithm='per_fedavg', dataset='digits', rounds=1,
            clients_per_round=2, local_steps=1, batch_size=4,
            personalization_steps=1, eval_every=1, num_eval_clients=2)


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(['bad_input_test'])


def run_main(**settings):
  with flagsaver.flagsaver(**settings):
    train.main(['train'])


@pytest.fixture(scope='module')
def earlier_run(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp('earlier')
  run_main(**dict(GOOD, output_dir=str(output_dir)))
  return output_dir


def _snapshot(directory):
  contents = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        contents[path] = f.read()
  return contents


@pytest.mark.parametrize('overrides,expected', [
    (dict(dataset='mnist'), '--dataset'),
    (dict(hessian_mode='second_order'), '--hessian_mode'),
    (dict(algorithm='fedprox'), '--algorithm'),
    (dict(alpha=0.0), '--alpha'),
    (dict(beta=-1.0), '--beta'),
    (dict(rounds=0), '--rounds'),
    (dict(clients_per_round=51), '--clients_per_round'),
    (dict(dataset='emnist', data_dir='/nonexistent'), 'emnist_all.sqlite'),
    (dict(batch_size=4, seed=5), '--seed'),  # Changes the earlier run.
])
def test_bad_input_exits_with_one_line_and_keeps_earlier_results(
    earlier_run, capsys, overrides, expected):
  before = _snapshot(earlier_run)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    run_main(**dict(GOOD, output_dir=str(earlier_run), **overrides))
  assert exit_info.value.code == 2
  stderr = capsys.readouterr().err.strip().splitlines()
  assert len(stderr) == 1 and stderr[0].startswith('error: ')
  assert expected in stderr[0]
  assert _snapshot(earlier_run) == before


def test_corrupt_data_file_is_one_line(tmp_path, capsys):
  (tmp_path / 'emnist_all.sqlite').write_bytes(b'\x00garbage' * 64)
  with pytest.raises(SystemExit) as exit_info:
    run_main(**dict(GOOD, dataset='emnist10', data_dir=str(tmp_path),
                    output_dir=str(tmp_path / 'out')))
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert 'emnist_all.sqlite' in line
  assert not (tmp_path / 'out').exists()


def test_unwritable_output_dir_is_one_line(tmp_path, capsys):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  with pytest.raises(SystemExit):
    run_main(**dict(GOOD, output_dir=str(blocker / 'run')))
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert '--output_dir' in line and 'not a writable directory' in line
  assert blocker.read_text() == 'not a directory'


def test_changed_flags_do_not_touch_the_earlier_summary(earlier_run):
  with open(earlier_run / 'summary.json') as f:
    assert 'personalized_accuracy@1' in json.load(f)
