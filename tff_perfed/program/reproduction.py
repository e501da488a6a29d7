"""The papers' experiments as grids of resumable runs ("cells").

An experiment (`tff_perfed.program.reproductions`) is a grid: every cell is
one training run (`experiment.run_experiment`) with its own directory under
the experiment's output directory, `<output_dir>/cells/<cell name>/`. When
a cell's run ends, the cell's numbers (`Experiment.score`) are written with
its settings and wall time to `cell.json` in that directory, atomically;
a cell whose `cell.json` holds the same settings is never run again, so an
experiment interrupted at any moment and started again resumes in the cell
it was in (from that run's last checkpoint) and a finished experiment ends
at once, rewriting the same files from the same `cell.json`s:

* `cells.csv`: one row per cell, its grid coordinates and numbers;
* `summary.json`: the statistics and verdicts (`Experiment.summarize`),
  computed only from the cells' files, so that it is the same however many
  starts the experiment took;
* the experiment's figures (`Experiment.plot`).

A progress line per cell goes to stdout: its number, its coordinates, its
headline number and whether it was trained now or earlier.

An experiment can name others whose cells it shares (`Experiment.reuses`):
a cell whose settings (all but `output_dir`, `data_dir` and `strict_data`)
equal those of a finished cell of one of them, in the sibling directory of
that name, is not trained again; its `cell.json` is copied with this
experiment's key and a `reused_from` path. A run is a function of its
settings, so the copy is what training would give.

A run that diverges (`training_loop.TrainingDivergedError`) is an outcome,
not a failure of the experiment: a tuning grid is meant to try step sizes
too large for some arm. Its `cell.json` records the round it diverged at
(`CellResult.diverged_at_round`) and no numbers, it is not run again, and
the experiment decides what a diverged cell means (a setting not chosen; a
seed left out of the paired comparisons).
"""

import abc
import csv
import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from tff_perfed.evaluation import summaries
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config as run_config_lib
from tff_perfed.program import training_loop

CELLS_DIR = 'cells'
CELL_FILE = 'cell.json'
CELLS_CSV = 'cells.csv'
SUMMARY_FILE = 'summary.json'
DIVERGED_AT_ROUND = 'diverged_at_round'  # The only number of a diverged cell.

