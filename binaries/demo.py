r"""The main job: FedAvg vs Per-FedAvg on digits over several seeds.

  python -m tff_perfed.binaries.demo [--demo_seeds=0,1,2] [--demo_output_dir=runs/demo]
  python -m tff_perfed.binaries.demo --demo_arms=fedavg:0,fedavg:1,ditto:0,per_fedavg:1

Starts from the settings in binaries/configs/demo.flags (the command line
overrides any of them), trains FedAvg and Per-FedAvg (first order) once per
seed into <demo_output_dir>/seed_<s>/<algorithm>, and prints the paper's
three arms (FedAvg, FedAvg + one step, Per-FedAvg + one step) as mean and
standard deviation over seeds, the paired difference Per-FedAvg + 1 step
minus FedAvg + 1 step with its confidence interval, and the verdict.
--demo_arms compares other arms, `algorithm:steps` of any registered
algorithm; the difference is then the last arm minus the one before.
Writes <demo_output_dir>/summary.json (per-seed numbers and statistics) and
comparison.png (the arms' curves). Rerunning resumes.
"""

# First, before TensorFlow loads (seconds): an interrupt at any moment ends
# the program with this line, never a traceback (`binaries.exits`).
from tff_perfed.binaries import exits  # pylint: disable=g-bad-import-order

INTERRUPTED_MESSAGE = 'interrupted; rerun to resume from the checkpoints.'
if __name__ == '__main__':
  exits.exit_quietly_on_signals(INTERRUPTED_MESSAGE)

# pylint: disable=g-import-not-at-top,wrong-import-position
import os
from typing import List

from absl import flags

from tff_perfed.binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed import validation
from tff_perfed.program import comparison
from tff_perfed.program import outputs
# pylint: enable=g-import-not-at-top,wrong-import-position

DEMO_FLAGFILE = os.path.join(os.path.dirname(__file__), 'configs',
                             'demo.flags')

_DEMO_SEEDS = flags.DEFINE_list('demo_seeds', ['0', '1', '2', '3', '4'],
                                'Seeds; each trains every algorithm of '
                                '--demo_arms.')
_DEMO_ROUNDS = flags.DEFINE_integer(
    'demo_rounds', None, 'Rounds per run; default --rounds of demo.flags.')
_DEMO_OUTPUT_DIR = flags.DEFINE_string(
    'demo_output_dir', 'runs/demo', 'Parent of the runs and the summary.')
_DEMO_ARMS = flags.DEFINE_list(
    'demo_arms', comparison.arms_spec(comparison.PAPER_ARMS),
    'The rows of the table, algorithm:steps each: the algorithm\'s '
    'personalized scores after that many adaptation steps (0 to '
    '--personalization_steps), e.g. ditto:1. Each algorithm trains once per '
    'seed. The paired difference and the verdict are the LAST arm minus the '
    'one before it. Default: the paper\'s FedAvg, FedAvg + 1 step, '
    'Per-FedAvg + 1 step.')
_DEMO_FINAL_EVALUATIONS = flags.DEFINE_integer(
    'demo_final_evaluations', 3, 'A run\'s score is the mean of its last '
    'this many evaluations (with demo.flags: rounds 150, 175 and 200).')


def parse_flags(argv: List[str]) -> List[str]:
  """Reads demo.flags first, so that the command line overrides it."""
  return run_flags.parse_flags([argv[0], f'--flagfile={DEMO_FLAGFILE}',
                                *argv[1:]])


def main() -> None:
  config = run_flags.config_from_flags()
  if _DEMO_ROUNDS.value is not None:
    config = config.replace(rounds=_DEMO_ROUNDS.value)
  try:
    seeds = [int(seed) for seed in _DEMO_SEEDS.value]
  except ValueError as e:
    raise validation.ArgumentValueError(
        'demo_seeds', 'a comma-separated list of non-negative ints',
        ','.join(_DEMO_SEEDS.value)) from e
  # Checked before any run starts, so that bad arms touch nothing.
  arms = comparison.parse_arms(_DEMO_ARMS.value,
                               max_steps=config.personalization_steps,
                               argument='demo_arms')
  result = comparison.run_seed_comparison(
      config,
      seeds=seeds,
      output_dir=_DEMO_OUTPUT_DIR.value,
      arms=arms,
      final_evaluations=_DEMO_FINAL_EVALUATIONS.value)
  print(f'\n{config.dataset}, {config.rounds} rounds, seeds '
        f'{", ".join(map(str, seeds))} (settings: '
        f'{_DEMO_OUTPUT_DIR.value}/seed_*/*/{outputs.CONFIG_FILE}): mean over '
        'clients of each run\'s personalized test scores (mean of its last '
        f'{_DEMO_FINAL_EVALUATIONS.value} evaluations), then over seeds.\n')
  print(comparison.format_table(result))
  print(f'Per-seed numbers: {_DEMO_OUTPUT_DIR.value}/summary.json; curves: '
        f'{_DEMO_OUTPUT_DIR.value}/comparison.png')


if __name__ == '__main__':
  run_flags.run(main, interrupted_message=INTERRUPTED_MESSAGE,
                flags_parser=parse_flags)
