"""Interrupts at any moment: quiet, prompt, no worker left, resumable.

`python -m tff_perfed.binaries.train` runs in a subprocess with piped output; a signal
arrives at a chosen point: while TF is imported, during an evaluation,
during a checkpoint, at exit (`signal_injection/sitecustomize.py` sends it
from inside the run, so that the point is hit every time); mid-round
signals are `tests/runtime/no_orphan_test.py`'s. Each run must
end within seconds of the signal with status 128 + signal, its last stderr
line the interrupted message (no traceback, no gRPC fork warning of a late
worker), and leave no `worker_binary`: this test process is made a child
subreaper, so that a worker orphaned by the binary becomes our child and is
seen. The same command again then ends with a `summary.json` byte-identical
to an uninterrupted run's; for Ditto, whose clients keep state, a kill -9
mid-round also ends with the same metrics, server state and client-state
files.
"""

import csv
import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import time

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import train
import processes

ROOT = pathlib.Path(__file__).resolve().parents[2]
INJECTION = pathlib.Path(__file__).resolve().parent / 'signal_injection'
TINY = ['--dataset=digits', '--rounds=3', '--clients_per_round=2',
        '--local_steps=1', '--batch_size=4', '--personalization_steps=1',
        '--num_eval_clients=2', '--eval_every=1', '--rounds_per_checkpoint=1']
# The binary must be gone this long after the signal (it takes < 1 s).
PROMPT_SECONDS = 10
# Points in a run (sitecustomize's `module:attribute:call:delay`).
DURING_FIRST_EVALUATION = ('tff_perfed.evaluation.personalization:'
                           'build_personalization_eval():1:0.3')
DURING_CHECKPOINT = 'tff_perfed.program.checkpoints:write_state_file:2:0'
AT_EXIT = 'tff_perfed.runtime:shutdown_workers:1:0'

_PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
  """Orphaned descendants become this process's children while it runs."""
  libc = ctypes.CDLL(None, use_errno=True)
  before = set(processes.children_named(os.getpid()))
  assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
  yield before
  libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
  for pid in set(processes.children_named(os.getpid())) - before:
    try:  # Orphans the test found: kill and reap them (it has failed).
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
      pass


def left_workers(known):
  """Live worker_binary children of this process other than `known`."""
  left = []
  for pid in set(processes.children_named(os.getpid())) - known:
    if processes.alive(pid):
      left.append(pid)
    else:
      try:
        os.waitpid(pid, os.WNOHANG)  # A killed orphan: reap the zombie.
      except ChildProcessError:
        pass
  return left


