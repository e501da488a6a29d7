"""Algorithms compared over several seeds: the paper's Figure 1, honestly.

Fallah et al. (2020), section 5, compare FedAvg (its model as is), FedAvg +
one step and Per-FedAvg + one step of local SGD at test time. One training
run is one sample of its randomness, so `run_seed_comparison` trains every
algorithm once per seed (the runs of one seed share the data split, the
initial weights and the sampled clients) and reports, per arm of the table,
the mean and spread over seeds, and for the question the paper asks -- does
Per-FedAvg + 1 step beat FedAvg + 1 step? -- the paired per-seed difference
with a Student-t confidence interval. Other arms, of any registered
algorithm (`parse_arms`: `ditto:1`), ask the same question of the last arm
and the one before it.

Each seed's number is the mean personalized accuracy over clients, averaged
over the last `final_evaluations` evaluations of the run: at the end of
training the model still moves from round to round, and averaging a few
evaluations measures where training ends up rather than where its last
round happened to land.
"""

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tff_perfed import validation
from tff_perfed.algorithms import registry
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import run_config as run_config_lib

SUMMARY_FILE = 'summary.json'
FIGURE_FILE = 'comparison.png'


@dataclasses.dataclass(frozen=True)
class Arm:
  """One row of the comparison: an algorithm scored after `steps` steps."""
  label: str
  algorithm: str
  steps: int


# The paper's three arms (section 5, Figure 1).
PAPER_ARMS = (
    Arm('FedAvg', 'fedavg', 0),
    Arm('FedAvg + 1 step', 'fedavg', 1),
    Arm('Per-FedAvg + 1 step', 'per_fedavg', 1),
)

ARMS_EXPECTED = 'a comma-separated list of algorithm:steps (e.g. fedavg:1)'


def arm_label(algorithm: str, steps: int) -> str:
  """`FedAvg`, `Ditto + 1 step`, `pFedMe + 5 steps`: the PAPER_ARMS style."""
  name = registry.get(algorithm).label
  if steps == 0:
    return name
  return f'{name} + {steps} step{"" if steps == 1 else "s"}'


def arms_spec(arms: Sequence[Arm]) -> List[str]:
  """`['fedavg:0', ...]`, what `parse_arms` reads back into `arms`."""
  return [f'{arm.algorithm}:{arm.steps}' for arm in arms]


def parse_arms(specs: Sequence[str], *, max_steps: int,
               argument: str = 'arms') -> Tuple[Arm, ...]:
  """Arms from `algorithm:steps` strings, labelled by `arm_label`.

  `parse_arms(arms_spec(PAPER_ARMS), ...)` is `PAPER_ARMS`, labels and all.

  Args:
    specs: One `algorithm:steps` per arm, in the table's order; the
      comparison's difference is the last arm minus the one before.
    max_steps: The most adaptation steps a run scores (the run's
      `personalization_steps`).
    argument: The name errors give the specs (a binary's flag).

  Returns:
    The arms, at least two, no two alike.

  Raises:
    tff_perfed.validation.ArgumentValueError: Naming `argument`, on fewer
      than two arms, a malformed or repeated spec, an unknown algorithm (the
      message lists the registered ones), or steps not an int in
      [0, max_steps].
  """
  specs = [spec.strip() for spec in specs]
  if len(specs) < 2:
    raise validation.ArgumentValueError(
        argument, f'{ARMS_EXPECTED} of two arms or more (the difference is '
        'the last arm minus the one before)', ','.join(specs))
  arms = []
  for spec in specs:
    algorithm, colon, steps_text = spec.partition(':')
    if not colon:
      raise validation.ArgumentValueError(argument, ARMS_EXPECTED, spec)
    try:
      registry.get(algorithm)
    except validation.ArgumentError as e:
      raise validation.ArgumentValueError(
          argument, f'{ARMS_EXPECTED} whose algorithm is {e.expected}',
          spec) from e
    try:
      steps = int(steps_text)
    except ValueError:
      steps = None
    if steps is None or not 0 <= steps <= max_steps:
      raise validation.ArgumentValueError(
          argument, f'{ARMS_EXPECTED} whose steps are an int from 0 to '
          f'the run\'s personalization_steps ({max_steps})', spec)
    arm = Arm(arm_label(algorithm, steps), algorithm, steps)
    if arm in arms:
      raise validation.ArgumentValueError(
          argument, f'{ARMS_EXPECTED} without repeats', spec)
    arms.append(arm)
  return tuple(arms)


