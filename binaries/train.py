r"""Trains one algorithm and evaluates per-client personalization.

  python -m tff_perfed.binaries.train --algorithm=per_fedavg --dataset=digits \
      --rounds=100 --output_dir=runs/digits_per_fedavg
  python -m tff_perfed.binaries.train --flagfile=binaries/configs/demo.flags \
      --algorithm=fedavg --output_dir=runs/demo_fedavg

Writes to --output_dir: metrics.csv and tensorboard/ (per-round metrics),
checkpoints/ (a rerun with the same --output_dir resumes), flags.json,
clients.csv (the last evaluation, per client), accuracy.png and
summary.json (see `tff_perfed.program.experiment`). Bad input prints one
line to stderr and exits with 2 before anything in --output_dir is touched.
"""

# First, before TensorFlow loads (seconds): an interrupt at any moment ends
# the program with this line, never a traceback (`binaries.exits`).
from tff_perfed.binaries import exits  # pylint: disable=g-bad-import-order

INTERRUPTED_MESSAGE = 'interrupted; rerun to resume from the last checkpoint.'
if __name__ == '__main__':
  exits.exit_quietly_on_signals(INTERRUPTED_MESSAGE)

# pylint: disable=g-import-not-at-top,wrong-import-position
from tff_perfed.binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed.program import experiment
# pylint: enable=g-import-not-at-top,wrong-import-position


def main() -> None:
  result = experiment.run_experiment(run_flags.config_from_flags())
  for name in sorted(result.summary):
    if '/' not in name:
      value = result.summary[name]
      # Counts (evaluated clients, clients left out) print as integers.
      print(f'{name}: {value}' if isinstance(value, int) else
            f'{name}: {value:.4f}')


if __name__ == '__main__':
  run_flags.run(main, interrupted_message=INTERRUPTED_MESSAGE)
