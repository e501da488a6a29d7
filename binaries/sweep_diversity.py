r"""The AFML paper's comparison over diversity (section 5, Fig. 3-5).

  python -m tff_perfed.binaries.sweep_diversity   # digits, settings in sweep.flags
  python -m tff_perfed.binaries.sweep_diversity --dataset=cifar100 --data_dir=DIR \
      --sweep_zetas=0,0.3,0.6,0.9 --sweep_seeds=0,1,2 --rounds=2000

Starts from binaries/configs/sweep.flags (the command line overrides any of
them). For every zeta of --sweep_zetas and seed of --sweep_seeds, the data
is re-partitioned as the diversity scenario and FedAvg-FT, FedPer-Meta
(Per-FedAvg, first order), FedMAML (Per-FedAvg, exact) and AFML (or the arms
of --sweep_arms, among them ditto, pfedme, apfl, fedrep and fedper) are
trained with the same budget, each into
<sweep_output_dir>/zeta_<z>/seed_<s>/<name> (reruns resume). Writes
<sweep_output_dir>/sweep.csv (one row per algorithm, zeta and seed; see
`tff_perfed.program.diversity_sweep`), clients.json and the figures
accuracy_vs_zeta.png, rounds_to_target_vs_zeta.png, costs.png, clients.png
and fairness.png, and prints the table of means and standard deviations over
seeds.
"""

# First, before TensorFlow loads (seconds): an interrupt at any moment ends
# the program with this line, never a traceback (`binaries.exits`).
from tff_perfed.binaries import exits  # pylint: disable=g-bad-import-order

INTERRUPTED_MESSAGE = 'interrupted; rerun to resume.'
if __name__ == '__main__':
  exits.exit_quietly_on_signals(INTERRUPTED_MESSAGE)

# pylint: disable=g-import-not-at-top,wrong-import-position
import os
from typing import List

from absl import flags
import numpy as np

from tff_perfed.binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed import validation
from tff_perfed.program import diversity_sweep
from tff_perfed.program import plots
# pylint: enable=g-import-not-at-top,wrong-import-position

SWEEP_FLAGFILE = os.path.join(os.path.dirname(__file__), 'configs',
                              'sweep.flags')

_ZETAS = flags.DEFINE_list('sweep_zetas', ['0', '0.5', '1'],
                           'The diversity scenario\'s zeta values.')
_SEEDS = flags.DEFINE_list('sweep_seeds', ['0', '1', '2'],
                           'Seeds; each trains every algorithm per zeta.')
_ARMS = flags.DEFINE_list(
    'sweep_arms', [arm.name for arm in diversity_sweep.COMPARISON_SET],
    'The algorithms trained, in this order: any of ' +
    ', '.join(diversity_sweep.ARMS) + ' (settings of each from the run\'s '
    'flags, e.g. --ditto.personal_steps).')
_TARGET = flags.DEFINE_float(
    'target_accuracy', 0.8, 'The Pers.3 accuracy whose first evaluated round '
    'is rounds_to_target.')
_LOCAL_STEPS = flags.DEFINE_integer(
    'local_model_steps', None, 'SGD steps of each client\'s local model '
    '(fairness); default --rounds times --local_steps.')
_OUTPUT_DIR = flags.DEFINE_string('sweep_output_dir', 'runs/sweep',
                                  'Parent of the runs and the sweep files.')


def parse_flags(argv: List[str]) -> List[str]:
  """Reads sweep.flags first, so that the command line overrides it."""
  return run_flags.parse_flags([argv[0], f'--flagfile={SWEEP_FLAGFILE}',
                                *argv[1:]])


def _numbers(name: str, values: List[str], kind):
  try:
    return [kind(v) for v in values]
  except ValueError as e:
    raise validation.ArgumentValueError(
        name, f'a comma-separated list of {kind.__name__}s',
        ','.join(values)) from e


def format_table(rows) -> str:
  """Mean (std) over seeds per algorithm and zeta."""
  columns = ('personalized_accuracy@1', 'personalized_accuracy@5',
             'rounds_to_target', 'fairness')
  lines = [f'{"algorithm":<12} {"zeta":>5}  ' +
           '  '.join(f'{c:>24}' for c in columns)]
  keys = list(dict.fromkeys((r['algorithm'], r['zeta']) for r in rows))
  for algorithm, zeta in sorted(keys, key=lambda k: (k[1], k[0])):
    cells = []
    for column in columns:
      values = [r[column] for r in rows
                if (r['algorithm'], r['zeta']) == (algorithm, zeta)]
      reached = [float(v) for v in values if v is not None]
      if not reached:
        cells.append(f'{"never":>24}')
        continue
      text = f'{np.mean(reached):.4f} ({np.std(reached):.4f})'
      if len(reached) < len(values):
        text += f' {len(reached)}/{len(values)}'
      cells.append(f'{text:>24}')
    lines.append(f'{algorithm:<12} {zeta:>5g}  ' + '  '.join(cells))
  return '\n'.join(lines)


def main() -> None:
  config = run_flags.config_from_flags()
  zetas = _numbers('sweep_zetas', _ZETAS.value, float)
  seeds = _numbers('sweep_seeds', _SEEDS.value, int)
  arms = diversity_sweep.select_arms(_ARMS.value, argument='sweep_arms')
  result = diversity_sweep.run_diversity_sweep(
      config,
      zetas=zetas,
      seeds=seeds,
      output_dir=_OUTPUT_DIR.value,
      arms=arms,
      target_accuracy=_TARGET.value,
      local_model_steps=_LOCAL_STEPS.value)
  labels = {name: arm.label for name, arm in diversity_sweep.ARMS.items()}
  paths = plots.plot_sweep(result.rows, result.clients, labels,
                           _OUTPUT_DIR.value, rounds=config.rounds)
  print(f'\n{config.dataset}, {config.rounds} rounds, seeds '
        f'{", ".join(map(str, seeds))}: mean (std) over seeds; '
        f'rounds_to_target: first round with Pers.3 >= {_TARGET.value} '
        '(k/n: reached by k of n seeds).\n')
  print(format_table(result.rows))
  print(f'\n{os.path.join(_OUTPUT_DIR.value, diversity_sweep.SWEEP_FILE)}; '
        f'figures: {", ".join(os.path.basename(p) for p in paths)}')


if __name__ == '__main__':
  run_flags.run(main, interrupted_message=INTERRUPTED_MESSAGE,
                flags_parser=parse_flags)
