"""AFML's Figures 3-5 on Shakespeare (AFML paper, section 5 and 5.1).

The paper's setting: the diversity scenario (`data_utils.diversity`; for
characters an exclusive client writes in its own substitution cipher) over
zeta in {0, 0.3, 0.6, 1}, and four arms trained with equal budgets
(`diversity_sweep.COMPARISON_SET`: FedAvg-FT, FedPer-Meta = Per-FedAvg
first order, FedMAML = Per-FedAvg exact, AFML), three seeds per cell,
paired by seed. Section 5.1's claims are tested one by one in `summarize`.

The paper leaves open, and this module chooses:

* Data and model: `shakespeare_plays_small`, the plays rebuilt by LEAF's
  recipe (1,137 roles), in examples of 20 characters, with a one-layer
  character LSTM of 64 units (embedding 8), the same for every arm, so that
  the whole grid trains on 2 CPU cores within 2 hours. The paper's model
  and sequence length are not given.
* Budget (`binaries/configs/afml_shakespeare.flags`): 20 rounds of 10
  clients, 4 local steps of batches of 10, 30 clients evaluated (a fixed
  seeded sample) every 5 rounds after 0-5 personalization steps.
* Tuning, before the comparison, on a seed of its own (100) and at zeta =
  0.5 (between the paper's two regimes, on no point of the grid), with the
  same budget for every arm: four settings each (`TUNING_GRID`), the
  comparison's rounds, the best final Pers.5 (mean of the last two
  evaluations) chosen. The baselines' step sizes: the client (outer) step
  `beta` and the inner/fine-tuning step `alpha`; AFML's server steps
  (`head_learning_rate` = `encoder_learning_rate`) and its regularizer
  weights (`afml_alpha`, `afml_beta`, together), its inner step at the
  baselines' larger `alpha`.
* Rounds to target: the first evaluated round whose Pers.3 accuracy
  reaches `TARGET_ACCURACY` (computed from the stored curves, so another
  target needs no new training).
* Fairness: the fraction of evaluated clients whose Pers.5 accuracy beats
  a model trained from the same initial weights on their own data only
  (plain SGD at FedAvg-FT's tuned `beta`, as many steps as the global model
  took: rounds times local steps); the paper trains its local models for
  200 epochs, which the budget does not allow.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tff_perfed import errors
from tff_perfed.evaluation import costs
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import diversity_sweep
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import reproduction

NAME = 'afml_shakespeare'
FLAGFILE = 'afml_shakespeare.flags'
TUNING_SEED = 100
TUNING_ZETA = 0.5
TARGET_ACCURACY = 0.2
TUNING_EVALUATIONS = 2  # A tuning run's score: its last 2 evaluations.
PERS1 = personalization.metric_name('accuracy', 1)
PERS3 = personalization.metric_name('accuracy', 3)
PERS5 = personalization.metric_name('accuracy', 5)

ARMS = {arm.name: arm for arm in diversity_sweep.COMPARISON_SET}
LABELS = {arm.name: arm.label for arm in diversity_sweep.COMPARISON_SET}
BASELINES = ('fedavg_ft', 'fedper_meta', 'fedmaml')

# In the papers' symbols, which were tff_perfed 0.1's setting names
# (`run_config.LEGACY_SETTINGS` says what each sets): they name the cells'
# directories, so that cells finished before the rename are not run again.
_BASELINE_GRID = tuple({'beta': beta, 'alpha': alpha}
                       for beta in (0.5, 1.5) for alpha in (0.1, 0.5))
# Every arm: four settings of its own step sizes (and AFML's weights).
TUNING_GRID: Dict[str, Tuple[Dict[str, float], ...]] = {
    'fedavg_ft': _BASELINE_GRID,
    'fedper_meta': _BASELINE_GRID,
    'fedmaml': _BASELINE_GRID,
    'afml': tuple({'head_learning_rate': lr, 'encoder_learning_rate': lr,
                   'afml_alpha': weights[0], 'afml_beta': weights[1],
                   'alpha': 0.5}
                  for lr in (0.5, 1.5)
                  for weights in ((1e-3, 1e-6), (1e-2, 1e-4))),
}


@dataclasses.dataclass(frozen=True)
class Grid:
  """The cells: the tuning runs, then every zeta, seed and arm.

  Attributes:
    zetas: The diversity scenario's zeta values.
    seeds: Seeds of the comparison, paired across arms.
    settings_per_arm: How many of `TUNING_GRID`'s settings are tried.
    rounds: Rounds per run; None keeps the flagfile's.
    eval_every: Rounds between evaluations; None keeps the flagfile's.
    num_eval_clients: Evaluated clients; None keeps the flagfile's.
    clients_per_round: Clients per round; None keeps the flagfile's.
    use_synthetic_data: Random snippets (8 clients) instead of the plays.
  """
  zetas: Tuple[float, ...] = (0.0, 0.3, 0.6, 1.0)
  seeds: Tuple[int, ...] = (0, 1, 2)
  settings_per_arm: int = 4
  rounds: Optional[int] = None
  eval_every: Optional[int] = None
  num_eval_clients: Optional[int] = None
  clients_per_round: Optional[int] = None
  use_synthetic_data: bool = False


FULL_GRID = Grid()
# Seconds per cell, on synthetic snippets: for the test suite.
QUICK_GRID = Grid(zetas=(1.0,), seeds=(0,), settings_per_arm=1,
                  rounds=2, eval_every=1, num_eval_clients=4,
                  clients_per_round=4, use_synthetic_data=True)


def _setting_name(settings: Dict[str, float]) -> str:
  return ','.join(f'{k}={v:g}' for k, v in settings.items()
                  if k != 'encoder_learning_rate')


def _finite(values):
  return [v for v in values if v is not None and np.isfinite(v)]


def _best_tuned(cells) -> Dict[str, reproduction.CellResult]:
  """Each arm's tuning cell of the highest score (the first of ties).

  A diverged setting is no candidate; an arm whose every setting diverged
  is absent.
  """
  best = {}
  for cell in cells:
    if cell.key['phase'] != 'tune' or cell.diverged_at_round is not None:
      continue
    arm = cell.key['arm']
    if (arm not in best or
        cell.row['tuning_score'] > best[arm].row['tuning_score']):
      best[arm] = cell
  return best


class AfmlShakespeare(reproduction.Experiment):
  """Figures 3-5: four arms over the diversity scenario on Shakespeare."""

  name = NAME
  summary_line = ('AFML paper, Figures 3-5: FedAvg-FT, FedPer-Meta, '
                  'FedMAML and AFML over zeta on shakespeare_plays_small, '
                  'tuned alike, 3 seeds.')
  flagfile = FLAGFILE
  headline = PERS5

  def __init__(self):
    self._local = {}  # (zeta, seed) -> local-model accuracies.

  @staticmethod
  def grid(quick: bool) -> Grid:
    return QUICK_GRID if quick else FULL_GRID

  def num_cells(self, quick: bool) -> int:
    g = self.grid(quick)
    return len(ARMS) * (g.settings_per_arm + len(g.zetas) * len(g.seeds))

  def run_cells(self, base, quick, run_cell):
    g = self.grid(quick)
    for name in ('rounds', 'eval_every', 'num_eval_clients',
                 'clients_per_round'):
      if getattr(g, name) is not None:
        base = base.replace(**{name: getattr(g, name)})
    if g.use_synthetic_data:
      base = base.replace(use_synthetic_data=True)
    base = base.replace(rounds_per_checkpoint=min(base.rounds,
                                                  base.rounds_per_checkpoint))
    cells, chosen = [], {}
    for arm_name, arm in ARMS.items():
      tried = TUNING_GRID[arm_name][:g.settings_per_arm]
      for settings in tried:
        key = {'phase': 'tune', 'arm': arm_name,
               'setting': _setting_name(settings)}
        config = base.replace(algorithm=arm.algorithm, seed=TUNING_SEED,
                              diversity_zeta=TUNING_ZETA, **arm.settings,
                              **settings)
        cells.append(run_cell(key, config))
      best = _best_tuned(cells).get(arm_name)
      if best is None:
        raise errors.RunError(
            f'every tuning setting of {arm_name} diverged; add smaller step '
            'sizes to TUNING_GRID')
      chosen[arm_name] = next(settings for settings in tried if _setting_name(
          settings) == best.key['setting'])
    self._local_beta = chosen['fedavg_ft'].get(
        'beta', diversity_sweep.local_learning_rate(base))
    for zeta in g.zetas:
      for seed in g.seeds:
        for arm_name, arm in ARMS.items():
          key = {'phase': 'compare', 'zeta': zeta, 'seed': seed,
                 'arm': arm_name}
          config = base.replace(algorithm=arm.algorithm, seed=seed,
                                diversity_zeta=zeta, **arm.settings,
                                **chosen[arm_name])
          cells.append(run_cell(key, config))
    return cells

  def _local_accuracies(self, config, client_ids, dataset) -> List[float]:
    key = (config.diversity_zeta, config.seed)
    if key not in self._local:
      steps = config.rounds * config.local_steps
      local_config = config.replace(
          **{'fedavg.client_learning_rate': self._local_beta})
      evaluate = diversity_sweep.build_local_model_eval(local_config, steps)
      self._local[key] = diversity_sweep.local_model_accuracies(
          local_config, dataset, client_ids, steps, evaluate)
    return self._local[key]

  def score(self, config, result, dataset) -> Dict[str, Any]:
    rows = outputs.read_csv_rows(
        os.path.join(config.output_dir, outputs.METRICS_FILE))
    curves = {}
    for name in (PERS1, PERS3, PERS5):
      curves[name] = {row['round_num']: float(row[name]) for row in rows
                      if row.get(name) not in (None, '')}
    last = list(curves[PERS5].values())[-TUNING_EVALUATIONS:]
    row = {name: result.summary.get(name) for name in (
        PERS1, PERS5, 'bytes_down_per_client_round',
        'bytes_up_per_client_round', 'flops_per_client_round',
        'bytes_total')}
    row['tuning_score'] = float(np.mean(last))
    row['clients_per_round'] = config.clients_per_round
    details = {'curves': curves}
    if config.seed != TUNING_SEED:
      by_client = dict(zip(result.client_ids, result.client_rows))
      personalized = [by_client[c][PERS5] for c in result.client_ids]
      local = self._local_accuracies(config, result.client_ids, dataset)
      row['fairness'] = costs.fairness(personalized, local)
      row['local_accuracy'] = float(np.mean(_finite(local)))
      details.update(personalized=personalized, local=local)
    return {'row': row, 'details': details}

  # --- statistics ---------------------------------------------------------

  @staticmethod
  def _rounds_to_target(cell) -> Optional[int]:
    curve = cell.details['curves'][PERS3]
    rounds = sorted(int(r) for r in curve)
    return costs.rounds_to_target(
        rounds, [curve[str(r)] for r in rounds], TARGET_ACCURACY)

  def _table(self, cells):
    """`{zeta: {arm: {seed: {column: value}}}}` of the finished comparison.

    Diverged cells are left out; claims pair arms over their common seeds.
    """
    table = {}
    for cell in cells:
      if (cell.key['phase'] != 'compare' or
          cell.diverged_at_round is not None):
        continue
      reached = self._rounds_to_target(cell)
      bytes_round = (cell.row['bytes_down_per_client_round'] +
                     cell.row['bytes_up_per_client_round'])
      table.setdefault(f'{cell.key["zeta"]:g}', {}).setdefault(
          cell.key['arm'], {})[cell.key['seed']] = dict(
              cell.row, rounds_to_target=reached,
              bytes_per_client_round=bytes_round,
              bytes_to_target=(None if reached is None else
                               bytes_round * reached *
                               cell.row['clients_per_round']),
              pers5_minus_pers1=cell.row[PERS5] - cell.row[PERS1],
              initial_pers5=self._initial(cell, PERS5))
    return table

  @staticmethod
  def _initial(cell, metric: str) -> Optional[float]:
    """`metric` of the initial weights (round 0), if it was evaluated."""
    return cell.details['curves'][metric].get('0')

  @staticmethod
  def _paired(by_arm, a: str, b: str, column: str):
    """Arms a's and b's `column` over the seeds both finished, in order."""
    seeds = sorted(set(by_arm[a]) & set(by_arm[b]))
    return ([by_arm[a][s][column] for s in seeds],
            [by_arm[b][s][column] for s in seeds])

  def summarize(self, cells) -> Dict[str, Any]:
    tuning = []
    for c in cells:
      if c.key['phase'] != 'tune':
        continue
      entry = {'arm': c.key['arm'], 'setting': c.key['setting'],
               'pers5': c.row.get('tuning_score')}
      if c.diverged_at_round is not None:
        entry['diverged_at_round'] = c.diverged_at_round
      tuning.append(entry)
    table = self._table(cells)
    spreads = {
        zeta: {arm: {column: dataclasses.asdict(summaries.spread(
            [row[column] for row in by_seed.values()
             if row.get(column) is not None]))
                     for column in next(iter(by_seed.values()))}
               for arm, by_seed in by_arm.items()}
        for zeta, by_arm in table.items()}
    reached = {zeta: {arm: sum(row['rounds_to_target'] is not None
                               for row in by_seed.values())
                      for arm, by_seed in by_arm.items()}
               for zeta, by_arm in table.items()}
    diverged = [dict(c.key, diverged_at_round=c.diverged_at_round)
                for c in cells if c.key['phase'] == 'compare' and
                c.diverged_at_round is not None]
    return {
        'target_accuracy': TARGET_ACCURACY,
        'tuning': {'seed': TUNING_SEED, 'zeta': TUNING_ZETA,
                   'tried': tuning,
                   'chosen': {arm: cell.key['setting'] for arm, cell in
                              _best_tuned(cells).items()}},
        'spread': spreads,
        'reached_target': reached,
        'diverged': diverged,
        'claims': self._claims(table),
    }

  def _claims(self, table) -> List[Dict[str, Any]]:
    """Section 5.1's claims, each with the measured numbers and a verdict."""
    claims = []
    for zeta, by_arm in table.items():
      if 'afml' not in by_arm:
        continue
      for metric, name in ((PERS1, 'Pers.1'), (PERS5, 'Pers.5')):
        for baseline in BASELINES:
          if baseline not in by_arm:
            continue
          verdict = reproduction.claim_verdict(
              *self._paired(by_arm, 'afml', baseline, metric))
          claims.append(dict(
              claim=f'AFML beats {LABELS[baseline]} in {name} at zeta = '
              f'{zeta}', paper='AFML highest at every zeta (Fig. 3b)',
              **verdict))
      afml_rows = list(by_arm['afml'].values())
      afml_gain = reproduction.claim_verdict(
          [row[PERS5] for row in afml_rows], [row[PERS1] for row in afml_rows])
      claims.append(dict(
          claim=f'AFML Pers.5 above its Pers.1 at zeta = {zeta}',
          paper='+7.4 points on Shakespeare', **afml_gain))
      # Not the paper's claim but the premise of all of them: training beats
      # fine-tuning the untrained initial weights as much.
      for arm in by_arm:
        rows = [row for row in by_arm[arm].values()
                if row['initial_pers5'] is not None]
        if not rows:
          continue
        trained = reproduction.claim_verdict(
            [row[PERS5] for row in rows], [row['initial_pers5'] for row in rows])
        claims.append(dict(
            claim=f'{LABELS[arm]} Pers.5 above that of the initial weights '
            f'at zeta = {zeta}', paper='(the premise: training helps)',
            **trained))
      for baseline in BASELINES:
        if baseline not in by_arm:
          continue
        # Per seed, fewer rounds is better; never reaching is worst.
        a, b = ([r if r is not None else np.inf for r in values]
                for values in self._paired(by_arm, 'afml', baseline,
                                           'rounds_to_target'))
        both_never = all(np.isinf(x) and np.isinf(y) for x, y in zip(a, b))
        fewer = sum(x < y for x, y in zip(a, b))
        claims.append(dict(
            claim=f'AFML reaches Pers.3 >= {TARGET_ACCURACY:g} in fewer '
            f'rounds than {LABELS[baseline]} at zeta = {zeta}',
            paper='"with minimum communication rounds used" (Fig. 3d)',
            num_better=fewer, num_seeds=len(a),
            verdict=(reproduction.CANNOT_TELL if both_never or
                     0 < fewer < len(a) else
                     reproduction.HOLDS if fewer == len(a) else
                     reproduction.DOES_NOT_HOLD)))
        verdict = reproduction.claim_verdict(
            *self._paired(by_arm, 'afml', baseline, 'fairness'))
        claims.append(dict(
            claim=f'AFML beats its local models for more clients than '
            f'{LABELS[baseline]} at zeta = {zeta}',
            paper='"AFML leads to more clients with higher accuracy '
            'compared to the model trained locally" (Fig. 4b, 5)',
            **verdict))
        verdict = reproduction.claim_verdict(
            *self._paired(by_arm, 'afml', baseline,
                          'bytes_per_client_round'),
            higher_is_better=False)
        claims.append(dict(
            claim=f'AFML sends fewer bytes per client round than '
            f'{LABELS[baseline]} at zeta = {zeta}',
            paper='22.5% / 55.7% / 67.3% fewer bytes than FedMAML / '
            'FedPer-Meta / FedAvg-FT (Fig. 4a)', **verdict))
    return claims

  def plot(self, cells, summary, output_dir) -> List[str]:
    rows, clients = [], {}
    for cell in cells:
      if (cell.key['phase'] != 'compare' or
          cell.diverged_at_round is not None):
        continue
      reached = self._rounds_to_target(cell)
      rows.append(dict(cell.row, algorithm=cell.key['arm'],
                       zeta=cell.key['zeta'], seed=cell.key['seed'],
                       rounds_to_target=reached))
      entry = clients.setdefault(cell.key['arm'], {}).setdefault(
          f'{cell.key["zeta"]:g}', {'personalized': [], 'local': []})
      entry['personalized'] += cell.details['personalized']
      entry['local'] += cell.details['local']
    rounds = max((max(int(r) for r in c.details['curves'][PERS3])
                  for c in cells if c.details), default=0)
    return list(plots.plot_sweep(rows, clients, LABELS, output_dir,
                                 rounds=rounds))

  def format_summary(self, summary) -> str:
    lines = reproduction.format_tuning(summary['tuning'], LABELS)
    for cell in summary['diverged']:
      lines.append(f'Diverged, left out of the paired claims: zeta '
                   f'{cell["zeta"]:g} seed {cell["seed"]} '
                   f'{LABELS[cell["arm"]]} at round '
                   f'{cell["diverged_at_round"]}')
    columns = (PERS1, PERS5, 'initial_pers5', 'rounds_to_target',
               'fairness', 'bytes_per_client_round')
    lines.append(f'{"zeta":>5} {"arm":<12}' + ''.join(
        f'{c:>26}' for c in columns))
    for zeta, by_arm in summary['spread'].items():
      for arm, stats in by_arm.items():
        cells = []
        for column in columns:
          s = stats.get(column, {})
          text = ('never' if not s.get('num_seeds') else
                  f'{s["mean"]:.4g} +- {s["std"]:.2g}')
          if column == 'rounds_to_target':
            text += f' ({summary["reached_target"][zeta][arm]} reached)'
          cells.append(f'{text:>26}')
        lines.append(f'{zeta:>5} {arm:<12}' + ''.join(cells))
    lines.append('Claims of section 5.1:')
    for claim in summary['claims']:
      measured = (reproduction.format_claim(claim) if 'low' in claim else
                  f'{claim["num_better"]}/{claim["num_seeds"]} seeds: '
                  f'{claim["verdict"]}')
      lines.append(f'  {claim["claim"]}: {measured}')
    return '\n'.join(lines)


EXPERIMENT = AfmlShakespeare()
