"""A run's directory under faults: damaged checkpoints, a second run, a
diverged round, fewer rounds, file modes and failing writes.

Every run here is a tiny digits run in this process (a few seconds); each
fault is checked against one uninterrupted run of the same settings.
"""

import asyncio
import errno
import gc
import json
import os
import re
import shutil
import subprocess
import sys

import matplotlib.figure
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import errors
from tff_perfed.program import checkpoints
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config
from tff_perfed.program import run_lock
from tff_perfed.program import training_loop

TINY = dict(dataset='digits', rounds=3, clients_per_round=2, local_steps=1,
            batch_size=4, personalization_steps=1, num_eval_clients=2,
            eval_every=3, rounds_per_checkpoint=1)


def _config(output_dir, **settings):
  return run_config.RunConfig.from_settings(
      dict(TINY, **settings, output_dir=str(output_dir)))


@pytest.fixture(scope='module')
def dataset():
  return experiment.load_dataset(_config('unused'))


def _run(config, dataset):
  return experiment.run_experiment(config, dataset=dataset,
                                   show_progress=False)


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


def _rounds_in_metrics(output_dir):
  return [row['round_num'] for row in outputs.read_csv_rows(
      os.path.join(output_dir, outputs.METRICS_FILE))]


def _losses_in_metrics(output_dir):
  return [row['train/loss'] for row in outputs.read_csv_rows(
      os.path.join(output_dir, outputs.METRICS_FILE))]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, dataset):
  """An uninterrupted run's directory (rounds 0..3, checkpoints 2 and 3)."""
  output_dir = tmp_path_factory.mktemp('uninterrupted')
  _run(_config(output_dir), dataset)
  return output_dir


def _copy(source, tmp_path):
  target = tmp_path / 'run'
  shutil.copytree(source, target)
  return target


def _checkpoint_dir(output_dir):
  return os.path.join(output_dir, outputs.CHECKPOINTS_DIR)


def _versions(output_dir):
  directory = _checkpoint_dir(output_dir)
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(name[len(checkpoints.PREFIX):]) for name in names
                if re.fullmatch(rf'{checkpoints.PREFIX}\d+', name))


def _assert_ends_like_the_uninterrupted_run(output_dir, uninterrupted):
  assert _read(os.path.join(output_dir, outputs.SUMMARY_FILE)) == _read(
      os.path.join(uninterrupted, outputs.SUMMARY_FILE))
  assert _rounds_in_metrics(output_dir) == ['0', '1', '2', '3']
  assert _losses_in_metrics(output_dir) == _losses_in_metrics(uninterrupted)


# Damaged checkpoints (issue 9, defect 2).


def _damage(path, kind):
  state_file = os.path.join(path, checkpoints.STATE_FILE)
  if kind == 'truncated':
    with open(state_file, 'r+b') as f:
      f.truncate(os.path.getsize(state_file) // 2)
  elif kind == 'garbage':
    with open(state_file, 'wb') as f:
      f.write(b'\x07not a numpy file' * 50)
  elif kind == 'missing_file':
    os.remove(state_file)
  elif kind == 'empty_directory':
    shutil.rmtree(path)
    os.mkdir(path)


def _stored_arrays(path):
  """Every array of a checkpoint (reading them all checks the file)."""
  with np.load(os.path.join(path, checkpoints.STATE_FILE),
               allow_pickle=False) as stored:
    return [stored[name] for name in stored.files]


def _small_state_manager(tmp_path):
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'),
                                          keep_total=3)
  for version in (1, 2, 3):
    asyncio.run(manager.save(
        {'weights': np.full((2,), float(version), np.float32)}, version))
  return manager


@pytest.mark.parametrize(
    'kind', ['truncated', 'garbage', 'missing_file', 'empty_directory'])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, kind, caplog):
  manager = _small_state_manager(tmp_path)
  _damage(manager.path_for_version(3), kind)
  state, version = asyncio.run(manager.load_latest(
      {'weights': np.zeros((2,), np.float32)}))
  assert version == 2
  np.testing.assert_array_equal(state['weights'], [2.0, 2.0])
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING']
  assert len(warnings) == 1 and '\n' not in warnings[0]
  assert 'program_state_3' in warnings[0] and 'round 2' in warnings[0]
  # Set aside, not deleted, and no longer in the way of the next save.
  assert asyncio.run(manager.get_versions()) == [1, 2]
  assert os.path.isdir(tmp_path / 'checkpoints' /
                       'damaged_program_state_3')


