"""The `remote` runtime: TFF computations on TFF C++ workers over gRPC.

A driver (the Python program) runs each computation on one or more TFF
workers (`worker_binary`, as shipped in the TFF package; `binaries/worker.py`
runs one, `deploy/` packages it) reached at `host:port` addresses. The
clients of a computation are split across the workers in contiguous,
near-equal slices; a computation with one aggregation (every round of the
package's algorithms) is cut at its aggregation by TFF's mergeable-form
compiler (`tff.backends.native.compile_to_mergeable_comp_form`): each worker
runs the part before the aggregation on its slice, the driver merges the
partial aggregates in worker order on the first worker, and the part after
the aggregation runs once (or, for per-client results such as the
personalization evaluation, on every slice, concatenated in client order).

This is TFF's `create_mergeable_comp_execution_context` with three changes,
each found by running it in TFF 0.87:
  * Workers run in parallel. TFF's `RemoteExecutor` makes blocking gRPC
    calls inside coroutines, so its mergeable context, which drives every
    worker from one event loop, runs them one after the other; here each
    worker has an event-loop thread of its own.
  * Results do not depend on which worker finishes first. TFF's context
    merges partial aggregates and concatenates per-client results in order
    of completion; here both follow the order of the workers (so clients
    come back in the order given, and results are reproducible).
  * A worker that cannot be reached is one `WorkerUnavailableError` naming
    it, raised within a bounded time. TFF marks UNAVAILABLE gRPC errors as
    retryable and `AsyncExecutionContext.invoke` retries them forever, so a
    dead worker would hang the driver.
Computations without client-placed arguments (`initialize`,
`get_model_weights`, ...), with a single client, or that TFF cannot cut at
one aggregation run whole on the first worker, as on one machine.

Driver and workers must run the same TFF version (0.87.0): the gRPC
protocol carries serialized computations, which other versions may read
differently or reject.

gRPC here is insecure (no TLS, no authentication): anyone who can reach a
worker's port can run arbitrary TensorFlow on it and read what it holds.
Keep workers on a private network (or behind an SSH tunnel / VPN), never on
a public address. `worker_binary` listens on every interface of its host.

Typical use::

  remote.set_remote_execution_context(['10.0.0.2:8000', '10.0.0.3:8000'])
  state = process.initialize()  # Runs on the workers.

or, on one machine, `set_remote_execution_context(start_local_workers(2))`.
"""

import asyncio
import concurrent.futures
import re
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from absl import logging
import grpc
import tensorflow_federated as tff
# Partitioning and reassembly of values by placement as TFF's mergeable
# context does it, and type helpers: not exported by the `tff` API (TFF is
# pinned at 0.87.0).
# pylint: disable=g-direct-tensorflow-import
from tensorflow_federated.proto.v0 import executor_pb2
from tensorflow_federated.python.core.impl.execution_contexts import mergeable_comp_execution_context as tff_mergeable
from tensorflow_federated.python.core.impl.executors import cardinalities_utils
from tensorflow_federated.python.core.impl.types import type_analysis
from tensorflow_federated.python.core.impl.types import type_conversions
# pylint: enable=g-direct-tensorflow-import

from tff_perfed import validation
from tff_perfed.runtime import local_cpp

