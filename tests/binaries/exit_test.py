"""How a binary ends: one `error:` line, its status, nothing after it.

Bad flags are checked in a subprocess, because what used to follow the
error line came from interpreter teardown: finalizers such as TFF's
`ServiceManager.__del__` (held by TFF's import-time context) run once
`subprocess` is gone and print a traceback. `signal_injection/
sitecustomize.py` keeps an object alive whose finalizer fails if it runs
at teardown: a binary must end without one.
"""

import os
import pathlib
import subprocess
import sys

from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow_federated as tff

from tff_perfed.binaries import run_flags
from tff_perfed import errors
from tff_perfed import runtime
import processes

ROOT = pathlib.Path(__file__).resolve().parents[2]
INJECTION = pathlib.Path(__file__).resolve().parent / 'signal_injection'


def test_bad_flags_print_one_line_and_nothing_at_teardown():
  env = dict(os.environ, PYTHONPATH=f'{INJECTION}{os.pathsep}{ROOT}',
             TFF_PERFED_TEST_FAIL_AT_TEARDOWN='1')
  cases = {'--rounds=abc': "error: flag --rounds=abc: invalid literal for "
                           "int() with base 10: 'abc'",
           'extra': "error: unexpected arguments 'extra'; all options are "
                    '--flags.'}
  # Both at once: each is mostly the TF import.
  started = {
      argument: subprocess.Popen(
          [sys.executable, '-m', 'tff_perfed.binaries.train', argument], cwd=ROOT,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
      for argument in cases}
  for argument, process in started.items():
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr.decode()
    assert stderr.decode().splitlines() == [cases[argument]]
    assert not stdout


class _DiskFullError(errors.RunError):
  exit_code = 3


def test_a_run_error_is_one_line_with_its_exit_code_and_stops_workers(
    capsys, restore_default_context):
  del restore_default_context

  workers = []

  def main():
    add_one = tff.tensorflow.computation(lambda x: x + 1,
                                         tff.TensorType(np.int32))
    assert add_one(1) == 2  # Starts the cpp runtime's worker.
    workers.extend(runtime.running_worker_pids())
    raise _DiskFullError('cannot write /runs/x/metrics.csv:\n no space left')

  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', '--runtime=cpp'])
    with pytest.raises(SystemExit) as exit_info:
      run_flags.main_wrapper(main, interrupted_message='')(['train'])
  assert exit_info.value.code == 3
  assert capsys.readouterr().err.splitlines() == [
      'error: cannot write /runs/x/metrics.csv: no space left']
  assert workers and not runtime.running_worker_pids()
  processes.assert_gone(workers)
