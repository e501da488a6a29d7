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

This is TFF's `create_mergeable_comp_execution_context` with four changes,
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
  * The clients' data is sent once. TFF sends the first slice's arguments
    again with the merged aggregate to the part after the aggregation; a
    result without per-client values can only depend on the clients through
    the aggregate, so that part gets no client data here.

A worker lost during a call (killed, crashed, unreachable, or silent for
longer than the call timeout) is, by default, left out from then on: its
work of the call (one slice, the merge, or the whole computation) runs again
on a remaining worker, with one warning naming it. Clients are still split
into as many slices as workers were given and merged in slice order, so the
result is the one a run without the loss computes. Every step's inputs and
outputs live on the driver (nothing is kept on a worker between calls),
so redoing a step on another worker is always possible. A call either
returns its whole result or raises: nothing half-computed escapes, and a
training loop saves only returned states. With `retry_on_worker_loss=False`,
or when fewer than `min_workers` would be left, the call raises
`WorkerUnavailableError` naming the worker; a run resumed from its last
checkpoint with the remaining workers computes the same numbers (up to the
float rounding of a different split, ~1e-7 relative).

How long a lost worker takes to notice:
  * killed or crashed (connection closed or refused): at once;
  * its host gone silently (power loss, network partition) or its process
    frozen: HTTP/2 keepalive pings, after `keepalive_seconds` + 20 s
    (default 350 s; workers refuse more frequent pings);
  * answering pings but not the call (a worker stuck in a computation):
    `call_timeout_seconds` (default 3600 s) per gRPC call.
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
import collections
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

from tff_perfed import errors
from tff_perfed import validation
from tff_perfed.runtime import local_cpp

_DEFAULT_TIMEOUT_SECONDS = 30.0
# A round of the package's datasets takes seconds to minutes; a gRPC call
# silent for an hour is a stuck worker, not a slow one.
_DEFAULT_CALL_TIMEOUT_SECONDS = 3600.0
# A worker that answers, but keeps failing a precondition, is given up on
# after this many consecutive failures (TFF would retry it forever).
_MAX_CONSECUTIVE_RETRYABLE_ERRORS = 5
# gRPC codes meaning the worker (or its host) is gone.
_UNREACHABLE_CODES = frozenset(
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
_WORKERS_EXPECTED = 'a comma-separated list of host:port'
_HOST_PATTERN = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$')


class WorkerUnavailableError(errors.RunError, RuntimeError):
  """A TFF worker could not be reached, or stopped answering.

  A `RunError` (exit status 1): the run resumes from its last checkpoint
  once enough workers are back. Also a `RuntimeError`, as it always was.

  Attributes:
    address: The worker's `host:port`.
    reason: What gRPC (or the driver) said, one line.
  """

  def __init__(self, address: str, reason: str, consequence: str = ''):
    """Describes the loss of the worker at `address`.

    Args:
      address: The worker's `host:port`.
      reason: Why it is considered lost (e.g. the gRPC status).
      consequence: What it means for the run, appended to the message.
    """
    self.address = address
    self.reason = ' '.join(str(reason).split())  # One line, whatever gRPC
    # said.
    message = f'TFF worker {address} cannot be reached ({self.reason})'
    super().__init__(f'{message}; {consequence}.' if consequence else
                     f'{message}.')


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


class _CallDetails(
    collections.namedtuple('_CallDetails',
                           ('method', 'timeout', 'metadata', 'credentials',
                            'wait_for_ready', 'compression')),
    grpc.ClientCallDetails):
  """`grpc.ClientCallDetails` as a value, to change one field of a call."""


class _Deadline(grpc.UnaryUnaryClientInterceptor):
  """Gives every gRPC call to a worker a deadline of `seconds`.

  TFF's stub sets none, so a worker that answers keepalive pings but never
  the call (stuck) would hold the run forever.
  """

  def __init__(self, seconds: float):
    self._seconds = seconds

  def intercept_unary_unary(self, continuation, client_call_details, request):
    timeout = client_call_details.timeout
    timeout = self._seconds if timeout is None else min(timeout,
                                                        self._seconds)
    details = _CallDetails(client_call_details.method, timeout,
                           client_call_details.metadata,
                           client_call_details.credentials,
                           client_call_details.wait_for_ready,
                           client_call_details.compression)
    return continuation(details, request)


class _GuardedStub(tff.framework.RemoteExecutorGrpcStub):
  """TFF's gRPC stub, turning "worker gone" into `WorkerUnavailableError`.

  The error is not a `tff.framework.RetryableError`, so TFF's contexts do
  not retry it (forever) but pass it on.
  """

  def __init__(self, channel: grpc.Channel, address: str,
               call_timeout_seconds: Optional[float] = None):
    super().__init__(channel)
    self.address = address
    self._call_timeout_seconds = call_timeout_seconds
    self._lock = threading.Lock()
    self._consecutive_retryable_errors = 0

  def _guard(self, call, request):
    try:
      response = call(request)
    except grpc.RpcError as e:
      code = e.code() if isinstance(e, grpc.Call) else None
      details = e.details() if isinstance(e, grpc.Call) else str(e)
      if (code is grpc.StatusCode.DEADLINE_EXCEEDED and
          self._call_timeout_seconds is not None):
        raise WorkerUnavailableError(
            self.address, f'DEADLINE_EXCEEDED: no answer within '
            f'call_timeout_seconds={self._call_timeout_seconds:g}') from None
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
               keepalive_seconds: float,
               call_timeout_seconds: Optional[float] = None):
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
    interceptors = [self.bytes]
    if call_timeout_seconds is not None:
      interceptors.append(_Deadline(call_timeout_seconds))
    channel = grpc.intercept_channel(self.raw_channel, *interceptors)
    self.stub = _GuardedStub(channel, address, call_timeout_seconds)

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