def test_no_loadable_checkpoint_says_why_in_one_line_and_changes_nothing(
    tmp_path):
  manager = _small_state_manager(tmp_path)
  for version in (1, 2, 3):
    _damage(manager.path_for_version(version), 'garbage')
  with pytest.raises(checkpoints.CheckpointsUnusableError) as error:
    asyncio.run(manager.load_latest({'weights': np.zeros((2,), np.float32)}))
  message = str(error.value)
  assert '\n' not in message and 'program_state_3' in message
  assert isinstance(error.value, errors.RunError)
  assert asyncio.run(manager.get_versions()) == [1, 2, 3]


def test_leftovers_of_interrupted_saves_are_removed_at_start(tmp_path):
  root = tmp_path / 'checkpoints'
  (root / 'program_state_4_temp1234' / 'variables').mkdir(parents=True)
  (root / 'program_state_3').mkdir()
  manager = checkpoints.CheckpointManager(str(root))
  assert manager.removed_interrupted_saves == ['program_state_4_temp1234']
  assert sorted(os.listdir(root)) == ['program_state_3']
  for name in ('.tmp_summary.json.0a1b2c3d', 'metrics.csv_temp4321',
               'accuracy.png.tmp.png', 'summary.json'):
    (tmp_path / name).write_text('x')
  assert outputs.remove_leftover_temporary_files(str(tmp_path)) == [
      '.tmp_summary.json.0a1b2c3d', 'accuracy.png.tmp.png',
      'metrics.csv_temp4321']
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'checkpoints', 'summary.json']


def test_a_checkpoint_is_the_states_arrays_and_loads_back_exactly(tmp_path):
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'))
  state = {'weights': [np.arange(6, dtype=np.float32).reshape(2, 3),
                       np.float32(0.5)], 'round': np.int64(7)}
  asyncio.run(manager.save(state, 1))
  assert os.listdir(manager.path_for_version(1)) == [checkpoints.STATE_FILE]
  loaded = asyncio.run(manager.load(1, state))
  np.testing.assert_array_equal(loaded['weights'][0], state['weights'][0])
  assert loaded['weights'][1] == np.float32(0.5)
  assert loaded['round'] == 7 and loaded['round'].dtype == np.int64


def test_a_checkpoint_of_another_structure_is_refused(tmp_path):
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'))
  asyncio.run(manager.save({'a': np.zeros(2)}, 1))
  with pytest.raises(ValueError, match='holds 1 arrays, the state has 2'):
    asyncio.run(manager.load(1, {'a': np.zeros(2), 'b': np.zeros(2)}))


def test_checkpoints_of_tffs_savedmodel_format_still_load(tmp_path):
  root = str(tmp_path / 'checkpoints')
  state = {'weights': np.full((3,), 4.0, np.float32)}
  asyncio.run(tff.program.FileProgramStateManager(
      root, prefix=checkpoints.PREFIX).save(state, 5))
  loaded, version = asyncio.run(
      checkpoints.CheckpointManager(root).load_latest(state))
  assert version == 5
  np.testing.assert_array_equal(loaded['weights'], state['weights'])


def test_a_state_numpy_cannot_store_is_saved_as_a_savedmodel(
    tmp_path, monkeypatch):
  assert checkpoints.state_arrays({'x': np.array([b'a', None])}) is None
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'))
  state = {'name': np.array([b'a', b'bc']), 'weights': np.ones(2, np.float32)}
  asyncio.run(manager.save(state, 1))  # Bytes need no pickling.
  assert list(asyncio.run(manager.load(1, state))['name']) == [b'a', b'bc']
  monkeypatch.setattr(checkpoints, 'state_arrays', lambda state: None)
  asyncio.run(manager.save(state, 2))
  assert 'saved_model.pb' in os.listdir(manager.path_for_version(2))
  np.testing.assert_array_equal(
      asyncio.run(manager.load(2, state))['weights'], state['weights'])