# The first metric decides the verdict; the others are reported beside it.
METRICS = ('accuracy', 'loss')


def _higher_is_better(metric: str) -> bool:
  return 'loss' not in metric and 'error' not in metric


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
  """Per-seed scores and their statistics, per metric.

  Attributes:
    seeds: The seeds, in order.
    metrics: The metrics compared; the first decides the verdict.
    scores: `{metric: {arm label: [score per seed]}}`.
    difference_labels: `(last arm, the one before)`: whose difference it is.
    curves: `{arm label: {round: [first metric per seed]}}`.
    confidence: Confidence level of the differences' intervals.
  """
  seeds: List[int]
  metrics: Sequence[str]
  scores: Dict[str, Dict[str, List[float]]]
  difference_labels: Sequence[str]
  curves: Dict[str, Dict[int, List[float]]]
  confidence: float = 0.95

  @property
  def spreads(self) -> Dict[str, Dict[str, summaries.Spread]]:
    """`{metric: {arm label: Spread over seeds}}`."""
    return {metric: {label: summaries.spread(values)
                     for label, values in by_arm.items()}
            for metric, by_arm in self.scores.items()}

  @property
  def differences(self) -> Dict[str, summaries.PairedDifference]:
    """`{metric: PairedDifference}` of the last two arms (e.g. Per-FedAvg +
    1 step minus FedAvg + 1 step), paired by seed."""
    first, second = self.difference_labels
    return {metric: summaries.paired_difference(
        by_arm[first], by_arm[second], confidence=self.confidence)
            for metric, by_arm in self.scores.items()}

  def verdict(self, metric: Optional[str] = None) -> str:
    """One sentence saying what the seeds support for `metric`."""
    metric = metric or self.metrics[0]
    first, second = self.difference_labels
    d = self.differences[metric]
    interval = (f'{100 * d.confidence:.0f}% CI [{d.low:+.4f}, {d.high:+.4f}]'
                f', {d.num_positive} of {d.num_seeds} seeds above zero')
    name = f'personalized {metric}'
    above, below = d.low > 0, d.high < 0  # The whole interval.
    better = above if _higher_is_better(metric) else below
    worse = below if _higher_is_better(metric) else above
    if better:
      return (f'{first} beats {second} in {name}: {d.mean:+.4f} '
              f'({interval}).')
    if worse:
      return (f'{first} loses to {second} in {name}: {d.mean:+.4f} '
              f'({interval}).')
    return (f'No clear difference between {first} and {second} in {name}: '
            f'{d.mean:+.4f} ({interval}).')

  def to_json(self) -> Dict:
    return {
        'seeds': self.seeds,
        'difference_of': list(self.difference_labels),
        'verdict': self.verdict(),
        **{metric: {
            'per_seed': self.scores[metric],
            'mean': {k: s.mean for k, s in self.spreads[metric].items()},
            'std': {k: s.std for k, s in self.spreads[metric].items()},
            'paired_difference': dataclasses.asdict(
                self.differences[metric]),
            'verdict': self.verdict(metric),
        } for metric in self.metrics},
    }


def _evaluated_rounds(rows: Sequence[Dict[str, str]],
                      column: str) -> Dict[int, float]:
  """`{round: value}` of one column of metrics.csv, in evaluated rounds."""
  return {int(row['round_num']): float(row[column])
          for row in rows if row.get(column) not in (None, '')}


def format_table(result: ComparisonResult) -> str:
  """Per metric: the arms' mean and std over seeds, the difference, verdict."""
  labels = list(result.scores[result.metrics[0]])
  width = max(len(label) for label in labels + ['difference']) + 2
  lines = []
  for metric in result.metrics:
    lines.append(f'{"personalized " + metric:<{width}}{"mean":>9}{"std":>9}'
                 '   per seed')
    lines.append('-' * (width + 20 + 7 * len(result.seeds)))
    for label, spread in result.spreads[metric].items():
      per_seed = ' '.join(f'{v:.4f}' for v in result.scores[metric][label])
      lines.append(f'{label:<{width}}{spread.mean:>9.4f}{spread.std:>9.4f}'
                   f'   {per_seed}')
    d = result.differences[metric]
    lines.append(f'{"difference":<{width}}{d.mean:>+9.4f}{d.std:>9.4f}   '
                 f'({" minus ".join(result.difference_labels)})')
    lines.append(result.verdict(metric))
    lines.append('')
  return '\n'.join(lines).rstrip()