_DEFAULT_TIMEOUT_SECONDS = 30.0
# A worker that answers, but keeps failing a precondition, is given up on
# after this many consecutive failures (TFF would retry it forever).
_MAX_CONSECUTIVE_RETRYABLE_ERRORS = 5
# gRPC codes meaning the worker (or its host) is gone.
_UNREACHABLE_CODES = frozenset(
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
_WORKERS_EXPECTED = 'a comma-separated list of host:port'
_HOST_PATTERN = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$')


class WorkerUnavailableError(RuntimeError):
  """A TFF worker could not be reached, or stopped answering.

  Attributes:
    address: The worker's `host:port`.
  """

  def __init__(self, address: str, reason: str):
    self.address = address
    reason = ' '.join(str(reason).split())  # One line, whatever gRPC said.
    super().__init__(f'TFF worker {address} cannot be reached ({reason}).')


def parse_workers(workers: Union[str, Sequence[str]]) -> List[str]:
  """Validates worker addresses: `host:port`, port 1-65535.

  Args:
    workers: A sequence of `host:port`, or one comma-separated string of them
      (as the `--workers` flag gives it). IPv6 hosts go in brackets.

  Returns:
    The addresses, stripped of surrounding spaces.

  Raises:
    tff_perfed.validation.ArgumentValueError: Naming `workers`, if any
      address is malformed or there is none.
  """
  given = workers
  if isinstance(workers, str):
    workers = workers.split(',')
  try:
    addresses = [w.strip() for w in workers]
  except (AttributeError, TypeError):
    raise validation.ArgumentValueError('workers', _WORKERS_EXPECTED,
                                        given) from None
  if not addresses:
    raise validation.ArgumentValueError('workers', _WORKERS_EXPECTED, given)
  for address in addresses:
    host, _, port = address.rpartition(':')
    if not (_HOST_PATTERN.match(host) and port.isascii() and port.isdigit() and
            1 <= int(port) <= 65535):
      raise validation.ArgumentValueError('workers', _WORKERS_EXPECTED, given)
  return addresses


class _ByteCounter(grpc.UnaryUnaryClientInterceptor):
  """Sums the serialized sizes of the gRPC messages to and from a worker.

  Counts protobuf payloads (what the computations and values cost), not
  HTTP/2 framing. Every call of TFF's executor service is unary-unary.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self.sent = 0
    self.received = 0

  def intercept_unary_unary(self, continuation, client_call_details, request):
    size = request.ByteSize()
    with self._lock:
      self.sent += size
    outcome = continuation(client_call_details, request)
    try:
      size = outcome.result().ByteSize()
    except grpc.RpcError:
      return outcome  # The caller sees the error; nothing was received.
    with self._lock:
      self.received += size
    return outcome


class _GuardedStub(tff.framework.RemoteExecutorGrpcStub):
  """TFF's gRPC stub, turning "worker gone" into `WorkerUnavailableError`.

  The error is not a `tff.framework.RetryableError`, so TFF's contexts do
  not retry it (forever) but pass it on.
  """

  def __init__(self, channel: grpc.Channel, address: str):
    super().__init__(channel)
    self.address = address
    self._lock = threading.Lock()
    self._consecutive_retryable_errors = 0

  def _guard(self, call, request):
    try:
      response = call(request)
    except grpc.RpcError as e:
      code = e.code() if isinstance(e, grpc.Call) else None
      details = e.details() if isinstance(e, grpc.Call) else str(e)
      if code in _UNREACHABLE_CODES:
        raise WorkerUnavailableError(self.address,
                                     f'{code.name}: {details}') from None
      if isinstance(e, tff.framework.RetryableError):
        # E.g. FAILED_PRECONDITION for an executor a restarted worker no
        # longer has: TFF recovers by retrying on a new executor, but only
        # a bounded number of times here.
        with self._lock:
          self._consecutive_retryable_errors += 1
          failures = self._consecutive_retryable_errors
        if failures >= _MAX_CONSECUTIVE_RETRYABLE_ERRORS:
          raise WorkerUnavailableError(
              self.address, f'{failures} consecutive failures, last '
              f'{code.name if code else "?"}: {details}') from None
      raise
    with self._lock:
      self._consecutive_retryable_errors = 0
    return response

  def get_executor(self, request):
    return self._guard(super().get_executor, request)

  def create_value(self, request):
    return self._guard(super().create_value, request)

  def create_struct(self, request):
    return self._guard(super().create_struct, request)

  def create_call(self, request):
    return self._guard(super().create_call, request)

  def create_selection(self, request):
    return self._guard(super().create_selection, request)

  def compute(self, request):
    return self._guard(super().compute, request)

  def dispose(self, request):
    # Called from garbage-collection finalizers: a dead worker holds nothing
    # left to free, and raising there would only print a traceback.
    try:
      return super().dispose(request)
    except grpc.RpcError as e:
      logging.debug('Dispose on TFF worker %s failed: %s', self.address, e)
      return executor_pb2.DisposeResponse()

  def dispose_executor(self, request):
    try:
      return super().dispose_executor(request)
    except grpc.RpcError as e:
      logging.debug('DisposeExecutor on TFF worker %s failed: %s',
                    self.address, e)
      return executor_pb2.DisposeExecutorResponse()


class _Worker:
  """One worker: its channel, stub, TFF async context and event-loop thread.

  The thread runs the worker's `AsyncExecutionContext`, whose blocking gRPC
  calls then hold up no other worker.
  """

  def __init__(self, address: str, default_num_clients: int,
               keepalive_seconds: float):
    self.address = address
    self.bytes = _ByteCounter()
    # The same message-size limits as local_cpp's channel.
    # pylint: disable-next=protected-access
    options = list(local_cpp._GRPC_CHANNEL_OPTIONS)
    if keepalive_seconds > 0:
      # HTTP/2 pings notice a host that vanished without closing the
      # connection (a running call would otherwise wait forever). Workers
      # reject pings more often than every 5 minutes during a silent call.
      options += [
          ('grpc.keepalive_time_ms', int(keepalive_seconds * 1000)),
          ('grpc.keepalive_timeout_ms', 20 * 1000),
          ('grpc.http2.max_pings_without_data', 0),
      ]
    self.raw_channel = grpc.insecure_channel(address, options)
    channel = grpc.intercept_channel(self.raw_channel, self.bytes)
    self.stub = _GuardedStub(channel, address)

    def executor_stack_fn(cardinalities):
      if cardinalities.get(tff.CLIENTS) is None:
        cardinalities[tff.CLIENTS] = default_num_clients
      executor = tff.framework.RemoteExecutor(self.stub)
      executor.set_cardinalities(cardinalities)
      return executor

    # The same context as local_cpp's, made asynchronous.
    self.context = tff.framework.AsyncExecutionContext(
        executor_fn=tff.framework.ResourceManagingExecutorFactory(
            executor_stack_fn=executor_stack_fn),
        compiler_fn=tff.backends.native.desugar_and_transform_to_native,
        transform_args=tff.tensorflow.transform_args,
        transform_result=tff.tensorflow.transform_result,
    )
    self._loop = asyncio.new_event_loop()
    # Daemon: a thread stuck in a call to a hung worker must not block exit.
    self._thread = threading.Thread(
        target=self._loop.run_forever, name=f'tff-worker-{address}',
        daemon=True)
    self._thread.start()

  def submit(self, comp, arg) -> concurrent.futures.Future:
    """Starts `comp(arg)` on this worker; returns a future of its result."""
    return asyncio.run_coroutine_threadsafe(
        self.context.invoke(comp, arg), self._loop)

  def invoke(self, comp, arg):
    return self.submit(comp, arg).result()

  def close(self) -> None:
    # The channel is left to garbage collection: `grpc.Channel.close` races
    # with the connectivity thread of TFF's stub (which cannot unsubscribe)
    # and can make it print a traceback.
    self._loop.call_soon_threadsafe(self._loop.stop)


def _wait_until_ready(workers: Sequence[_Worker],
                      timeout_seconds: float) -> None:
  """Waits (in parallel, one deadline) until every worker accepts calls."""
  deadline = time.monotonic() + timeout_seconds
  for worker in workers:
    try:
      grpc.channel_ready_future(worker.raw_channel).result(
          timeout=max(0.0, deadline - time.monotonic()))
    except grpc.FutureTimeoutError:
      raise WorkerUnavailableError(
          worker.address,
          f'not ready after {timeout_seconds:g} s') from None


def _results_in_order(futures: Sequence[concurrent.futures.Future]) -> list:
  """The futures' results in order; the first error as soon as it happens."""
  done, _ = concurrent.futures.wait(
      futures, return_when=concurrent.futures.FIRST_EXCEPTION)
  for future in futures:
    if future in done and future.exception() is not None:
      raise future.exception()
  return [future.result() for future in futures]


def _has_per_client_values(type_spec) -> bool:
  """Whether `type_spec` contains a CLIENTS-placed, not all-equal value."""

  def same_for_every_slice(t):
    return (not isinstance(t, tff.FederatedType) or t.all_equal or
            t.placement is not tff.CLIENTS)

  return not type_analysis.contains_only(type_spec, same_for_every_slice)


class RemoteExecutionContext(tff.framework.SyncContext):
  """A synchronous TFF context splitting clients across remote workers.

  Made by `create_remote_execution_context`; see the module docstring.
  """

  def __init__(self, workers: Sequence[_Worker]):
    self._workers = list(workers)
    self._lock = threading.Lock()
    self._forms = {}  # Computation -> MergeableCompForm, or None.

  @property
  def addresses(self) -> List[str]:
    return [w.address for w in self._workers]

  def bytes_moved(self) -> Dict[str, Dict[str, int]]:
    """Bytes sent to and received from each worker so far, by address."""
    return {
        w.address: dict(sent=w.bytes.sent, received=w.bytes.received)
        for w in self._workers
    }

  def close(self) -> None:
    """Stops the workers' event-loop threads; the context is then unusable.

    The workers themselves keep running.
    """
    for worker in self._workers:
      worker.close()

  def _mergeable_form(self, comp):
    """`comp` cut at its aggregation, or None if TFF cannot (cached)."""
    with self._lock:
      if comp in self._forms:
        return self._forms[comp]
    try:
      form = tff.backends.native.compile_to_mergeable_comp_form(comp)
    except (ValueError, TypeError) as e:
      # E.g. an aggregation that depends on another one.
      logging.warning(
          'Running %s on one TFF worker: it cannot be split at one '
          'aggregation (%s).', comp.type_signature,
          ' '.join(str(e).split())[:200])
      form = None
    with self._lock:
      self._forms[comp] = form
    return form

  def invoke(self, comp, arg=None):
    first = self._workers[0]
    if len(self._workers) == 1 or arg is None:
      return first.invoke(comp, arg)
    clients = cardinalities_utils.infer_cardinalities(
        arg, comp.type_signature.parameter).get(tff.CLIENTS)
    if not clients or clients < 2:
      return first.invoke(comp, arg)
    form = self._mergeable_form(comp)
    if form is None:
      return first.invoke(comp, arg)
    # Contiguous slices of the clients, one per worker (fewer if there are
    # fewer clients), everything else replicated: TFF's own partitioning.
    parts = tff_mergeable.MergeableCompExecutionContextValue(
        arg, form.up_to_merge.type_signature.parameter,
        len(self._workers)).value()
    workers = self._workers[:len(parts)]
    partials = _results_in_order([
        worker.submit(form.up_to_merge, part)
        for worker, part in zip(workers, parts)
    ])
    # Merged in worker order, so that the result does not depend on which
    # worker finished first.
    merged = partials[0]
    for partial in partials[1:]:
      merged = first.invoke(form.merge, tff.structure.Struct.unnamed(
          merged, partial))
    result_type = form.after_merge.type_signature.result
    if not _has_per_client_values(result_type):
      # The same on every slice: compute it once.
      return first.invoke(form.after_merge,
                          tff.structure.Struct.unnamed(parts[0], merged))
    results = _results_in_order([
        worker.submit(form.after_merge,
                      tff.structure.Struct.unnamed(part, merged))
        for worker, part in zip(workers, parts)
    ])
    # Per-client values concatenated in slice (= client) order.
    # pylint: disable-next=protected-access
    result = tff_mergeable._repackage_partitioned_values(
        results, result_type_spec=result_type)
    return type_conversions.type_to_py_container(result, result_type)


def create_remote_execution_context(
    workers: Union[str, Sequence[str]],
    *,
    default_num_clients: int = 0,
    timeout_seconds: float = _DEFAULT_TIMEOUT_SECONDS,
    keepalive_seconds: float = 330.0,
) -> RemoteExecutionContext:
  """A synchronous TFF context running on the TFF workers at `workers`.

  Args:
    workers: The workers' `host:port` addresses (a sequence, or one
      comma-separated string). Clients are split across them in this order.
    default_num_clients: Client cardinality used when it cannot be inferred
      (computations without client-placed arguments run on the first worker
      with this many clients).
    timeout_seconds: How long to wait for every worker to accept calls.
    keepalive_seconds: Interval of the HTTP/2 pings that detect a worker host
      that vanished mid-call (within about this plus 20 s); 0 disables them.
      Workers refuse pings more frequent than every 5 minutes.

  Returns:
    The context; install it with `tff.framework.set_default_context` or use
    `set_remote_execution_context`. `bytes_moved(context)` reports its
    traffic.

  Raises:
    tff_perfed.validation.ArgumentValueError: If an address is malformed.
    WorkerUnavailableError: If a worker is not ready within
      `timeout_seconds`.
  """
  addresses = parse_workers(workers)
  validation.require_int('default_num_clients', default_num_clients,
                         minimum=0)
  validation.require_real('timeout_seconds', timeout_seconds)
  validation.require_real('keepalive_seconds', keepalive_seconds)
  built = [
      _Worker(address, default_num_clients, keepalive_seconds)
      for address in addresses
  ]
  try:
    _wait_until_ready(built, timeout_seconds)
  except WorkerUnavailableError:
    for worker in built:
      worker.close()
    raise
  return RemoteExecutionContext(built)


def set_remote_execution_context(workers: Union[str, Sequence[str]],
                                 **options: Any) -> RemoteExecutionContext:
  """Installs `create_remote_execution_context(workers, **options)`.

  Args:
    workers: See `create_remote_execution_context`.
    **options: See `create_remote_execution_context`.

  Returns:
    The installed context (for `bytes_moved`).

  Raises:
    See `create_remote_execution_context`.
  """
  context = create_remote_execution_context(workers, **options)
  tff.framework.set_default_context(context)
  return context


def bytes_moved(context: RemoteExecutionContext) -> Dict[str, int]:
  """Protobuf bytes sent to and received from all of `context`'s workers.

  Counters only grow: the traffic of a round is the difference of two
  readings.

  Args:
    context: A context made by `create_remote_execution_context`.

  Returns:
    `dict(sent=..., received=...)`, summed over workers.
  """
  per_worker = context.bytes_moved().values()
  return dict(sent=sum(w['sent'] for w in per_worker),
              received=sum(w['received'] for w in per_worker))


def start_local_workers(n: int, *,
                        log_path: Optional[str] = None,
                        max_concurrent_computation_calls: int = -1,
                        timeout_seconds: float = 120.0) -> List[str]:
  """Starts `n` owned local workers; returns their loopback addresses.

  For tests, benchmarks and multi-worker runs on one machine. The workers
  have `local_cpp`'s guarantees (no inherited stdio, die with this process,
  stopped by `tff_perfed.runtime.shutdown_workers()` and at exit).

  Args:
    n: How many workers, >= 1.
    log_path: File to append the workers' output to; discarded if None.
    max_concurrent_computation_calls: Passed to each worker.
    timeout_seconds: How long to wait for them to be ready.

  Returns:
    `['127.0.0.1:PORT', ...]`, every worker ready.

  Raises:
    RuntimeError: If a worker exits or is not ready in time (all started
      ones are then stopped).
  """
  validation.require_int('n', n, minimum=1)
  started = [
      local_cpp.start_worker(max_concurrent_computation_calls, log_path)
      for _ in range(n)
  ]
  addresses = [f'127.0.0.1:{port}' for _, port in started]
  deadline = time.monotonic() + timeout_seconds
  try:
    for (process, _), address in zip(started, addresses):
      # Not closed but dropped: see `_Worker.close`.
      ready = grpc.channel_ready_future(grpc.insecure_channel(address))
      while True:
        try:
          ready.result(timeout=0.2)
          break
        except grpc.FutureTimeoutError:
          if process.poll() is not None:
            raise RuntimeError(
                f'TFF worker {address} exited with code '
                f'{process.returncode} before it was ready.') from None
          if time.monotonic() > deadline:
            raise RuntimeError(
                f'TFF worker {address} was not ready after '
                f'{timeout_seconds:g} s.') from None
  except BaseException:
    for process, _ in started:
      local_cpp._stop_worker(process)  # pylint: disable=protected-access
    raise
  return addresses

