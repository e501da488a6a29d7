"""Test-only fault injection into a binary: a signal at a chosen point.

Python imports `sitecustomize` at start-up from PYTHONPATH; only
`tests/binaries/interrupt_test.py` and `exit_test.py` put this directory
there, with

  TFF_PERFED_TEST_SIGNAL = 'module:attribute:call:delay:SIGNAME'

On the `call`-th call of `module.attribute` (a dotted path; one ending in
`()`: of the function it returns) the process sends itself SIGNAME: at once
before the call if `delay` is 0, else `delay` seconds later from a timer
thread, as a Ctrl-C arrives while the main thread is inside the call. The
time of the signal is appended to TFF_PERFED_TEST_SIGNAL_LOG.

With TFF_PERFED_TEST_FAIL_AT_TEARDOWN set, an object whose finalizer
fails if it runs at interpreter teardown lives until then.
"""

import functools
import importlib
import os
import signal
import sys
import threading
import time


def _send(signum: int) -> None:
  log = os.environ.get('TFF_PERFED_TEST_SIGNAL_LOG')
  if log:
    with open(log, 'a') as f:
      f.write(f'{time.time()}\n')
  os.kill(os.getpid(), signum)


def _signalling(function, nth: int, delay: float, signum: int):
  calls = []

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    calls.append(None)
    if len(calls) == nth:
      if delay > 0:
        threading.Timer(delay, _send, (signum,)).start()
      else:
        _send(signum)
    return function(*args, **kwargs)

  return wrapper


def _install(spec: str) -> None:
  module_name, attribute, nth, delay, signame = spec.split(':')
  owner = importlib.import_module(module_name)
  signum = getattr(signal, signame)
  *path, attribute = attribute.split('.')
  for name in path:
    owner = getattr(owner, name)
  if attribute.endswith('()'):
    attribute = attribute[:-2]
    builder = getattr(owner, attribute)

    @functools.wraps(builder)
    def building(*args, **kwargs):
      return _signalling(builder(*args, **kwargs), int(nth), float(delay),
                         signum)

    setattr(owner, attribute, building)
  else:
    setattr(owner, attribute,
            _signalling(getattr(owner, attribute), int(nth), float(delay),
                        signum))


if os.environ.get('TFF_PERFED_TEST_SIGNAL'):
  _install(os.environ['TFF_PERFED_TEST_SIGNAL'])


class _FailsAtTeardown:
  """Like TFF's `ServiceManager`, whose `__del__` fails at teardown."""

  def __del__(self):
    if sys.is_finalizing():
      raise RuntimeError('a finalizer ran at interpreter teardown')


if os.environ.get('TFF_PERFED_TEST_FAIL_AT_TEARDOWN'):
  # Lives until teardown, as TFF's import-time context does when nothing
  # replaces it.
  _kept = _FailsAtTeardown()