def test_saving_checkpoints_keeps_no_memory(tmp_path):
  # Each SavedModel save kept about 70 blocks and 120-160 KiB for good.
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'))
  state = {'weights': [np.ones((64, 64), np.float32)] * 6}
  for version in range(5):
    asyncio.run(manager.save(state, version))
  gc.collect()
  before = sys.getallocatedblocks()
  for version in range(5, 45):
    asyncio.run(manager.save(state, version))
  gc.collect()
  assert (sys.getallocatedblocks() - before) / 40 < 5


def test_run_resumed_past_a_damaged_checkpoint_ends_like_an_uninterrupted_one(
    tmp_path, dataset, uninterrupted):
  output_dir = _copy(uninterrupted, tmp_path)
  os.remove(output_dir / outputs.SUMMARY_FILE)
  _damage(os.path.join(_checkpoint_dir(output_dir), 'program_state_3'),
          'truncated')
  os.mkdir(os.path.join(_checkpoint_dir(output_dir),
                        'program_state_3_temp5555'))
  (output_dir / '.tmp_clients.csv.deadbeef').write_text('half a file')
  # metrics.csv holds round 3, which is trained again: no duplicated row.
  assert _rounds_in_metrics(output_dir) == ['0', '1', '2', '3']
  _run(_config(output_dir), dataset)
  _assert_ends_like_the_uninterrupted_run(output_dir, uninterrupted)
  assert _versions(output_dir) == [2, 3]
  assert not (output_dir / '.tmp_clients.csv.deadbeef').exists()
  assert 'program_state_3_temp5555' not in os.listdir(
      _checkpoint_dir(output_dir))


@pytest.mark.parametrize('contents', ['', 'garbage\n1,2,3\n'])
def test_an_unreadable_metrics_file_is_set_aside_and_the_run_goes_on(
    tmp_path, dataset, uninterrupted, caplog, contents):
  output_dir = _copy(uninterrupted, tmp_path)
  os.remove(output_dir / outputs.SUMMARY_FILE)
  (output_dir / outputs.METRICS_FILE).write_text(contents)
  _run(_config(output_dir), dataset)
  assert (_read(output_dir / outputs.SUMMARY_FILE) ==
          _read(uninterrupted / outputs.SUMMARY_FILE))
  assert (output_dir / 'damaged_metrics.csv').read_text() == contents
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING' and 'metrics.csv' in r.getMessage()]
  assert len(warnings) == 1 and 'set aside' in warnings[0]


def test_checkpoints_without_their_settings_file_are_refused(
    tmp_path, dataset, uninterrupted):
  output_dir = _copy(uninterrupted, tmp_path)
  os.remove(output_dir / outputs.CONFIG_FILE)
  before = sorted(os.listdir(output_dir))
  with pytest.raises(experiment.RunDirectoryError) as error:
    _run(_config(output_dir), dataset)
  message = str(error.value)
  assert '\n' not in message
  assert 'flags.json' in message and 'program_state_3' in message
  assert sorted(os.listdir(output_dir)) == before
  assert _versions(output_dir) == [2, 3]


# A second run on the same output_dir (defect 5).

