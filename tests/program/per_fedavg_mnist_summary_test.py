"""Per-FedAvg's reproduction summary from made-up cells: diverged seeds."""

import pytest

from tff_perfed.program import reproduction
from tff_perfed.program.reproductions import per_fedavg_mnist as mnist

RUNS = ('fedavg', 'per_fedavg_fo', 'per_fedavg_hf', 'per_fedavg_exact')


def _cell(seed, run, score):
  key = {'local_steps': 4, 'participation': 0.2, 'seed': seed, 'run': run}
  if score is None:
    return reproduction.CellResult(key=key, row={
        reproduction.DIVERGED_AT_ROUND: 3}, details={}, seconds=1.0)
  row = {mnist._metric(0): score - 0.1, mnist._metric(1): score}
  curves = {name: {'10': value} for name, value in row.items()}
  return reproduction.CellResult(key=key, row=row,
                                 details={'curves': curves}, seconds=1.0)


def test_a_seed_with_a_diverged_run_leaves_every_paired_claim():
  scores = {'fedavg': [0.90, 0.91, 0.92], 'per_fedavg_fo': [0.93, 0.95, None],
            'per_fedavg_hf': [0.93, 0.95, 0.99],
            'per_fedavg_exact': [0.93, 0.95, 0.99]}
  cells = [_cell(seed, run, scores[run][seed])
           for seed in range(3) for run in RUNS]
  (panel,) = mnist.PerFedAvgMnist().summarize(cells)['panels']
  assert panel['seeds'] == [0, 1]
  claim = panel['claims']['Per-FedAvg (HF) + 1 step beats FedAvg + 1 step']
  assert claim['num_seeds'] == 2
  assert claim['mean'] == pytest.approx((0.03 + 0.04) / 2)
  assert panel['diverged'] == [{'local_steps': 4, 'participation': 0.2,
                                'seed': 2, 'run': 'per_fedavg_fo',
                                'diverged_at_round': 3}]
  printed = mnist.PerFedAvgMnist().format_summary({
      'panels': [panel], 'verdicts_over_cells': {}})
  assert 'diverged at round 3, seed 2 left out: per_fedavg_fo' in printed
