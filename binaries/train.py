r"""Trains one algorithm and evaluates per-client personalization.

  python -m binaries.train --algorithm=per_fedavg --dataset=digits \
      --rounds=100 --output_dir=runs/digits_per_fedavg
  python -m binaries.train --flagfile=binaries/configs/demo.flags \
      --algorithm=fedavg --output_dir=runs/demo_fedavg

Writes to --output_dir: metrics.csv and tensorboard/ (per-round metrics),
checkpoints/ (a rerun with the same --output_dir resumes), flags.json,
clients.csv (the last evaluation, per client), accuracy.png and
summary.json (see `tff_perfed.program.experiment`). Bad input prints one
line to stderr and exits with 2 before anything in --output_dir is touched.
"""

from absl import app

from binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed.program import experiment


def main() -> None:
  result = experiment.run_experiment(run_flags.config_from_flags())
  for name in sorted(result.summary):
    if '/' not in name:
      print(f'{name}: {result.summary[name]:.4f}')


if __name__ == '__main__':
  app.run(
      run_flags.main_wrapper(
          main,
          interrupted_message='interrupted; rerun to resume from the last '
          'checkpoint.'),
      flags_parser=run_flags.parse_flags)
