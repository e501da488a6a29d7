"""TFF's local C++ execution context, with a worker that never outlives us.

The algorithms never choose where they run; a program may call
`set_local_execution_context()` (importing `tff_perfed` already installs the
same context in place of TFF's import-time default, see `default_context`).
It is TFF's synchronous C++ context, but with a worker launcher of our own,
because TFF 0.87's
`local_cpp_executor_factory` starts `worker_binary` with the parent's stdout
and relies on `__del__` to stop it, which fails at interpreter exit and leaves
an orphan holding the parent's pipes (CI and `| tee` then hang).

Guarantees, for every worker started here:
  * it never inherits stdout/stderr, so it cannot hold a caller's pipe;
  * the kernel kills it when the Python process dies for any reason,
    including SIGKILL (Linux `PR_SET_PDEATHSIG`);
  * it is terminated and reaped at normal exit and on exceptions (`atexit`);
  * SIGTERM stops the workers and ends the program at once (`exit_now`);
  * once the program has begun to exit (`exit_now`, the exit hook), no new
    worker starts: TFF asks for a fresh one when a call finds its worker
    gone, which is exactly what stopping the workers causes, and such a late
    child would be forked while the process is being torn down.
"""

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, List, Optional, Sequence, Tuple

from absl import logging
import grpc
import portpicker
import tensorflow_federated as tff

_PR_SET_PDEATHSIG = 1
_STUB_READY_POLL_SECONDS = 0.2
_WORKER_START_TIMEOUT_SECONDS = 120.0
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_CHANNEL_OPTIONS = [
    ('grpc.max_message_length', _GRPC_MAX_MESSAGE_BYTES),
    ('grpc.max_receive_message_length', _GRPC_MAX_MESSAGE_BYTES),
    ('grpc.max_send_message_length', _GRPC_MAX_MESSAGE_BYTES),
]

_workers: List[subprocess.Popen] = []
# Re-entrant: `exit_now` runs in signal handlers, which may interrupt the
# main thread while it holds this lock (starting or stopping a worker).
_workers_lock = threading.RLock()
_exiting = False


class WorkerLaunchRefusedError(RuntimeError):
  """A worker was asked for after the program began to exit."""


def worker_binary_path() -> str:
  """Path of the C++ worker shipped inside the TFF package."""
  return os.path.join(os.path.dirname(tff.__file__), 'data', 'worker_binary')


def die_with_parent() -> None:
  """A `preexec_fn`: the child is SIGKILLed when its parent dies (Linux)."""
  # Runs in the child between fork and exec: ask the kernel to SIGKILL us
  # when the parent goes away, however it goes.
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_die_with_parent = die_with_parent

# util-linux's setpriv sets the parent-death signal and execs the worker, so
# that no Python code runs between fork and exec: a `preexec_fn` in a
# process with other threads (TF's, gRPC's, the in_process runtime's) can
# deadlock or abort the child (seen: a worker dying with SIGABRT at start).
_SETPRIV = shutil.which('setpriv') if sys.platform.startswith('linux') else None


def owned_command(args: Sequence[str]) -> Tuple[List[str], Optional[Any]]:
  """`(args, preexec_fn)` for a child that dies with this process.

  With `setpriv` the command is prefixed and needs no `preexec_fn`;
  otherwise (no util-linux) `die_with_parent` runs in the child.
  """
  if _SETPRIV:
    return [_SETPRIV, '--pdeathsig', 'KILL', '--', *args], None
  if sys.platform.startswith('linux'):
    return list(args), die_with_parent
  return list(args), None


def start_worker(max_concurrent_computation_calls: int = -1,
                 log_path: Optional[str] = None,
                 port: Optional[int] = None) -> Tuple[subprocess.Popen, int]:
  """Starts an owned `worker_binary` (see the module docstring's guarantees).

  The worker is not waited for: poll a stub's `is_ready` before using it.
  `shutdown_workers()` (also run at exit) stops it.

  Args:
    max_concurrent_computation_calls: Passed to the worker; non-positive means
      no limit.
    log_path: File to append the worker's output to; discarded if None.
    port: The port to serve on; a free one if None.

  Returns:
    `(process, port)`.

  Raises:
    WorkerLaunchRefusedError: If the program has begun to exit.
  """
  if port is None:
    port = portpicker.pick_unused_port()
  args = [
      worker_binary_path(), f'--port={port}',
      f'--max_concurrent_computation_calls={max_concurrent_computation_calls}'
  ]
  args, preexec_fn = owned_command(args)
  log_file = open(log_path, 'ab') if log_path else subprocess.DEVNULL
  try:
    # Checked and registered under the lock that `begin_exit` takes, so that
    # a worker is either refused or seen (and stopped) by the exit.
    with _workers_lock:
      if _exiting:
        raise WorkerLaunchRefusedError(
            'the program is exiting; no new TFF worker.')
      process = subprocess.Popen(
          args,
          stdin=subprocess.DEVNULL,
          stdout=log_file,
          stderr=log_file,
          close_fds=True,
          preexec_fn=preexec_fn)
      _workers.append(process)
  finally:
    if log_path:
      log_file.close()
  logging.debug('Started TFF worker pid %d on port %d', process.pid, port)
  return process, port


