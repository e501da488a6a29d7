"""Algorithms compared over several seeds: the paper's Figure 1, honestly.

Fallah et al. (2020), section 5, compare FedAvg (its model as is), FedAvg +
one step and Per-FedAvg + one step of local SGD at test time. One training
run is one sample of its randomness, so `run_seed_comparison` trains every
algorithm once per seed (the runs of one seed share the data split, the
initial weights and the sampled clients) and reports, per arm of the table,
the mean and spread over seeds, and for the question the paper asks -- does
Per-FedAvg + 1 step beat FedAvg + 1 step? -- the paired per-seed difference
with a Student-t confidence interval.

Each seed's number is the mean personalized accuracy over clients, averaged
over the last `final_evaluations` evaluations of the run: at the end of
training the model still moves from round to round, and averaging a few
evaluations measures where training ends up rather than where its last
round happened to land.
"""

import dataclasses
import os
from typing import Dict, List, Sequence

import numpy as np

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

  @property
  def metric(self) -> str:
    return personalization.metric_name('accuracy', self.steps)


# The paper's three arms (section 5, Figure 1).
PAPER_ARMS = (
    Arm('FedAvg', 'fedavg', 0),
    Arm('FedAvg + 1 step', 'fedavg', 1),
    Arm('Per-FedAvg + 1 step', 'per_fedavg', 1),
)


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
  """Per-seed scores and their statistics.

  Attributes:
    seeds: The seeds, in order.
    scores: `{arm label: [score per seed]}`.
    spreads: `{arm label: Spread over seeds}`.
    difference: The paired difference of the last two arms (e.g. Per-FedAvg
      + 1 step minus FedAvg + 1 step).
    curves: `{arm label: {round: [accuracy per seed]}}`.
    difference_labels: `(better, worse)`: the arms whose difference it is.
  """
  seeds: List[int]
  scores: Dict[str, List[float]]
  spreads: Dict[str, summaries.Spread]
  difference: summaries.PairedDifference
  curves: Dict[str, Dict[int, List[float]]]
  difference_labels: Sequence[str]

  def verdict(self) -> str:
    """One sentence saying what the seeds support."""
    better, worse = self.difference_labels
    d = self.difference
    interval = (f'{100 * d.confidence:.0f}% CI [{d.low:+.4f}, {d.high:+.4f}]'
                f', {d.num_positive} of {d.num_seeds} seeds positive')
    if d.low > 0:
      return f'{better} beats {worse} by {d.mean:+.4f} ({interval}).'
    if d.high < 0:
      return f'{better} loses to {worse} by {d.mean:+.4f} ({interval}).'
    return (f'No clear difference between {better} and {worse}: '
            f'{d.mean:+.4f} ({interval}).')

  def to_json(self) -> Dict:
    return {
        'seeds': self.seeds,
        'per_seed': self.scores,
        'mean': {k: s.mean for k, s in self.spreads.items()},
        'std': {k: s.std for k, s in self.spreads.items()},
        'paired_difference': {
            'of': list(self.difference_labels),
            **dataclasses.asdict(self.difference),
        },
        'verdict': self.verdict(),
    }


def _evaluated_rounds(metrics_csv_path: str,
                      metric: str) -> Dict[int, float]:
  return {
      int(row['round_num']): float(row[metric])
      for row in outputs.read_csv_rows(metrics_csv_path)
      if row.get(metric) not in (None, '')
  }


def format_table(result: ComparisonResult) -> str:
  """The arms' mean and standard deviation over seeds, and the verdict."""
  width = max(len(label) for label in result.scores) + 2
  lines = [f'{"":<{width}}{"mean":>9}{"std":>9}   per seed',
           '-' * (width + 30)]
  for label, spread in result.spreads.items():
    per_seed = ' '.join(f'{v:.4f}' for v in result.scores[label])
    lines.append(f'{label:<{width}}{spread.mean:>9.4f}{spread.std:>9.4f}   '
                 f'{per_seed}')
  d = result.difference
  lines.append(f'{"difference":<{width}}{d.mean:>+9.4f}{d.std:>9.4f}   '
               f'{" - ".join(result.difference_labels)}')
  lines.append(result.verdict())
  return '\n'.join(lines)


def run_seed_comparison(base_config: run_config_lib.RunConfig, *,
                        seeds: Sequence[int],
                        output_dir: str,
                        arms: Sequence[Arm] = PAPER_ARMS,
                        final_evaluations: int = 1,
                        confidence: float = 0.95,
                        show_progress: bool = True) -> ComparisonResult:
  """Trains every arm's algorithm on every seed and compares the arms.

  Runs go to `output_dir/seed_<s>/<algorithm>` (rerunning resumes them);
  the per-seed numbers and statistics to `output_dir/summary.json` and the
  curves, mean over seeds with the min-max band, to
  `output_dir/comparison.png`.

  Args:
    base_config: Settings shared by every run; `algorithm`, `seed` and
      `output_dir` are set per run.
    seeds: At least one seed; the interval needs two or more.
    output_dir: Parent directory of the runs and the comparison's files.
    arms: The rows to compare; the difference is last arm minus the one
      before it.
    final_evaluations: How many of each run's last evaluations are averaged
      into its score.
    confidence: Confidence level of the paired difference's interval.
    show_progress: Show each run's progress bar.

  Returns:
    A `ComparisonResult`.
  """
  if len(arms) < 2:
    raise ValueError(f'a comparison needs two arms or more, got {len(arms)}.')
  if not seeds:
    raise ValueError('a comparison needs at least one seed.')
  if final_evaluations < 1:
    raise ValueError(f'`final_evaluations` must be >= 1, got '
                     f'{final_evaluations}.')
  configs = {
      (seed, algorithm): base_config.replace(
          algorithm=algorithm, seed=seed,
          output_dir=os.path.join(output_dir, f'seed_{seed}', algorithm))
      for seed in seeds for algorithm in dict.fromkeys(a.algorithm
                                                       for a in arms)
  }
  scores = {arm.label: [] for arm in arms}
  curves = {arm.label: {} for arm in arms}
  for seed in seeds:
    dataset = None
    for (config_seed, algorithm), config in configs.items():
      if config_seed != seed:
        continue
      if dataset is None:
        dataset = experiment.load_dataset(config)
      experiment.run_experiment(config, dataset=dataset,
                                show_progress=show_progress)
      for arm in arms:
        if arm.algorithm != algorithm:
          continue
        curve = _evaluated_rounds(
            os.path.join(config.output_dir, outputs.METRICS_FILE), arm.metric)
        last = [curve[r] for r in sorted(curve)[-final_evaluations:]]
        scores[arm.label].append(float(np.mean(last)))
        for round_num, value in curve.items():
          curves[arm.label].setdefault(round_num, []).append(value)

  worse, better = arms[-2].label, arms[-1].label
  result = ComparisonResult(
      seeds=list(seeds),
      scores=scores,
      spreads={label: summaries.spread(v) for label, v in scores.items()},
      difference=summaries.paired_difference(
          scores[better], scores[worse], confidence=confidence),
      curves=curves,
      difference_labels=(better, worse))
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
      ylabel='mean personalized test accuracy')
  return result
