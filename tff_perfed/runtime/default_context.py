"""What importing `tff_perfed` does to TFF's default execution context.

Importing TFF 0.87 installs a local C++ context whose worker (started on the
first computation) inherits the program's stdout and stderr and is stopped
only by a `__del__` that fails at interpreter exit. The orphaned worker keeps
the program's pipes open, so `python my_script.py | tee log` never ends, and
the failing `__del__` prints a traceback even when no worker ever started.

So that a program using the library without any set-up is safe, importing
`tff_perfed` calls `own_default_context()`, which

1. replaces TFF's import-time default context, and only that one: when
   TensorFlow sees a GPU, by the `in_process` runtime (TFF's worker cannot
   use one); otherwise by the owned equivalent of TFF's context
   (`local_cpp.create_local_execution_context()`), the same C++ worker
   running the same computations, whose worker never holds the program's
   pipes and dies with it. A context the program installed itself is left
   alone;
2. registers an exit hook that stops every `worker_binary` this process
   started through TFF's own factories (a TFF context installed later), so
   that a normal exit leaves no worker behind either way.

The algorithms still never choose an execution context; this only changes
who owns the worker of the context TFF itself chose.
"""

import atexit
import os
import signal
import threading

from absl import logging
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.runtime import in_process
from tff_perfed.runtime import local_cpp

# The executor-stack function TFF's `local_cpp_executor_factory` builds; its
# qualified name identifies the context TFF installs at import.
_TFF_LOCAL_CPP_STACK_FN = 'local_cpp_executor_factory.<locals>.stack_fn'

_lock = threading.Lock()
_exit_hook_registered = False


def is_tff_local_cpp_context(context) -> bool:
  """Whether `context` is a context made by TFF's local C++ factory."""
  factory = getattr(context, 'executor_factory', None)
  stack_fn = getattr(factory, '_executor_stack_fn', None)
  return getattr(stack_fn, '__qualname__', None) == _TFF_LOCAL_CPP_STACK_FN


def stop_tff_started_workers() -> None:
  """Kills and reaps workers this process started outside `local_cpp`."""
  owned = set(local_cpp.running_worker_pids())
  for pid in local_cpp.child_worker_pids():
    if pid in owned:
      continue
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
      pass


def own_default_context() -> bool:
  """Makes TFF's default context one whose worker never outlives us.

  Idempotent. Returns whether the default context was replaced (False when
  the program had already installed a context of its own).
  """
  global _exit_hook_registered
  with _lock:
    if not _exit_hook_registered:
      atexit.register(stop_tff_started_workers)
      _exit_hook_registered = True
    current = tff.framework.get_context_stack().current
    if not is_tff_local_cpp_context(current):
      return False
    # Physical devices can be listed without initializing TF's runtime.
    if tf.config.list_physical_devices('GPU'):
      context = in_process.create_in_process_execution_context()
    else:
      context = local_cpp.create_local_execution_context()
    tff.framework.set_default_context(context)
    logging.debug('Replaced TFF\'s import-time context by %s.', context)
    return True
