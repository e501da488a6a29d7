"""The runtimes a program can run TFF computations on, by name.

* `cpp`: TFF's local C++ worker, owned (`local_cpp`). CPU only.
* `in_process`: the same computations in this process's TensorFlow
  (`in_process`): GPUs, and faster than the worker on CPUs.
* `remote`: TFF's worker service on other machines (`remote`), clients
  split across the workers.

`set_execution_context(name, **options)` installs one as TFF's default
context; the algorithms never choose. `AUTO` picks `default_runtime()`:
`remote` when workers are given, otherwise `in_process`, the fastest
available (`binaries/benchmark.py` measures it against `cpp`; see the
README) and the only one that can use a GPU.

Adding a runtime is one module with a `create_..._execution_context` and one
`Runtime` entry in `RUNTIMES`.
"""

import dataclasses
from typing import Any, Callable, Dict, Sequence

import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.runtime import in_process
from tff_perfed.runtime import local_cpp

AUTO = 'auto'


@dataclasses.dataclass(frozen=True)
class Runtime:
  """One way to execute TFF computations.

  Attributes:
    name: What programs call it (`--runtime=<name>`).
    summary: One line for flag help.
    create_context: `create_context(**options)` -> a TFF context.
  """
  name: str
  summary: str
  create_context: Callable[..., Any]


def _create_remote_context(**options):
  # Imported here: the remote runtime pulls in gRPC plumbing that local runs
  # never need.
  from tff_perfed.runtime import remote  # pylint: disable=g-import-not-at-top
  return remote.create_remote_execution_context(**options)


RUNTIMES: Dict[str, Runtime] = {
    runtime.name: runtime for runtime in (
        Runtime(
            name='cpp',
            summary='TFF\'s local C++ worker (CPU only)',
            create_context=local_cpp.create_local_execution_context),
        Runtime(
            name='in_process',
            summary='the same computations in this process\'s TensorFlow, '
            'client work spread over the local GPUs (or the CPU)',
            create_context=in_process.create_in_process_execution_context),
        Runtime(
            name='remote',
            summary='TFF workers on other machines (--workers=host:port,...), '
            'clients split across them',
            create_context=_create_remote_context),
    )
}


def names() -> Sequence[str]:
  """Registered runtime names, in registration order."""
  return list(RUNTIMES)


def default_runtime(*, workers: Sequence[str] = ()) -> str:
  """What `AUTO` means: `remote` with workers, else `in_process`."""
  return 'remote' if workers else 'in_process'


def get(name: str) -> Runtime:
  """The registered runtime `name`.

  Raises:
    tff_perfed.validation.ArgumentValueError: If no runtime has that name;
      the message lists the known ones.
  """
  validation.require_choice('runtime', name, RUNTIMES)
  return RUNTIMES[name]


def set_execution_context(name: str = AUTO, *, handle_sigterm: bool = True,
                          **options) -> Any:
  """Installs the runtime `name` as TFF's default execution context.

  Args:
    name: A name in `RUNTIMES`, or `AUTO` (`default_runtime`, given the
      `workers` option if any).
    handle_sigterm: On SIGTERM, stop any local worker and exit with 143 at
      once, unless the program handles SIGTERM itself (a binary does, see
      `binaries/exits.py`). Only possible from the main thread; ignored
      elsewhere.
    **options: The runtime's own options: `cpp`: `default_num_clients`,
      `max_concurrent_computation_calls`, `worker_log_path`; `in_process`:
      `devices`, `parallelism`, `default_num_clients`, `malloc_arenas`;
      `remote`: `workers` (required), `default_num_clients`, the timeouts
      and the failover options (`retry_on_worker_loss`, `min_workers`) of
      `remote.create_remote_execution_context`.

  Returns:
    The installed context.

  Raises:
    tff_perfed.validation.ArgumentValueError: If `name` is unknown.
    TypeError: If an option does not belong to the runtime.
  """
  if name == AUTO:
    name = default_runtime(workers=options.get('workers') or ())
  runtime = get(name)
  context = runtime.create_context(**options)
  tff.framework.set_default_context(context)
  if handle_sigterm:
    local_cpp.handle_sigterm_unless_handled()
  return context