RunConfig = run_config_lib.RunConfig


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of an experiment's grid.

  Attributes:
    key: The cell's coordinates in the grid, in order (e.g. `phase`,
      `local_steps`, `seed`, `arm`); they name its directory and lead its
      row in `cells.csv`.
    config: The run's settings, `output_dir` included.
  """
  key: Mapping[str, Any]
  config: RunConfig

  @property
  def name(self) -> str:
    """`name=value` pairs joined by spaces, for progress lines."""
    return ' '.join(f'{k}={v}' for k, v in self.key.items())

  @property
  def directory_name(self) -> str:
    return '/'.join(f'{k}_{v}' for k, v in self.key.items())


@dataclasses.dataclass(frozen=True)
class CellResult:
  """What a finished cell measured (the content of its `cell.json`).

  Attributes:
    key: The cell's coordinates.
    row: Its numbers (scalars), its row of `cells.csv` after the key.
    details: Curves or per-client numbers for the summary and figures.
    seconds: Wall time of the start that finished it (loading, training,
      evaluating and scoring; an interrupted start's time is not counted).
  """
  key: Dict[str, Any]
  row: Dict[str, Any]
  details: Dict[str, Any]
  seconds: float

  @property
  def diverged_at_round(self) -> Optional[int]:
    """The round the run diverged at, or None if it finished."""
    return self.row.get(DIVERGED_AT_ROUND)


class Experiment(abc.ABC):
  """A paper's experiment: its grid, its scores, its statistics."""

  name: str = ''
  summary_line: str = ''
  flagfile: str = ''  # Path of the base settings (binaries/configs/).
  headline: str = ''  # The row's number shown in progress lines.
  # Experiments whose finished cells with the same settings this one takes
  # instead of training them again (in sibling directories of their names).
  reuses: Sequence[str] = ()

  def headline_value(self, row: Mapping[str, Any]) -> Any:
    """The number a progress line shows for a finished cell's row."""
    return row.get(self.headline)

  @abc.abstractmethod
  def num_cells(self, quick: bool) -> int:
    """How many cells `run_cells` runs (for progress lines)."""

  @abc.abstractmethod
  def run_cells(self, base: RunConfig, quick: bool,
                run_cell: Callable[[Mapping[str, Any], RunConfig],
                                   CellResult]) -> List[CellResult]:
    """Runs every cell through `run_cell(key, config)`, in order.

    Later cells may depend on earlier ones' results (the tuning phase
    chooses the comparison's settings).
    """

  @abc.abstractmethod
  def score(self, config: RunConfig, result: experiment.RunResult,
            dataset) -> Dict[str, Any]:
    """`{'row': {...}, 'details': {...}}` of a finished run."""

  @abc.abstractmethod
  def summarize(self, cells: Sequence[CellResult]) -> Dict[str, Any]:
    """The statistics and verdicts, from the cells only."""

  @abc.abstractmethod
  def plot(self, cells: Sequence[CellResult], summary: Mapping[str, Any],
           output_dir: str) -> List[str]:
    """Writes the figures to `output_dir`; returns their paths."""

  @abc.abstractmethod
  def format_summary(self, summary: Mapping[str, Any]) -> str:
    """The summary as the table printed at the end."""


def _finished(path: str, config: RunConfig) -> Optional[CellResult]:
  """The cell's result if `path` holds it for these settings."""
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return None  # Never written, or cut short: the run resumes.
  settings = saved.get('settings', {})
  if (config.changed_settings(settings) or
      settings.get('rounds') != config.rounds):
    return None  # `run_experiment` refuses or resumes it.
  return CellResult(key=saved['key'], row=saved['row'],
                    details=saved['details'], seconds=saved['seconds'])


# Settings that do not change what a run computes (where it reads and
# writes, how it checks its data): a cell is reused whatever they are.
_PLACE_SETTINGS = ('output_dir', 'data_dir', 'strict_data')


def same_run(config: RunConfig, settings: Mapping[str, Any]) -> bool:
  """Whether saved `settings` describe the run `config` describes."""
  if config.changed_settings(settings):
    return False
  current = config.to_json()
  return all(settings.get(name) == current[name]
             for name in RunConfig.RESUMABLE_SETTINGS
             if name not in _PLACE_SETTINGS)


class _ReusableCells:
  """The finished cells of other experiments, found by their settings."""

  def __init__(self, roots: Sequence[str]):
    self._roots = roots
    self._saved = None

  def _load(self) -> List[Tuple[str, Dict[str, Any]]]:
    saved = []
    for root in self._roots:
      for directory, _, files in sorted(os.walk(root)):
        if CELL_FILE not in files:
          continue
        path = os.path.join(directory, CELL_FILE)
        try:
          with open(path) as f:
            saved.append((path, json.load(f)))
        except (OSError, ValueError):
          continue  # Being written, or cut short: not finished.
    return saved

  def find(self, config: RunConfig) -> Optional[Tuple[str, Dict[str, Any]]]:
    """`(path, cell.json)` of a finished cell of the same run, or None."""
    if self._saved is None:
      self._saved = self._load()  # Once: other experiments are not running.
    for path, saved in self._saved:
      if same_run(config, saved.get('settings', {})):
        return path, saved
    return None


class _CellRunner:
  """Runs cells, skipping finished ones; shares each seed's dataset."""

  def __init__(self, exp: Experiment, output_dir: str, total: int,
               show_progress: bool, log: Callable[[str], None]):
    self._experiment = exp
    self._output_dir = output_dir
    self._total = total
    self._show_progress = show_progress
    self._log = log
    self._done = 0
    self._dataset_key = None
    self._dataset = None
    self._reusable = _ReusableCells([
        os.path.join(os.path.dirname(os.path.abspath(output_dir)), name,
                     CELLS_DIR) for name in exp.reuses])

  def _dataset_for(self, config: RunConfig):
    # Cells of one seed and zeta share their data; loading is per change.
    key = (config.dataset, config.data_dir, config.use_synthetic_data,
           config.seed_for(run_config_lib.SeedKind.PARTITION),
           config.diversity_zeta, config.dirichlet_concentration)
    if key != self._dataset_key:
      self._dataset = experiment.load_dataset(config)
      self._dataset_key = key
    return self._dataset

  def __call__(self, key: Mapping[str, Any], config: RunConfig) -> CellResult:
    cell = Cell(dict(key), config)
    directory = os.path.join(self._output_dir, CELLS_DIR, cell.directory_name)
    config = config.replace(output_dir=directory)
    path = os.path.join(directory, CELL_FILE)
    self._done += 1
    prefix = f'[{self._done}/{self._total}] {self._experiment.name} {cell.name}'
    result = _finished(path, config)
    if result is not None:
      self._log(f'{prefix}: {self._headline(result)} (finished earlier)')
      return result
    reused = self._reusable.find(config)
    if reused is not None:
      source, saved = reused
      result = CellResult(key=dict(key), row=saved['row'],
                          details=saved['details'], seconds=saved['seconds'])
      self._write(path, result, config,
                  reused_from=os.path.relpath(source, self._output_dir))
      self._log(f'{prefix}: {self._headline(result)} (the same run as '
                f'{os.path.relpath(source, self._output_dir)})')
      return result
    start = time.monotonic()
    dataset = self._dataset_for(config)
    try:
      run = experiment.run_experiment(config, dataset=dataset,
                                      show_progress=self._show_progress)
    except training_loop.TrainingDivergedError as e:
      scored = {'row': {DIVERGED_AT_ROUND: e.round_num}, 'details': {}}
    else:
      scored = self._experiment.score(config, run, dataset)
    result = CellResult(key=dict(key), row=scored['row'],
                        details=scored['details'],
                        seconds=round(time.monotonic() - start, 1))
    self._write(path, result, config)
    self._log(f'{prefix}: {self._headline(result)} (trained in '
              f'{result.seconds:.0f} s)')
    return result

  @staticmethod
  def _write(path: str, result: CellResult, config: RunConfig,
             **extra: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    outputs.write_json(path, {'key': result.key, 'row': result.row,
                              'details': result.details,
                              'seconds': result.seconds,
                              'settings': config.to_json(), **extra})

  def _headline(self, result: CellResult) -> str:
    if result.diverged_at_round is not None:
      return f'diverged at round {result.diverged_at_round}'
    name = self._experiment.headline
    value = self._experiment.headline_value(result.row)
    shown = f'{value:.4f}' if isinstance(value, float) else value
    return f'{name} {shown}'


def write_cells_csv(path: str, cells: Sequence[CellResult]) -> None:
  """`cells.csv`: the key columns, then the numbers, one row per cell."""
  columns = list(dict.fromkeys(
      [k for c in cells for k in c.key] +
      [k for c in cells for k in c.row] + ['seconds']))
  rows = [dict(c.key, **c.row, seconds=c.seconds) for c in cells]

  def write(f):
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: '' if row.get(k) is None else row[k]
                       for k in columns})

  outputs.write_atomically(path, write)


