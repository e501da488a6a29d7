"""How a binary ends: quietly on a signal at any moment, and hard after main.

Imported first by every binary, before TensorFlow (which takes seconds to
import), and importing nothing but the standard library, so that

* `exit_quietly_on_signals(message)`, the binary's first statement, makes
  SIGINT (Ctrl-C) and SIGTERM end the program at any moment (start-up, a
  round, an evaluation, a checkpoint, exit) with `message` on stderr and
  status 130 or 143: never a `KeyboardInterrupt` traceback, which an
  interrupt inside TF's or TFF's imports would otherwise print, and never a
  `KeyboardInterrupt` unwinding through TFF, whose clean-up asks for a
  fresh worker after the old one was stopped. The workers are killed and no
  new one may start (`tff_perfed.runtime.local_cpp.exit_now`);
* `exit_process(code)` ends the program after main, or after a flag error,
  without the interpreter's teardown: exit hooks run (workers stopped, logs
  flushed) while every module is intact, then the process ends. Teardown
  destroys modules while gRPC's polling threads and TFF's connectivity
  callbacks may still call into Python (a known source of segfaults at
  exit: grpc/grpc#11804, #16290), and runs finalizers such as TFF's
  `ServiceManager.__del__`, which fail once `subprocess` is gone and print
  a traceback after the program's last line.
"""

import atexit
import gc
import os
import signal
import sys
import threading

_message = 'interrupted.'

_LOCAL_CPP = 'tff_perfed.runtime.local_cpp'


def _flush_stdio() -> None:
  # As `local_cpp.flush_stdio`, which this module cannot import: it runs
  # before TensorFlow and TFF are loaded, and importing any `tff_perfed`
  # module loads them.
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    # RuntimeError: the handler interrupted a write to this very stream.
    except (OSError, ValueError, RuntimeError, AttributeError):
      pass


def _progress_bar_open() -> bool:
  """Whether a tqdm bar is on screen (its line has no newline yet)."""
  tqdm = sys.modules.get('tqdm')
  instances = getattr(getattr(tqdm, 'tqdm', None), '_instances', None)
  try:
    return bool(instances)
  except Exception:  # pylint: disable=broad-except
    return False


def _exit_on_signal(signum, frame) -> None:
  """Ends the process with 128 + signum after the interrupted message."""
  del frame
  for ignored in (signal.SIGINT, signal.SIGTERM):
    signal.signal(ignored, signal.SIG_IGN)  # A second Ctrl-C changes nothing.
  _flush_stdio()
  prefix = '\n' if _progress_bar_open() else ''
  # os.write, not print: the signal may have interrupted a write to stderr
  # (the progress bar), and a buffered stream then refuses to be re-entered.
  try:
    os.write(2, f'{prefix}{_message}\n'.encode())
  except OSError:
    pass
  # The runtime module exists once TFF is imported, and only then can a
  # worker run; it kills them and refuses new ones before exiting.
  local_cpp = sys.modules.get(_LOCAL_CPP)
  exit_now = getattr(local_cpp, 'exit_now', None)
  if exit_now is not None:
    exit_now(128 + signum)
  os._exit(128 + signum)  # pylint: disable=protected-access


def exit_quietly_on_signals(message: str) -> None:
  """SIGINT and SIGTERM print `message` and exit with 130 and 143 at once.

  Call it from the main thread of a program (not of a library user or a
  test: it ends the process).

  Args:
    message: One line for stderr, e.g. how to resume.
  """
  global _message
  _message = message
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _exit_on_signal)
    signal.signal(signal.SIGTERM, _exit_on_signal)


def exit_code(exit_request: SystemExit) -> int:
  """The status `sys.exit(arg)` asks for; a message is printed, then 1."""
  code = exit_request.code
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=sys.stderr)
  return 1


def exit_process(code: int) -> None:
  """Ends the program with `code` after its exit hooks, without teardown.

  Runs the `atexit` hooks (workers stopped, logging flushed, weakref
  finalizers) and a collection (objects whose deletion flushes, such as TF
  summary writers, while TF is whole), flushes stdio, then `os._exit`.
  """
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  gc.collect()
  _flush_stdio()
  os._exit(code)  # pylint: disable=protected-access