def assign_worker(step: int, num_workers: int,
                  live: Sequence[int]) -> int:
  """Which worker runs step `step` of a call (a slice, or 0 for one step).

  Step `i` runs on worker `i` while it is live; the steps of lost workers
  are spread over the live ones. Where a step runs does not change its
  result, only the load.

  Args:
    step: The step's index, >= 0 (slice `i` of the clients).
    num_workers: How many workers the context was given.
    live: Indices of the workers still live, ascending, not empty.

  Returns:
    A worker index from `live`.
  """
  preferred = step % num_workers
  if preferred in live:
    return preferred
  return live[step % len(live)]


def _one_line(text: str, limit: int = 200) -> str:
  return ' '.join(str(text).split())[:limit]


def without_client_values(value: Any, type_spec: tff.Type) -> Any:
  """`value` (of type `type_spec`) with every per-client value emptied.

  CLIENTS-placed values that are not all-equal become `[]` (no clients);
  everything else is kept.

  Args:
    value: A computation argument, as TFF's partitioning gives it.
    type_spec: Its type.

  Returns:
    The value, structured as `type_spec`.
  """
  if isinstance(type_spec, tff.StructType):
    elements = tff.structure.iter_elements(
        tff.structure.from_container(value))
    return tff.structure.Struct([
        (name, without_client_values(element, element_type))
        for (name, element), (_, element_type) in zip(
            elements, tff.structure.iter_elements(type_spec))
    ])
  if (isinstance(type_spec, tff.FederatedType) and
      type_spec.placement is tff.CLIENTS and not type_spec.all_equal):
    return []
  return value


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

  def __init__(self, workers: Sequence[_Worker], *,
               retry_on_worker_loss: bool = True, min_workers: int = 1):
    """Runs computations on `workers`.

    Args:
      workers: The workers, in client-slice order.
      retry_on_worker_loss: Whether a lost worker's work is redone on the
        others (else the call raises `WorkerUnavailableError`).
      min_workers: Fewest live workers to go on with, >= 1.
    """
    self._workers = list(workers)
    self._retry_on_worker_loss = retry_on_worker_loss
    self._min_workers = min_workers
    self._lock = threading.Lock()
    self._forms = {}  # Computation -> MergeableCompForm, or None.
    self._lost = {}  # Address -> why, in order of loss.

  @property
  def addresses(self) -> List[str]:
    """Every worker given, lost ones included, in client-slice order."""
    return [w.address for w in self._workers]

  @property
  def live_addresses(self) -> List[str]:
    """The workers not lost so far, in client-slice order."""
    with self._lock:
      return [w.address for w in self._workers if w.address not in self._lost]

  def lost_workers(self) -> Dict[str, str]:
    """The workers lost so far (address -> why), in order of loss."""
    with self._lock:
      return dict(self._lost)

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

  def _lose(self, worker: _Worker, error: WorkerUnavailableError) -> None:
    """Leaves `worker` out from now on, or raises if the call cannot go on.

    Raises:
      WorkerUnavailableError: Naming `worker`, if retries are off or fewer
        than `min_workers` workers would be left.
    """
    with self._lock:
      if worker.address in self._lost:
        return  # Another of its steps reported it first.
      if not self._retry_on_worker_loss:
        # Not marked lost: a restarted worker at that address serves the
        # next call, as without retries it always did.
        raise error
      self._lost[worker.address] = error.reason
      live = [w.address for w in self._workers if w.address not in self._lost]
      lost = list(self._lost)
    if len(live) < self._min_workers:
      if live:
        consequence = (f'{len(live)} of {len(self._workers)} TFF workers left, '
                       f'fewer than min_workers={self._min_workers}')
      else:
        consequence = f'no TFF worker left (lost: {", ".join(lost)})'
      raise WorkerUnavailableError(
          worker.address, error.reason,
          f'{consequence}; restart the workers and run again to resume '
          'from the last checkpoint') from None
    logging.warning(
        'TFF worker %s lost (%s); its work runs on the %d remaining TFF '
        'worker(s) (%s) from now on.', worker.address,
        _one_line(error.reason), len(live), ', '.join(live))

  def _run_steps(self, comp, args: Sequence[Any]) -> list:
    """`comp(arg)` for every arg, in parallel on live workers, in order.

    Step `i` runs on `assign_worker(i, ...)`; a step whose worker is lost
    runs again on another one (see `_lose`).

    Args:
      comp: The computation.
      args: Its argument for each step.

    Returns:
      The results, in the order of `args`.

    Raises:
      WorkerUnavailableError: See `_lose`.
      Exception: The first other error a step raises, as soon as it does.
    """
    results = [None] * len(args)
    running = {}  # Future -> (step, worker).

    def start(step):
      with self._lock:
        live = [i for i, w in enumerate(self._workers)
                if w.address not in self._lost]
      worker = self._workers[assign_worker(step, len(self._workers), live)]
      running[worker.submit(comp, args[step])] = (step, worker)

    for step in range(len(args)):
      start(step)
    while running:
      done, _ = concurrent.futures.wait(
          running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in sorted(done, key=lambda f: running[f][0]):
        step, worker = running.pop(future)
        try:
          results[step] = future.result()
        except WorkerUnavailableError as e:
          self._lose(worker, e)
          start(step)
    return results

  def _run_once(self, comp, arg):
    """`comp(arg)` on the first live worker (the next one if it is lost)."""
    return self._run_steps(comp, [arg])[0]

  def invoke(self, comp, arg=None):
    if len(self._workers) == 1 or arg is None:
      return self._run_once(comp, arg)
    clients = cardinalities_utils.infer_cardinalities(
        arg, comp.type_signature.parameter).get(tff.CLIENTS)
    if not clients or clients < 2:
      return self._run_once(comp, arg)
    form = self._mergeable_form(comp)
    if form is None:
      return self._run_once(comp, arg)
    # Contiguous slices of the clients, one per worker given (fewer if there
    # are fewer clients), everything else replicated: TFF's own
    # partitioning. Lost workers keep their slices (run elsewhere), so the
    # split, and with it the rounding of the merge, never changes.
    parts = tff_mergeable.MergeableCompExecutionContextValue(
        arg, form.up_to_merge.type_signature.parameter,
        len(self._workers)).value()
    partials = self._run_steps(form.up_to_merge, parts)
    # Merged in slice order, so that the result does not depend on which
    # worker finished first.
    merged = partials[0]
    for partial in partials[1:]:
      merged = self._run_once(form.merge, tff.structure.Struct.unnamed(
          merged, partial))
    result_type = form.after_merge.type_signature.result
    if not _has_per_client_values(result_type):
      # The same on every slice: compute it once. Client data reaches such
      # a result only through the aggregation (merged): none is sent again.
      original_arg = without_client_values(
          parts[0], form.up_to_merge.type_signature.parameter)
      return self._run_once(form.after_merge,
                            tff.structure.Struct.unnamed(original_arg, merged))
    results = self._run_steps(form.after_merge, [
        tff.structure.Struct.unnamed(part, merged) for part in parts
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
    call_timeout_seconds: Optional[float] = _DEFAULT_CALL_TIMEOUT_SECONDS,
    retry_on_worker_loss: bool = True,
    min_workers: int = 1,
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
      that vanished mid-call, or a frozen worker process (within about this
      plus 20 s); 0 disables them. Workers refuse pings more frequent than
      every 5 minutes.
    call_timeout_seconds: Deadline of each gRPC call to a worker (the
      longest is a worker's part of one computation); a worker silent for
      longer is lost. None: no deadline.
    retry_on_worker_loss: Whether the work of a worker lost during a call
      runs again on the remaining ones (with a warning naming it), giving the
      same result; if False, the call raises `WorkerUnavailableError`.
    min_workers: With retries, a call raises `WorkerUnavailableError` once
      fewer than this many workers are left (1: go on while any is).

  Returns:
    The context; install it with `tff.framework.set_default_context` or use
    `set_remote_execution_context`. `bytes_moved(context)` reports its
    traffic.

  Raises:
    tff_perfed.validation.ArgumentValueError: If an address or option is
      malformed (e.g. `min_workers` above the number of workers).
    WorkerUnavailableError: If a worker is not ready within
      `timeout_seconds`.
  """
  addresses = parse_workers(workers)
  validation.require_int('default_num_clients', default_num_clients,
                         minimum=0)
  validation.require_real('timeout_seconds', timeout_seconds)
  validation.require_real('keepalive_seconds', keepalive_seconds)
  if call_timeout_seconds is not None:
    validation.require_real('call_timeout_seconds', call_timeout_seconds,
                            positive=True)
  if not isinstance(retry_on_worker_loss, bool):
    raise validation.ArgumentTypeError('retry_on_worker_loss',
                                       'True or False', retry_on_worker_loss)
  validation.require_int('min_workers', min_workers, minimum=1)
  if min_workers > len(addresses):
    raise validation.ArgumentValueError(
        'min_workers', f'at most the number of workers ({len(addresses)})',
        min_workers)
  built = [
      _Worker(address, default_num_clients, keepalive_seconds,
              call_timeout_seconds)
      for address in addresses
  ]
  try:
    _wait_until_ready(built, timeout_seconds)
  except WorkerUnavailableError:
    for worker in built:
      worker.close()
    raise
  return RemoteExecutionContext(built,
                                retry_on_worker_loss=retry_on_worker_loss,
                                min_workers=min_workers)


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