@dataclasses.dataclass(frozen=True)
class ReproductionResult:
  """A finished experiment: its cells, summary and files."""
  cells: List[CellResult]
  summary: Dict[str, Any]
  figures: List[str]


def run_reproduction(exp: Experiment, base: RunConfig, *, output_dir: str,
                     quick: bool = False, show_progress: bool = False,
                     log: Callable[[str], None] = print
                    ) -> ReproductionResult:
  """Runs (or resumes) every cell of `exp`; writes its CSV, summary, figures.

  Args:
    exp: The experiment.
    base: The settings every cell starts from (the experiment's flagfile
      and the command line); each cell replaces its grid's settings and
      `output_dir`.
    output_dir: The experiment's directory (cells, CSV, summary, figures).
    quick: The experiment's small grid, for tests.
    show_progress: Each run's progress bar on stderr.
    log: Where progress lines go.

  Returns:
    A `ReproductionResult`.

  Raises:
    experiment.RunDirectoryError: If a cell's directory holds a run with
      other settings (one line naming them).
  """
  os.makedirs(output_dir, exist_ok=True)
  runner = _CellRunner(exp, output_dir, exp.num_cells(quick), show_progress,
                       log)
  cells = exp.run_cells(base, quick, runner)
  write_cells_csv(os.path.join(output_dir, CELLS_CSV), cells)
  summary = dict(exp.summarize(cells),
                 experiment=exp.name, quick=quick,
                 cells=len(cells),
                 training_seconds=round(sum(c.seconds for c in cells), 1),
                 settings=base.replace(output_dir=output_dir).to_json())
  outputs.write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
  figures = exp.plot(cells, summary, output_dir)
  return ReproductionResult(cells=cells, summary=summary, figures=figures)