# The name this module used before `start_worker` was public.
_start_worker = start_worker


def _stop_worker(process: subprocess.Popen, timeout: float = 5.0) -> None:
  if process.poll() is None:
    process.terminate()
    try:
      process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
  with _workers_lock:
    if process in _workers:
      _workers.remove(process)


def shutdown_workers() -> None:
  """Stops every worker this module started. Safe to call more than once.

  A context asked for a computation afterwards starts a fresh worker, unless
  the program is exiting (`begin_exit`).
  """
  with _workers_lock:
    workers = list(_workers)
  for process in workers:
    _stop_worker(process)


def running_worker_pids() -> List[int]:
  """Process ids of the workers started here that are still alive."""
  with _workers_lock:
    return [p.pid for p in _workers if p.poll() is None]


def begin_exit() -> None:
  """From now on no worker starts (`start_worker` raises). Irreversible."""
  global _exiting
  with _workers_lock:
    _exiting = True


def _children_running(executables: Sequence[str]) -> List[int]:
  """Pids of this process's children whose executable is one of these."""
  wanted = {os.path.realpath(e) for e in executables if e}
  me = os.getpid()
  pids = []
  try:
    entries = os.listdir('/proc')
  except OSError:  # Not Linux: nothing to scan.
    return pids
  for entry in entries:
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        parent = int(f.read().rsplit(')', 1)[1].split()[1])
      if parent == me and os.path.realpath(f'/proc/{entry}/exe') in wanted:
        pids.append(int(entry))
    except (OSError, IndexError, ValueError):
      continue
  return pids


def child_worker_pids() -> List[int]:
  """Pids of this process's children running TFF's worker binary.

  Also those TFF's own factories started, which `running_worker_pids` does
  not know. Empty where there is no /proc.
  """
  return _children_running([worker_binary_path()])


def kill_child_workers() -> None:
  """SIGKILLs every worker child, owned or TFF's, without waiting.

  Also a `setpriv` launcher that has not exec'd its worker yet (it may not
  have set the parent-death signal). Not reaped: this may run in a signal
  handler that interrupted `Popen.wait` on the same process, whose lock is
  not re-entrant; the process is about to end, and its children with it.
  """
  with _workers_lock:
    pids = {p.pid for p in _workers if p.returncode is None}
  pids.update(_children_running([worker_binary_path(), _SETPRIV]))
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass


def _stop_workers_at_exit() -> None:
  begin_exit()
  shutdown_workers()


atexit.register(_stop_workers_at_exit)


class _WorkerService:
  """Owns one local worker and a stub to it, restarting it if it died."""

  def __init__(self, max_concurrent_computation_calls: int,
               log_path: Optional[str]):
    self._max_concurrent_computation_calls = max_concurrent_computation_calls
    self._log_path = log_path
    self._process = None
    self._stub = None
    self._lock = threading.Lock()

  def get_stub(self) -> tff.framework.RemoteExecutorGrpcStub:
    with self._lock:
      if self._stub is not None and self._process.poll() is None and (
          self._stub.is_ready):
        return self._stub
      if self._process is not None:
        _stop_worker(self._process)
      process, port = _start_worker(self._max_concurrent_computation_calls,
                                    self._log_path)
      channel = grpc.insecure_channel(f'localhost:{port}',
                                      _GRPC_CHANNEL_OPTIONS)
      stub = tff.framework.RemoteExecutorGrpcStub(channel)
      deadline = time.monotonic() + _WORKER_START_TIMEOUT_SECONDS
      while not stub.is_ready:
        if process.poll() is not None:
          raise RuntimeError(
              f'TFF worker {worker_binary_path()} exited with code '
              f'{process.returncode} before it was ready.')
        if time.monotonic() > deadline:
          _stop_worker(process)
          raise RuntimeError('TFF worker was not ready after '
                             f'{_WORKER_START_TIMEOUT_SECONDS:.0f}s.')
        time.sleep(_STUB_READY_POLL_SECONDS)
      self._process, self._stub = process, stub
      return stub


