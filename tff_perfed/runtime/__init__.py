"""Where TFF computations run. The algorithms never choose; programs do.

* `local_cpp`: TFF's local C++ worker, owned so that it never outlives the
  program (`set_local_execution_context`, `shutdown_workers`, `exit_now`).
* `default_context`: what importing `tff_perfed` does to TFF's own default
  context (replaces it by the owned equivalent).

Further runtimes (in-process, multi-machine) go beside these modules.
"""

from tff_perfed.runtime.default_context import own_default_context
from tff_perfed.runtime.local_cpp import create_local_execution_context
from tff_perfed.runtime.local_cpp import exit_now
from tff_perfed.runtime.local_cpp import running_worker_pids
from tff_perfed.runtime.local_cpp import set_local_execution_context
from tff_perfed.runtime.local_cpp import shutdown_workers
from tff_perfed.runtime.local_cpp import worker_binary_path
