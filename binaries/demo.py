r"""The main job: FedAvg vs Per-FedAvg on digits, the paper's Figure 1.

  python -m binaries.demo [--rounds=...] [--output_dir=runs/demo]

Trains FedAvg and Per-FedAvg (first-order) on the embedded digits split of
Fallah et al. (2020), section 5, with the paper's MLP, into
<output_dir>/fedavg and <output_dir>/per_fedavg, then prints mean
personalized test accuracy at k = 0, 1 and 5 adaptation steps: FedAvg
(k = 0), FedAvg + one step and Per-FedAvg + one step. Rerunning resumes
from the checkpoints.
"""

import sys
from typing import List

from absl import app
from absl import flags
from absl import logging

from binaries import common
from binaries import train
from tff_perfed import runtime

_DEMO_ROUNDS = flags.DEFINE_integer('demo_rounds', 300,
                                    'Rounds for each algorithm.')
_DEMO_OUTPUT_DIR = flags.DEFINE_string('demo_output_dir', 'runs/demo',
                                       'Parent of the two run directories.')

# Shared by both algorithms so the comparison is like for like.
DEMO_CONFIG = dict(
    hessian_mode='first_order',
    dataset='digits',
    data_dir=None,
    use_synthetic_data=False,
    clients_per_round=10,
    local_steps=4,
    alpha=0.02,
    beta=0.05,
    batch_size=10,
    batch_size_prime=10,
    batch_size_double_prime=10,
    hessian_free_delta=1e-3,
    personalization_steps=5,
    eval_every=25,
    num_eval_clients=0,
    seed=0,
)
TABLE_STEPS = (0, 1, 5)


def format_table(summaries) -> str:
  header = f'{"algorithm":<12}' + ''.join(
      f'{"acc@" + str(k):>10}' for k in TABLE_STEPS)
  lines = [header, '-' * len(header)]
  for name, summary in summaries.items():
    lines.append(f'{name:<12}' + ''.join(
        f'{summary[f"personalized_accuracy@{k}"]:>10.4f}'
        for k in TABLE_STEPS))
  return '\n'.join(lines)


def main(argv: List[str]) -> None:
  del argv
  common.quiet_logging()
  runtime.set_local_execution_context()
  summaries = {}
  try:
    for algorithm in ('fedavg', 'per_fedavg'):
      config = dict(
          DEMO_CONFIG,
          algorithm=algorithm,
          rounds=_DEMO_ROUNDS.value,
          output_dir=f'{_DEMO_OUTPUT_DIR.value}/{algorithm}')
      summaries[algorithm] = train.run(config)
  except train.UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print('interrupted; rerun to resume from the checkpoints.',
          file=sys.stderr)
    runtime.exit_now(130)
  finally:
    runtime.shutdown_workers()
  print('\nMean personalized test accuracy over all 50 users after k local '
        f'SGD steps (alpha={DEMO_CONFIG["alpha"]}):')
  print(format_table(summaries))


if __name__ == '__main__':
  app.run(main)
