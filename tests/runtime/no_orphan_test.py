"""No TFF worker outlives the program, however the program ends.

The binary runs in a subprocess with piped stdout/stderr, the way CI and
`| tee` run it: a worker holding the pipe would make `communicate` hang.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tff_perfed.binaries import train
import processes
from tff_perfed import runtime
from tff_perfed.runtime import local_cpp

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
ARGS = ['--dataset=digits', '--rounds_per_checkpoint=1',
        '--clients_per_round=2', '--local_steps=1',
        '--batch_size=4', '--personalization_steps=1', '--num_eval_clients=2']


def _start(tmp_path, rounds, runtime_name='cpp'):
  return subprocess.Popen(
      [sys.executable, '-m', 'tff_perfed.binaries.train', *ARGS, f'--rounds={rounds}',
       f'--output_dir={tmp_path}/run', f'--runtime={runtime_name}'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=dict(os.environ, PYTHONPATH=ROOT))


def _wait_for_worker(process, timeout=180):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    workers = processes.children_named(process.pid)
    if workers:
      return workers
    assert process.poll() is None, process.communicate()
    time.sleep(0.2)
  pytest.fail('the binary never started a TFF worker')


def test_normal_exit_with_piped_output_leaves_no_worker(tmp_path):
  process = _start(tmp_path, rounds=1)
  workers = _wait_for_worker(process)
  _, stderr = process.communicate(timeout=300)  # Hangs if a worker held it.
  assert process.returncode == 0, stderr.decode()[-2000:]
  processes.assert_gone(workers)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT,
                                 signal.SIGKILL])
def test_signal_mid_run_leaves_no_worker(tmp_path, sig):
  process = _start(tmp_path, rounds=100000)
  workers = _wait_for_worker(process)
  process.send_signal(sig)
  start = time.monotonic()
  _, stderr = process.communicate(timeout=120)
  processes.assert_gone(workers)
  if sig == signal.SIGKILL:
    assert process.returncode == -signal.SIGKILL
    return
  assert time.monotonic() - start < 10
  assert process.returncode == 128 + sig, stderr.decode()[-2000:]
  # Nothing after the line: no traceback, no gRPC fork of a new worker.
  assert stderr.decode().strip().splitlines()[-1] == train.INTERRUPTED_MESSAGE


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_in_process_run_starts_no_worker_and_ends_at_once_on_a_signal(
    tmp_path, sig):
  process = _start(tmp_path, rounds=100000, runtime_name='in_process')
  metrics = tmp_path / 'run' / 'metrics.csv'
  deadline = time.monotonic() + 180
  while not (metrics.exists() and metrics.stat().st_size > 0):
    assert process.poll() is None, process.communicate()
    assert time.monotonic() < deadline, 'training never started'
    assert not processes.children_named(process.pid)
    time.sleep(0.2)
  assert not processes.children_named(process.pid)
  process.send_signal(sig)
  start = time.monotonic()
  _, stderr = process.communicate(timeout=60)  # Hangs if a thread held on.
  assert time.monotonic() - start < 10
  assert process.returncode == 128 + sig, stderr.decode()[-2000:]
  assert stderr.decode().strip().splitlines()[-1] == train.INTERRUPTED_MESSAGE


def test_exception_mid_run_leaves_no_worker():
  code = (
      'import tensorflow_federated as tff, numpy as np\n'
      'from tff_perfed import runtime\n'
      'runtime.set_local_execution_context()\n'
      '@tff.tensorflow.computation(tff.TensorType(np.int32))\n'
      'def f(x): return x + 1\n'
      'assert f(1) == 2\n'
      'print(runtime.running_worker_pids()[0], flush=True)\n'
      'raise RuntimeError("boom")\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 1 and b'boom' in result.stderr
  processes.assert_gone([int(result.stdout.split()[0])])


LIBRARY_SCRIPT = """
import collections
import numpy as np
import tensorflow as tf
import tff_perfed
from tff_perfed import models

process = tff_perfed.build_per_fedavg(
    lambda: models.build_mlp(input_dim=3, num_classes=2, seed=0,
                             hidden_units=(4,)),
    inner_learning_rate=0.1, outer_learning_rate=0.1)
batches = collections.OrderedDict(
    x=np.zeros((6, 2, 3), np.float32), y=np.zeros((6, 2), np.int32))
state = process.initialize()
output = process.next(state, [tf.data.Dataset.from_tensor_slices(batches)])
print('round done', flush=True)
"""


@pytest.mark.parametrize('ending', ['normal', 'exception', 'sigterm'])
def test_library_user_script_with_piped_output_leaves_no_worker(ending):
  # Only imports the package: no set_local_execution_context().
  code = LIBRARY_SCRIPT + {
      'normal': '',
      'exception': 'raise RuntimeError("boom")\n',
      'sigterm': 'import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n',
  }[ending]
  process = subprocess.Popen(
      [sys.executable, '-c', code], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT))
  workers = _wait_for_worker(process)
  # Hangs (and times out) if a worker still holds the pipes.
  stdout, stderr = process.communicate(timeout=300)
  assert b'round done' in stdout, stderr.decode()[-2000:]
  assert (process.returncode == 0) == (ending == 'normal')
  assert b'Traceback' not in stderr or ending == 'exception'
  processes.assert_gone(workers)


def test_shutdown_workers_stops_this_process_workers(restore_default_context):
  del restore_default_context
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  # Earlier tests may have left another runtime installed.
  runtime.set_local_execution_context(handle_sigterm=False)

  @tff.tensorflow.computation(tff.TensorType(np.int32))
  def add_one(x):
    return x + 1

  assert add_one(1) == 2
  pids = runtime.running_worker_pids()
  assert pids
  runtime.shutdown_workers()
  assert not runtime.running_worker_pids()
  processes.assert_gone(pids)
  assert add_one(2) == 3  # The context starts a fresh worker on demand.


def test_no_worker_starts_once_the_program_began_to_exit(
    monkeypatch, restore_default_context):
  del restore_default_context
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  # What `begin_exit` sets, undone after the test (`begin_exit` is final).
  monkeypatch.setattr(local_cpp, '_exiting', True)
  before = set(local_cpp.child_worker_pids())
  with pytest.raises(local_cpp.WorkerLaunchRefusedError):
    local_cpp.start_worker()
  # A context whose worker is gone asks for a fresh one, as TFF's executor
  # does after an interrupt stopped it: refused too.
  runtime.set_local_execution_context(handle_sigterm=False)
  add_one = tff.tensorflow.computation(lambda x: x + 1,
                                       tff.TensorType(np.int32))
  with pytest.raises(local_cpp.WorkerLaunchRefusedError):
    add_one(1)
  assert set(local_cpp.child_worker_pids()) == before