def create_local_execution_context(
    *,
    default_num_clients: int = 0,
    max_concurrent_computation_calls: int = -1,
    worker_log_path: Optional[str] = None,
) -> tff.framework.SyncExecutionContext:
  """A synchronous TFF context backed by a locally started C++ worker.

  Equivalent to `tff.backends.native.create_sync_local_cpp_execution_context`
  except for how the worker process is owned (see the module docstring).

  Args:
    default_num_clients: Client cardinality used when it cannot be inferred.
    max_concurrent_computation_calls: Passed to the worker; non-positive means
      no limit.
    worker_log_path: File to append the worker's output to; discarded if None.

  Returns:
    A `SyncExecutionContext`; install it with
    `tff.framework.get_context_stack().set_default_context` or use
    `set_local_execution_context`.
  """
  service = _WorkerService(max_concurrent_computation_calls, worker_log_path)

  def executor_stack_fn(cardinalities):
    if cardinalities.get(tff.CLIENTS) is None:
      cardinalities[tff.CLIENTS] = default_num_clients
    executor = tff.framework.RemoteExecutor(service.get_stub())
    executor.set_cardinalities(cardinalities)
    return executor

  return tff.framework.SyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(
          executor_stack_fn=executor_stack_fn),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result,
  )


def _ignore_further_signals() -> None:
  # A second Ctrl-C must not interrupt the exit itself. Handlers can only be
  # set from the main thread.
  if threading.current_thread() is threading.main_thread():
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, signal.SIG_IGN)


def flush_stdio() -> None:
  """Flushes stdout and stderr, ignoring any failure (closed pipe, ...)."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    # RuntimeError: a signal handler that interrupted a write to the stream.
    except (OSError, ValueError, RuntimeError, AttributeError):
      pass


def exit_now(code: int) -> None:
  """Kills the workers, flushes stdio and ends the process with `code`.

  For interrupted runs, and safe in a signal handler at any moment: no new
  worker starts once this begins (`begin_exit`), further SIGINT and SIGTERM
  are ignored, and the workers are killed at once (they hold nothing to
  save). A normal interpreter exit would join executor threads that may
  still be blocked in gRPC calls to the stopped worker.
  """
  _ignore_further_signals()
  begin_exit()
  kill_child_workers()
  flush_stdio()
  os._exit(code)  # pylint: disable=protected-access


def exit_on_sigterm(signum, frame) -> None:
  """A SIGTERM handler: `exit_now(143)` (workers stopped, stdio flushed)."""
  del frame
  exit_now(128 + signum)


def handle_sigterm_unless_handled() -> None:
  """Installs `exit_on_sigterm`, unless the program has a handler of its own.

  A binary's handler (`binaries/exits.py`) also prints how to resume. Only
  possible from the main thread; does nothing elsewhere.
  """
  if threading.current_thread() is not threading.main_thread():
    return
  if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None,
                                          exit_on_sigterm):
    signal.signal(signal.SIGTERM, exit_on_sigterm)


def set_local_execution_context(*,
                                default_num_clients: int = 0,
                                max_concurrent_computation_calls: int = -1,
                                worker_log_path: Optional[str] = None,
                                handle_sigterm: bool = True) -> None:
  """Installs `create_local_execution_context()` as TFF's default context.

  Args:
    default_num_clients: See `create_local_execution_context`.
    max_concurrent_computation_calls: See `create_local_execution_context`.
    worker_log_path: See `create_local_execution_context`.
    handle_sigterm: On SIGTERM, stop the workers and exit with 143, unless
      the program handles SIGTERM itself. Only possible from the main
      thread; ignored elsewhere.
  """
  context = create_local_execution_context(
      default_num_clients=default_num_clients,
      max_concurrent_computation_calls=max_concurrent_computation_calls,
      worker_log_path=worker_log_path)
  tff.framework.set_default_context(context)
  if handle_sigterm:
    handle_sigterm_unless_handled()