def run_seed_comparison(base_config: run_config_lib.RunConfig, *,
                        seeds: Sequence[int],
                        output_dir: str,
                        arms: Sequence[Arm] = PAPER_ARMS,
                        metrics: Sequence[str] = METRICS,
                        final_evaluations: int = 1,
                        confidence: float = 0.95,
                        show_progress: bool = True) -> ComparisonResult:
  """Trains every arm's algorithm on every seed and compares the arms.

  Runs go to `output_dir/seed_<s>/<algorithm>` (rerunning resumes them);
  the per-seed numbers and statistics to `output_dir/summary.json` and the
  first metric's curves, mean over seeds with the min-max band, to
  `output_dir/comparison.png`.

  Args:
    base_config: Settings shared by every run; `algorithm`, `seed` and
      `output_dir` are set per run.
    seeds: At least one seed; the interval needs two or more.
    output_dir: Parent directory of the runs and the comparison's files.
    arms: The rows to compare; the difference is the last arm minus the one
      before it.
    metrics: The model metrics compared (`personalized_<metric>@<steps>`);
      the first decides the verdict.
    final_evaluations: How many of each run's last evaluations are averaged
      into its score.
    confidence: Confidence level of the paired differences' intervals.
    show_progress: Show each run's progress bar.

  Returns:
    A `ComparisonResult`.

  Raises:
    ValueError: On fewer than two arms, no seeds or metrics, or
      `final_evaluations` < 1.
  """
  if len(arms) < 2:
    raise ValueError(f'a comparison needs two arms or more, got {len(arms)}.')
  if not seeds or not metrics:
    raise ValueError('a comparison needs at least one seed and one metric.')
  if final_evaluations < 1:
    raise ValueError(f'`final_evaluations` must be >= 1, got '
                     f'{final_evaluations}.')
  algorithms = list(dict.fromkeys(arm.algorithm for arm in arms))
  scores = {m: {arm.label: [] for arm in arms} for m in metrics}
  curves = {arm.label: {} for arm in arms}
  for seed in seeds:
    dataset = None
    for algorithm in algorithms:
      config = base_config.replace(
          algorithm=algorithm, seed=seed,
          output_dir=os.path.join(output_dir, f'seed_{seed}', algorithm))
      if dataset is None:  # The runs of one seed share their data.
        dataset = experiment.load_dataset(config)
      experiment.run_experiment(config, dataset=dataset,
                                show_progress=show_progress)
      rows = outputs.read_csv_rows(
          os.path.join(config.output_dir, outputs.METRICS_FILE))
      for arm in arms:
        if arm.algorithm != algorithm:
          continue
        for metric in metrics:
          curve = _evaluated_rounds(
              rows, personalization.metric_name(metric, arm.steps))
          last = [curve[r] for r in sorted(curve)[-final_evaluations:]]
          # A seed whose figure is absent (no client scored) is NaN, which
          # the spread and the paired difference leave out.
          scores[metric][arm.label].append(
              float(np.mean(last)) if last else math.nan)
          if metric == metrics[0]:
            for round_num, value in curve.items():
              curves[arm.label].setdefault(round_num, []).append(value)

  result = ComparisonResult(
      seeds=list(seeds),
      metrics=list(metrics),
      scores=scores,
      difference_labels=(arms[-1].label, arms[-2].label),
      curves=curves,
      confidence=confidence)
  outputs.write_json(
      os.path.join(output_dir, SUMMARY_FILE),
      dict(result.to_json(), final_evaluations=final_evaluations,
           settings=base_config.to_json()))
  # Rounds every seed evaluated (a resumed seed may have extra ones).
  shared = {
      label: {r: v for r, v in by_round.items() if len(v) == len(seeds)}
      for label, by_round in curves.items()
  }
  plots.plot_seed_curves(
      shared, os.path.join(output_dir, FIGURE_FILE),
      title=f'{base_config.dataset}: mean over {len(seeds)} seeds '
      '(band: min to max)',
      ylabel=f'mean personalized test {metrics[0]}')
  return result
