"""Programs built from the library: one run, and a comparison over seeds.

* `run_config`: `RunConfig`, one run's validated settings.
* `training_loop`: `run_training_loop`, TFF's training loop with the
  evaluation schedule, checkpoints and flat metric releases a run needs.
* `experiment`: `run_experiment(config)`, data + algorithm + evaluation +
  loop + output files.
* `comparison`: `run_seed_comparison`, algorithms over several seeds with
  spread and a paired confidence interval.
* `checkpoints`: TFF's file state manager, resuming past a damaged
  checkpoint and cleaning up interrupted saves.
* `run_lock`: one run at a time per output directory.
* `memory_probe`: resident memory of a run, driver plus workers, after
  every round (`binaries/benchmark.py --suite=memory`).
* `outputs`, `plots`: the files a run writes (atomically, strict JSON,
  failing writes as one-line `OutputWriteError`s).
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import

from tff_perfed.program.experiment import run_experiment
from tff_perfed.program.experiment import RunDirectoryError
from tff_perfed.program.run_config import RunConfig
from tff_perfed.program.training_loop import run_training_loop