_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print('locked', flush=True)
sys.stdin.read()
"""


def _must_not_be_called(*args, **kwargs):
  raise AssertionError('called')


def test_a_second_run_is_refused_at_once_naming_the_holder(tmp_path,
                                                           dataset,
                                                           monkeypatch):
  output_dir = tmp_path / 'run'
  output_dir.mkdir()
  holder = subprocess.Popen(
      [sys.executable, '-c', _HOLD_LOCK, run_lock.lock_path(str(output_dir))],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(run_lock.OutputDirLockedError) as error:
      _run(_config(output_dir), dataset)
    # Before the data is loaded and checked, which takes long on big files.
    monkeypatch.setattr(experiment, 'load_dataset', _must_not_be_called)
    with pytest.raises(run_lock.OutputDirLockedError):
      experiment.run_experiment(_config(output_dir), show_progress=False)
  finally:
    holder.stdin.close()
    holder.wait(timeout=10)
  message = str(error.value)
  assert f'process {holder.pid}' in message and '\n' not in message
  assert isinstance(error.value, errors.RunError)
  assert os.listdir(output_dir) == [run_lock.LOCK_FILE]  # Nothing written.
  # Once the holder is gone, its lock is free again.
  with run_lock.RunLock(str(output_dir)):
    pass


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
  # A killed holder leaves its pid; the kernel has released its flock.
  (tmp_path / run_lock.LOCK_FILE).write_text('999999999\n')
  with run_lock.RunLock(str(tmp_path)):
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == f'{os.getpid()}\n'
    with pytest.raises(run_lock.OutputDirLockedError, match=str(os.getpid())):
      run_lock.RunLock(str(tmp_path))  # Another holder, even in-process.


# Divergence and strict JSON (defect 7).


def test_divergence_is_no_finite_update_or_non_finite_weights():
  def metrics(num_non_finite, update_non_finite=0):
    return {'client_work': {'num_non_finite_updates': num_non_finite,
                            'train': {'loss': 0.0, 'num_examples': 0}},
            'finalizer': {'update_non_finite': update_non_finite}}
  finite = [np.ones((2, 2), np.float32)]
  reason = training_loop.divergence_reason
  assert reason(metrics(1), 2, finite) is None  # One client is left.
  assert 'all 2 clients' in reason(metrics(2), 2, finite)
  assert 'aggregated update' in reason(metrics(0, 1), 2, finite)
  assert 'weights' in reason(metrics(0), 2,
                             [np.array([1.0, np.inf], np.float32)])
  # TFF's FedAvg counts no non-finite updates but drops their examples.
  fedavg = {'client_work': {'train': {'loss': 0.0, 'num_examples': 0}}}
  assert 'all 3 clients' in reason(fedavg, 3, finite)
  fedavg['client_work']['train']['num_examples'] = 8
  assert reason(fedavg, 3, finite) is None


@pytest.mark.parametrize('algorithm', ['per_fedavg', 'fedavg'])
def test_a_diverged_run_stops_at_its_round_and_keeps_the_last_finite_state(
    tmp_path, dataset, algorithm):
  output_dir = tmp_path / 'run'
  step = {'per_fedavg': 'per_fedavg.outer_learning_rate',
          'fedavg': 'fedavg.client_learning_rate'}[algorithm]
  config = _config(output_dir, algorithm=algorithm, rounds=5,
                   **{step: 1e10})
  with pytest.raises(training_loop.TrainingDivergedError) as error:
    _run(config, dataset)
  diverged = error.value.round_num
  assert 1 <= diverged <= 5
  message = str(error.value)
  assert f'training diverged at round {diverged}' in message
  assert '\n' not in message and isinstance(error.value, errors.RunError)
  versions = _versions(output_dir)
  assert versions and max(versions) == diverged - 1
  assert error.value.last_saved_round == diverged - 1
  # Nothing of the diverged round was released, and the kept state is
  # finite.
  assert _rounds_in_metrics(output_dir)[-1] == str(diverged - 1)
  saved = _stored_arrays(os.path.join(_checkpoint_dir(output_dir),
                                      f'program_state_{diverged - 1}'))
  assert all(np.all(np.isfinite(leaf)) for leaf in saved
             if np.issubdtype(leaf.dtype, np.floating))


def test_json_is_strict_with_non_finite_numbers_written_as_null(tmp_path):
  path = str(tmp_path / 'summary.json')
  outputs.write_json(path, {'loss': float('nan'), 'inf': np.float32(np.inf),
                            'ok': np.float64(0.5), 'list': (1, -np.inf)})

  def refuse(token):
    raise ValueError(f'non-standard JSON token {token}')

  with open(path) as f:
    assert json.load(f, parse_constant=refuse) == {
        'loss': None, 'inf': None, 'ok': 0.5, 'list': [1, None]}


# File modes and fewer rounds (defect 8).


@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o077, 0o600),
                                        (0o002, 0o664)])
def test_files_are_created_with_the_umask_applied_to_0666(tmp_path, umask,
                                                          mode):
  previous = os.umask(umask)
  try:
    outputs.write_json(str(tmp_path / 'a.json'), {})
    outputs.write_clients_csv(str(tmp_path / 'c.csv'), ['x'], [{'m': 1.0}])
  finally:
    os.umask(previous)
  for name in ('a.json', 'c.csv'):
    assert os.stat(tmp_path / name).st_mode & 0o777 == mode


def test_resuming_with_fewer_rounds_says_so_and_relabels_no_checkpoint(
    tmp_path, dataset, uninterrupted, caplog):
  output_dir = _copy(uninterrupted, tmp_path)
  # Only round 3 saved: a save labelled 2 would hold round 3's state.
  shutil.rmtree(os.path.join(_checkpoint_dir(output_dir), 'program_state_2'))
  result = _run(_config(output_dir, rounds=2), dataset)
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING' and 'rounds' in r.getMessage()]
  assert len(warnings) == 1 and 'round 3' in warnings[0]
  assert '\n' not in warnings[0]
  assert _versions(output_dir) == [3]
  with open(os.path.join(uninterrupted, outputs.SUMMARY_FILE)) as f:
    assert result.summary == pytest.approx(json.load(f))  # Round 3's model.
  assert os.stat(output_dir / outputs.SUMMARY_FILE).st_mode & 0o777 == (
      0o666 & ~_umask())


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


# Failing writes (full disk, I/O error, read-only file system).


def _fail_release_at_round(manager_class, failing_round, code):
  original = manager_class.release

  async def release(self, value, key):
    if key == failing_round:
      raise OSError(code, os.strerror(code))
    await original(self, value, key)

  return manager_class, 'release', release


def _fail_replace_onto(basename, code):
  original = os.replace

  def replace(source, destination, *args, **kwargs):
    if os.path.basename(destination) == basename:
      raise OSError(code, os.strerror(code), destination)
    return original(source, destination, *args, **kwargs)

  return os, 'replace', replace


def _fail_checkpoint_save(round_num, code):
  original = checkpoints.write_state_file

  def write_state_file(path, arrays):
    if os.path.basename(os.path.dirname(path)).startswith(
        f'program_state_{round_num}_temp'):
      with open(path, 'wb') as f:
        f.write(b'half')  # A save cut short leaves part of its file.
      raise OSError(code, os.strerror(code))
    return original(path, arrays)

  return checkpoints, 'write_state_file', write_state_file


def _fail_savefig(code):
  def savefig(self, *args, **kwargs):
    raise OSError(code, os.strerror(code))

  return matplotlib.figure.Figure, 'savefig', savefig


WRITE_FAULTS = {
    'metrics.csv': (lambda: _fail_release_at_round(
        tff.program.CSVFileReleaseManager, 2, errno.ENOSPC), 'metrics.csv'),
    'tensorboard': (lambda: _fail_release_at_round(
        tff.program.TensorBoardReleaseManager, 2, errno.EIO), 'tensorboard'),
    'checkpoint': (lambda: _fail_checkpoint_save(2, errno.ENOSPC),
                   'program_state_2'),
    'plot': (lambda: _fail_savefig(errno.EROFS), 'accuracy.png'),
    'summary': (lambda: _fail_replace_onto('summary.json', errno.ENOSPC),
                'summary.json'),
    'clients.csv': (lambda: _fail_replace_onto('clients.csv', errno.EIO),
                    'clients.csv'),
    'flags.json': (lambda: _fail_replace_onto('flags.json', errno.ENOSPC),
                   'flags.json'),
}


@pytest.mark.parametrize('write', list(WRITE_FAULTS))
def test_a_failed_write_stops_the_run_in_one_line_and_the_next_start_resumes(
    tmp_path, dataset, uninterrupted, monkeypatch, write):
  make_fault, named = WRITE_FAULTS[write]
  output_dir = tmp_path / 'run'
  target, attribute, replacement = make_fault()
  with monkeypatch.context() as patch:
    patch.setattr(target, attribute, replacement)
    with pytest.raises(outputs.OutputWriteError) as error:
      _run(_config(output_dir), dataset)
  message = str(error.value)
  assert message.startswith('cannot write ') and named in message
  assert '\n' not in message and isinstance(error.value, errors.RunError)
  assert any(os.strerror(code) in message
             for code in (errno.ENOSPC, errno.EIO, errno.EROFS))
  # The newest checkpoint left is complete, and no partial one remains.
  versions = _versions(output_dir)
  if versions:
    _stored_arrays(os.path.join(_checkpoint_dir(output_dir),
                                f'program_state_{max(versions)}'))
    assert not [name for name in os.listdir(_checkpoint_dir(output_dir))
                if '_temp' in name]
  assert not [name for name in os.listdir(output_dir)
              if name.startswith('.tmp_') or name.endswith('.tmp.png')]
  _run(_config(output_dir), dataset)
  _assert_ends_like_the_uninterrupted_run(output_dir, uninterrupted)
