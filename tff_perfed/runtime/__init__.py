"""Where TFF computations run. The algorithms never choose; programs do.

* `registry`: the runtimes by name and `set_execution_context(name,
  **options)`, which installs one as TFF's default context: `cpp` (TFF's
  local C++ worker), `in_process` (the same computations in this process's
  TensorFlow, GPUs included), `remote` (TFF workers on other machines).
* `local_cpp`: TFF's local C++ worker, owned so that it never outlives the
  program (`set_local_execution_context`, the `cpp` shorthand,
  `shutdown_workers`, `exit_now`).
* `in_process`: a TFF executor that interprets compiled computations and
  runs their TF graphs (imported by `tensorflow_graphs`) in this process.
* `remote`: contexts over TFF's worker service.
* `default_context`: what importing this package does to TFF's own default
  context (replaces it by the owned `cpp` equivalent, or `in_process` on a
  GPU machine). Every sub-package of `tff_perfed` that uses TFF imports this
  one first, so that any import of the library owns the context.
"""

from tff_perfed.runtime.default_context import own_default_context
from tff_perfed.runtime.in_process import create_in_process_execution_context
from tff_perfed.runtime.in_process import local_devices
from tff_perfed.runtime.local_cpp import create_local_execution_context
from tff_perfed.runtime.local_cpp import exit_now
from tff_perfed.runtime.local_cpp import running_worker_pids
from tff_perfed.runtime.local_cpp import set_local_execution_context
from tff_perfed.runtime.local_cpp import shutdown_workers
from tff_perfed.runtime.local_cpp import worker_binary_path
from tff_perfed.runtime.registry import AUTO
from tff_perfed.runtime.registry import default_runtime
from tff_perfed.runtime.registry import names
from tff_perfed.runtime.registry import RUNTIMES
from tff_perfed.runtime.registry import set_execution_context

own_default_context()
