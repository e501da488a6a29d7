r"""Runs one of the papers' experiments, resumably, cell by cell.

  python -m tff_perfed.binaries.reproduce --experiment=per_fedavg_mnist
  python -m tff_perfed.binaries.reproduce --experiment=afml_shakespeare \
      [--reproduce_output_dir=runs/reproduce/afml_shakespeare] [--quick]

Starts from the experiment's flagfile, binaries/configs/<experiment>.flags
(any run flag on the command line overrides it), and runs every cell of its
grid (`tff_perfed.program.reproductions`) into
<reproduce_output_dir>/cells/... (default docs/reproduce/<experiment>, where
git keeps each finished cell's cell.json), printing one line per cell. Interrupted,
the same command resumes in the cell it was in; a finished cell is never
run again, so a finished experiment ends at once with the same files.
Writes cells.csv, summary.json and the figures to <reproduce_output_dir>,
and prints the summary's table. --quick runs the experiment's small grid
(seconds per cell), for tests; its default directory is
runs/reproduce/<experiment>_quick.
"""

# First, before TensorFlow loads (seconds): an interrupt at any moment ends
# the program with this line, never a traceback (`binaries.exits`).
from tff_perfed.binaries import exits  # pylint: disable=g-bad-import-order

INTERRUPTED_MESSAGE = 'interrupted; rerun the same command to resume.'
if __name__ == '__main__':
  exits.exit_quietly_on_signals(INTERRUPTED_MESSAGE)

# pylint: disable=g-import-not-at-top,wrong-import-position
import os
import sys
from typing import List

from absl import flags

from tff_perfed.binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed import validation
from tff_perfed.program import reproduction
from tff_perfed.program import reproductions
# pylint: enable=g-import-not-at-top,wrong-import-position

CONFIGS_DIR = os.path.join(os.path.dirname(__file__), 'configs')
# The full experiments' results live in the repository: git keeps each
# cell's cell.json (docs/reproduce/.gitignore), enough for a fresh clone to
# resume an experiment, or to rewrite its summary and figures at once.
RESULTS_DIR = os.path.join('docs', 'reproduce')

_EXPERIMENT = flags.DEFINE_string(
    'experiment', None, 'The experiment: ' + '; '.join(
        f'{e.name}: {e.summary_line}'
        for e in reproductions.EXPERIMENTS.values()))
_QUICK = flags.DEFINE_bool(
    'quick', False, 'Run the experiment\'s small grid (for tests).')
_OUTPUT_DIR = flags.DEFINE_string(
    'reproduce_output_dir', None, 'The experiment\'s directory; default '
    'docs/reproduce/<experiment> (committed), or with --quick '
    'runs/reproduce/<experiment>_quick.')
_PROGRESS = flags.DEFINE_bool(
    'progress_bars', False, 'Show each run\'s progress bar on stderr.')


def _experiment_name(argv: List[str]) -> str:
  """--experiment's value, read before absl parses (it picks the flagfile)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--experiment='):
      return arg.split('=', 1)[1]
    if arg == '--experiment' and i + 1 < len(argv):
      return argv[i + 1]
  return ''


def parse_flags(argv: List[str]) -> List[str]:
  """Reads the experiment's flagfile first; the command line overrides it."""
  name = _experiment_name(argv[1:])
  if name not in reproductions.EXPERIMENTS:
    # Parse the command line alone: --help works, and an unknown or missing
    # name is the one-line error of `main`.
    return run_flags.parse_flags(argv)
  flagfile = os.path.join(CONFIGS_DIR, reproductions.get(name).flagfile)
  return run_flags.parse_flags([argv[0], f'--flagfile={flagfile}',
                                *argv[1:]])


def main() -> None:
  if not _EXPERIMENT.value:
    raise validation.ArgumentValueError(
        'experiment', f'one of {", ".join(reproductions.names())}', None)
  exp = reproductions.get(_EXPERIMENT.value)
  config = run_flags.config_from_flags()
  if _OUTPUT_DIR.value:
    output_dir = _OUTPUT_DIR.value
  elif _QUICK.value:
    output_dir = os.path.join('runs', 'reproduce', exp.name + '_quick')
  else:
    output_dir = os.path.join(RESULTS_DIR, exp.name)

  def log(line: str) -> None:
    print(line, flush=True)

  result = reproduction.run_reproduction(
      exp, config, output_dir=output_dir, quick=_QUICK.value,
      show_progress=_PROGRESS.value, log=log)
  print(f'\n{exp.name}{" (quick)" if _QUICK.value else ""}: '
        f'{len(result.cells)} cells, '
        f'{result.summary["training_seconds"] / 60:.1f} minutes of training '
        'in all.\n')
  print(exp.format_summary(result.summary))
  print(f'\n{os.path.join(output_dir, reproduction.CELLS_CSV)}, '
        f'{os.path.join(output_dir, reproduction.SUMMARY_FILE)}; figures: '
        f'{", ".join(os.path.basename(p) for p in result.figures)}')
  sys.stdout.flush()


if __name__ == '__main__':
  run_flags.run(main, interrupted_message=INTERRUPTED_MESSAGE,
                flags_parser=parse_flags)