# A claim "a beats b" against the paired 95% interval of a - b.
HOLDS = 'holds'
DOES_NOT_HOLD = 'does not hold'
CANNOT_TELL = 'cannot be told apart at this budget'


def claim_verdict(a: Sequence[float], b: Sequence[float], *,
                  higher_is_better: bool = True,
                  confidence: float = 0.95) -> Dict[str, Any]:
  """Whether "a beats b" holds over paired seeds.

  Holds when the whole `confidence` interval of the mean per-seed
  difference a - b lies on the better side of zero, does not hold when it
  lies on the worse side, and cannot be told apart when it covers zero.

  Args:
    a: The claimed better arm's value per seed.
    b: The other arm's values for the same seeds, in the same order.
    higher_is_better: Whether larger values are better (accuracy) or not
      (rounds, bytes).
    confidence: The interval's level.

  Returns:
    `{'mean', 'std', 'low', 'high', 'num_seeds', 'num_better', 'verdict'}`.
  """
  d = summaries.paired_difference(a, b, confidence=confidence)
  better = d.low > 0 if higher_is_better else d.high < 0
  worse = d.high < 0 if higher_is_better else d.low > 0
  num_better = d.num_positive if higher_is_better else sum(
      1 for x, y in zip(a, b) if x < y)
  return {
      'mean': d.mean, 'std': d.std, 'low': d.low, 'high': d.high,
      'num_seeds': d.num_seeds, 'num_better': num_better,
      'verdict': HOLDS if better else DOES_NOT_HOLD if worse else CANNOT_TELL,
  }


def format_tuning(tuning: Mapping[str, Any],
                  labels: Mapping[str, str]) -> List[str]:
  """A summary's tuning: the settings chosen, then those that diverged.

  Args:
    tuning: `{'seed', 'zeta' (or None), 'chosen': {arm: setting},
      'tried': [{'arm', 'setting', 'diverged_at_round'?}]}`.
    labels: `{arm: label}`.
  """
  where = f'seed {tuning["seed"]}' + (
      f', zeta {tuning["zeta"]:g}' if tuning.get('zeta') is not None else '')
  lines = [f'Tuning ({where}): chosen ' + '; '.join(
      f'{labels[a]}: {s}' for a, s in tuning['chosen'].items())]
  lines += [f'  {labels[e["arm"]]} {e["setting"]}: diverged at round '
            f'{e["diverged_at_round"]}'
            for e in tuning['tried'] if 'diverged_at_round' in e]
  return lines


def format_claim(claim: Mapping[str, Any]) -> str:
  """`+0.0123 [+0.0040, +0.0206], 5/5 seeds: holds`."""
  return (f'{claim["mean"]:+.4f} [{claim["low"]:+.4f}, {claim["high"]:+.4f}]'
          f', {claim["num_better"]}/{claim["num_seeds"]} seeds: '
          f'{claim["verdict"]}')