def run_binary(tmp_path, output_dir, *args, signal_at=None, runtime='auto',
               timeout=300):
  """Runs the binary to its end; `(returncode, stderr, seconds after signal)`.

  Args:
    tmp_path: For the signal log.
    output_dir: The run's --output_dir.
    *args: More flags.
    signal_at: `(point, signal)`: sitecustomize's spec without the signal
      name, and the signal; None runs uninterrupted.
    runtime: --runtime.
    timeout: Seconds the whole run may take (a hang fails).
  """
  # Every run also holds an object whose finalizer fails if interpreter
  # teardown runs it: a finished run must end without teardown too.
  env = dict(os.environ, PYTHONPATH=f'{INJECTION}{os.pathsep}{ROOT}',
             TFF_PERFED_TEST_FAIL_AT_TEARDOWN='1')
  log = tmp_path / 'signal_times'
  if signal_at:
    point, sig = signal_at
    env.update(TFF_PERFED_TEST_SIGNAL=f'{point}:{signal.Signals(sig).name}',
               TFF_PERFED_TEST_SIGNAL_LOG=str(log))
    log.unlink(missing_ok=True)
  process = subprocess.Popen(
      [sys.executable, '-m', 'tff_perfed.binaries.train', *TINY, *args,
       f'--output_dir={output_dir}', f'--runtime={runtime}'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
  # Returns only once every holder of the pipes (a worker too) closed them.
  _, stderr = process.communicate(timeout=timeout)
  ended = time.time()
  delay = None
  if signal_at:
    assert log.exists(), f'the signal was never sent: {stderr.decode()}'
    delay = ended - float(log.read_text().split()[0])
  return process.returncode, stderr.decode(), delay


def assert_interrupted_quietly(returncode, stderr, delay, sig, known):
  lines = stderr.strip().splitlines()
  assert 'Traceback' not in stderr, stderr
  assert returncode == 128 + sig, stderr
  assert lines and lines[-1] == train.INTERRUPTED_MESSAGE, stderr
  assert delay < PROMPT_SECONDS
  assert not left_workers(known)


@pytest.fixture
def uninterrupted_summary(tmp_path):
  """summary.json of the uninterrupted run, computed in this process."""
  output_dir = tmp_path / 'uninterrupted'
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', *TINY, f'--output_dir={output_dir}'])
    run_flags.main_wrapper(train.main, interrupted_message='')(['train'])
  return (output_dir / 'summary.json').read_bytes()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_while_tensorflow_is_imported_exits_quietly(tmp_path, sig):
  process = subprocess.Popen(
      [sys.executable, '-m', 'tff_perfed.binaries.train', *TINY,
       f'--output_dir={tmp_path}/run'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=dict(os.environ, PYTHONPATH=str(ROOT)))
  # binaries.exits is imported within ~0.1 s; TensorFlow takes seconds.
  time.sleep(1.0)
  assert process.poll() is None
  process.send_signal(sig)
  start = time.monotonic()
  _, stderr = process.communicate(timeout=60)
  assert time.monotonic() - start < PROMPT_SECONDS
  assert process.returncode == 128 + sig, stderr.decode()
  assert stderr.decode().strip() == train.INTERRUPTED_MESSAGE
  assert not (tmp_path / 'run').exists()


def test_ctrl_c_at_exit_on_cpp_is_quiet_and_leaves_no_worker(
    tmp_path, subreaper):
  # Ctrl-C as the finished run stops its worker: the moment TFF used to
  # ask for a fresh one, and a KeyboardInterrupt unwound the clean-up.
  output_dir = tmp_path / 'run'
  assert_interrupted_quietly(
      *run_binary(tmp_path, output_dir, runtime='cpp',
                  signal_at=(AT_EXIT, signal.SIGINT)),
      signal.SIGINT, subreaper)
  assert (output_dir / 'summary.json').exists()


def test_kill_9_sigint_and_sigterm_then_the_same_command_matches(
    tmp_path, subreaper, uninterrupted_summary):
  """kill -9 in a checkpoint, Ctrl-C in an evaluation, SIGTERM at exit."""
  output_dir = tmp_path / 'run'
  returncode, _, _ = run_binary(
      tmp_path, output_dir, signal_at=(DURING_CHECKPOINT, signal.SIGKILL))
  assert returncode == -signal.SIGKILL
  assert not left_workers(subreaper)
  assert_interrupted_quietly(
      *run_binary(tmp_path, output_dir,
                  signal_at=(DURING_FIRST_EVALUATION, signal.SIGINT)),
      signal.SIGINT, subreaper)
  assert not (output_dir / 'summary.json').exists()
  assert_interrupted_quietly(
      *run_binary(tmp_path, output_dir, signal_at=(AT_EXIT, signal.SIGTERM)),
      signal.SIGTERM, subreaper)
  assert (output_dir / 'summary.json').read_bytes() == uninterrupted_summary


# Ditto keeps each client's personal model in the run's client-state store.
DITTO = ['--algorithm=ditto', '--rounds=4', '--rounds_per_checkpoint=2']
# Rounds 1-2 write 4 state files (2 clients each), then the round-2
# checkpoint: the 6th file is round 3's second, with its first on disk.
DURING_ROUND_3_CLIENT_STATES = (
    'tff_perfed.program.client_states:ClientStateStore._write_file:6:0')


def run_files(output_dir):
  """`{path: bytes}` of the client states and the final checkpoint's
  manifest, and the final server state's arrays."""
  files = {}
  for directory in ('client_states', 'checkpoints/program_state_4'):
    for path in sorted((output_dir / directory).rglob('*')):
      if path.is_file() and path.suffix != '.npz':
        files[str(path.relative_to(output_dir))] = path.read_bytes()
  with np.load(output_dir / 'checkpoints/program_state_4/state.npz') as f:
    arrays = [f[name] for name in sorted(f.files)]
  return files, arrays


def metrics_without_times(output_dir):
  with open(output_dir / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  return [{k: v for k, v in row.items() if not k.endswith('_seconds')}
          for row in rows]


def test_kill_9_mid_round_with_client_states_then_rerun_is_bit_identical(
    tmp_path, subreaper):
  uninterrupted = tmp_path / 'uninterrupted'
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', *TINY, *DITTO,
                           f'--output_dir={uninterrupted}'])
    run_flags.main_wrapper(train.main, interrupted_message='')(['train'])
  output_dir = tmp_path / 'run'
  returncode, stderr, _ = run_binary(
      tmp_path, output_dir, *DITTO,
      signal_at=(DURING_ROUND_3_CLIENT_STATES, signal.SIGKILL))
  assert returncode == -signal.SIGKILL, stderr
  assert not left_workers(subreaper)
  # Killed after one of round 3's states was written, past the checkpoint.
  assert max(os.listdir(output_dir / 'checkpoints')) == 'program_state_2'
  assert any(path.name == '3.npy'
             for path in (output_dir / 'client_states').rglob('*'))
  returncode, stderr, _ = run_binary(tmp_path, output_dir, *DITTO)
  assert returncode == 0, stderr
  assert ((output_dir / 'summary.json').read_bytes() ==
          (uninterrupted / 'summary.json').read_bytes())
  assert metrics_without_times(output_dir) == metrics_without_times(
      uninterrupted)
  files, arrays = run_files(output_dir)
  want_files, want_arrays = run_files(uninterrupted)
  assert files.keys() == want_files.keys()
  assert files == want_files
  assert len(arrays) == len(want_arrays)
  for got, want in zip(arrays, want_arrays):
    np.testing.assert_array_equal(got, want)
