"""The personalized-FL family on the two papers' settings, tuned alike.

Issue 18's comparison: FedAvg fine-tuned (FedAvg-FT), Per-FedAvg (Fallah,
Mokhtari, Ozdaglar 2020; first order, eq. (23)), AFML, Ditto (Li et al.,
ICML 2021, eq. (1)), pFedMe (Dinh et al., NeurIPS 2020, Algorithm 1), APFL
(Deng, Kamani, Mahdavi 2020, Algorithm 1), FedRep (Collins et al., ICML
2021) and FedPer (Arivazhagan et al. 2019), plus each client's local model,
on two settings:

* `family_mnist`: the Per-FedAvg paper's (section 5; `per_fedavg_mnist`'s
  cell tau = 4, r = 0.2): `mnist_5k` over 50 users by the paper's rule, the
  MLP of 80 and 60 ELU units, 50 rounds of 10 users, 4 local steps of
  batches of 10, every user evaluated every 10 rounds after 0 and 1 steps
  of SGD at alpha = 0.02 with 4 adaptation draws. A run's score is its mean
  Pers.1 over the last 3 evaluations, as in `per_fedavg_mnist`.
* `family_shakespeare`: the AFML paper's (section 5; `afml_shakespeare`'s
  setting at zeta = 0, where every client writes in a cipher of its own,
  the most diverse point of its grid): `shakespeare_plays_small`, the
  character LSTM, 20 rounds of 10 clients, 30 clients evaluated every 5
  rounds after 0-5 steps. A run's score is its mean Pers.5 over the last 2
  evaluations, as in `afml_shakespeare`'s tuning. FedAvg-FT's, Per-FedAvg's
  and AFML's runs here have exactly the settings of `afml_shakespeare`'s
  runs (its tuning grid, seeds and chosen settings), so their finished cells
  are taken from there rather than trained again (`Experiment.reuses`).

Every arm has the same budget (rounds, clients per round, batches, and 4
client steps a round: Ditto's personal model takes 4 steps too, FedRep's
round is 3 head steps and 1 body step) and is tuned alike: four settings of
its own step size(s), on a seed of its own (100), the best score chosen; on
Shakespeare, as in `afml_shakespeare`, two step sizes times two evaluation
steps. Each algorithm's other hyperparameters are its paper's defaults
(Ditto lambda = 0.1, pFedMe lambda = 15 with K = 5 inner steps, APFL's
mixing weight 0.25 learnt), the same for every arm on both settings. The
comparison: three seeds, paired (the runs of a seed share the data split,
the initial weights and the sampled clients).

Local models: each evaluated client's model trained from the same initial
weights on its own data only, with plain SGD at FedAvg-FT's tuned step, as
many steps as the global model took (rounds times local steps); scored on
the client's test data with no further step. They are an arm of the table
("Local models"), and each arm's `fairness` is the fraction of clients
whose score beats their local model's.

Clients that keep state (Ditto, APFL, FedRep, FedPer) are scored from their
personalized weights; an evaluated client that never trained is a newcomer
and is scored with what the algorithm gives a newcomer (README, "Newcomers").
The scores of the clients with state are reported beside the overall score.

Claims, each a paired 95% t interval over seeds (`reproduction.
claim_verdict`): every arm against FedAvg-FT, the best arm (highest mean
score) against every other arm, and every arm against the local models.
"""

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tff_perfed import errors
from tff_perfed.evaluation import costs
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import diversity_sweep
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import reproduction
from tff_perfed.program import run_config as run_config_lib
from tff_perfed.program.reproductions import afml_shakespeare

HessianMode = run_config_lib.HessianMode

TUNING_SEED = 100
LOCAL = 'local'  # The local models' arm.
LOCAL_LABEL = 'Local models'
SCORE = 'score'
WITH_STATE_SCORE = 'with_state_score'
FIGURE_FILE = 'scores.png'
CURVES_FILE = 'curves.png'


@dataclasses.dataclass(frozen=True)
class FamilyArm:
  """One algorithm of the comparison.

  Attributes:
    name: Its name in cell keys and directories.
    label: For tables and figures.
    algorithm: The registered algorithm.
    settings: Run settings fixed for this arm (e.g. FedRep's head steps).
    tuning: The settings tried, in order; the best is compared.
  """
  name: str
  label: str
  algorithm: str
  settings: Mapping[str, Any]
  tuning: Tuple[Mapping[str, Any], ...]


def _two_by_two(names: Sequence[str], steps: Sequence[float],
                evaluation_steps: Sequence[float]) -> Tuple[Dict[str, Any], ...]:
  """Step sizes (every name in `names` set alike) times evaluation steps."""
  return tuple(dict({n: s for n in names},
                    personalization_learning_rate=e)
               for s in steps for e in evaluation_steps)


# The client steps of a round, the same for every arm: Ditto's personal
# model takes as many; FedRep's round is its head steps then its body step.
_ROUND_STEPS = 4


# Per arm: the settings that match its round to the others'.
_FIXED_SETTINGS = {
    'per_fedavg': {'per_fedavg.hessian_mode': HessianMode.FIRST_ORDER},
    'ditto': {'ditto.personal_steps': _ROUND_STEPS},
    'fedrep': {'fedrep.head_steps': _ROUND_STEPS - 1, 'fedrep.body_steps': 1},
}


_ARMS = (  # (name, label, algorithm, the settings a step size sets)
    ('fedavg_ft', 'FedAvg-FT', 'fedavg', ('fedavg.client_learning_rate',)),
    ('per_fedavg', 'Per-FedAvg (FO)', 'per_fedavg',
     ('per_fedavg.outer_learning_rate',)),
    ('afml', 'AFML', 'afml', ('afml.head_learning_rate',
                              'afml.encoder_learning_rate')),
    ('ditto', 'Ditto', 'ditto', ('ditto.client_learning_rate',
                                 'ditto.personal_learning_rate')),
    # pFedMe's w moves by eta * lambda * (w - theta) ~ eta * grad of the
    # Moreau envelope: eta is its step size on the others' scale.
    ('pfedme', 'pFedMe', 'pfedme', ('pfedme.local_learning_rate',)),
    ('apfl', 'APFL', 'apfl', ('apfl.learning_rate',)),
    ('fedrep', 'FedRep', 'fedrep', ('fedrep.learning_rate',)),
    ('fedper', 'FedPer', 'fedper', ('fedper.learning_rate',)),
)

# Settings written into every tuning setting of an arm (they name its cells).
# pFedMe's inner solve for theta: 5 steps of 0.05 on f + 15/2 ||theta - w||^2
# contract the proximal term by 1 - 0.05 * 15 = 0.25 a step.
_TUNED_WITH = {'pfedme': {'pfedme.personal_learning_rate': 0.05}}

MNIST_STEPS = (0.02, 0.05, 0.1, 0.2)


def _mnist_arms() -> Tuple[FamilyArm, ...]:
  arms = []
  for name, label, algorithm, step_names in _ARMS:
    tuning = tuple(dict({n: s for n in step_names},
                        **_TUNED_WITH.get(name, {}))
                   for s in MNIST_STEPS)
    arms.append(FamilyArm(name, label, algorithm,
                          _FIXED_SETTINGS.get(name, {}), tuning))
  return tuple(arms)


# afml_shakespeare's arms, with its tuning grids (in the legacy names its
# cells were written with), so that their cells are the same runs.
_SHAKESPEARE_REUSED = {'fedavg_ft': 'fedavg_ft', 'per_fedavg': 'fedper_meta',
                       'afml': 'afml'}


def _shakespeare_arms() -> Tuple[FamilyArm, ...]:
  arms = []
  for name, label, algorithm, step_names in _ARMS:
    if name in _SHAKESPEARE_REUSED:
      sweep_arm = afml_shakespeare.ARMS[_SHAKESPEARE_REUSED[name]]
      tuning = afml_shakespeare.TUNING_GRID[sweep_arm.name]
      settings = dict(sweep_arm.settings)
    else:
      tuning = tuple(
          dict(t, **_TUNED_WITH.get(name, {}))
          for t in _two_by_two(step_names, (0.5, 1.5), (0.1, 0.5)))
      settings = _FIXED_SETTINGS.get(name, {})
    arms.append(FamilyArm(name, label, algorithm, settings, tuning))
  return tuple(arms)


@dataclasses.dataclass(frozen=True)
class Grid:
  """The cells: each arm's tuning runs, then every seed and arm.

  Attributes:
    arms: Names of the arms run (all by default).
    seeds: Seeds of the comparison, paired across arms.
    settings_per_arm: How many of each arm's tuning settings are tried.
    overrides: Run settings replaced in every cell (the quick grid's).
  """
  arms: Optional[Tuple[str, ...]] = None
  seeds: Tuple[int, ...] = (0, 1, 2)
  settings_per_arm: Optional[int] = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FamilySetting:
  """One paper's setting of the comparison.

  Attributes:
    name: The experiment's name.
    summary_line: For listings.
    flagfile: Base settings (`binaries/configs/`).
    arms: The arms, each with its tuning grid.
    steps: The k of the score, Pers.k.
    final_evaluations: A run's score is its mean Pers.k over this many last
      evaluations.
    tuning_zeta: The diversity scenario's zeta of the tuning runs, or None.
    zeta: The comparison's zeta, or None.
    quick: The small grid the test suite runs.
    reuses: Experiments whose finished cells with the same settings this
      one takes (`reproduction.Experiment.reuses`).
  """
  name: str
  summary_line: str
  flagfile: str
  arms: Tuple[FamilyArm, ...]
  steps: int
  final_evaluations: int
  tuning_zeta: Optional[float]
  zeta: Optional[float]
  quick: Grid
  reuses: Tuple[str, ...] = ()


def _score(row: Mapping[str, Any]) -> Optional[float]:
  """A cell's score; a reused `afml_shakespeare` cell names it so."""
  return row.get(SCORE, row.get('tuning_score'))


def _best_tuned(cells) -> Dict[str, reproduction.CellResult]:
  """Each arm's tuning cell of the highest score (the first of ties)."""
  best = {}
  for cell in cells:
    if cell.key['phase'] != 'tune' or cell.diverged_at_round is not None:
      continue
    arm = cell.key['arm']
    if arm not in best or _score(cell.row) > _score(best[arm].row):
      best[arm] = cell
  return best


def setting_name(settings: Mapping[str, Any]) -> str:
  """A tuning setting's name in its cell's key and directory."""
  return ','.join(f'{k}={v:g}' for k, v in settings.items())


def _finite_mean(values) -> Optional[float]:
  finite = [v for v in values if v is not None and np.isfinite(v)]
  return float(np.mean(finite)) if finite else None


class FamilyComparison(reproduction.Experiment):
  """Eight algorithms and the local models on one paper's setting."""

  def __init__(self, setting: FamilySetting):
    self.setting = setting
    self.name = setting.name
    self.summary_line = setting.summary_line
    self.flagfile = setting.flagfile
    self.reuses = setting.reuses
    self.headline = SCORE
    self._metric = personalization.metric_name('accuracy', setting.steps)
    self._labels = {arm.name: arm.label for arm in setting.arms}
    self._labels[LOCAL] = LOCAL_LABEL
    self._local = {}  # (zeta, seed, client ids) -> local models' scores.
    self._local_step = None  # FedAvg-FT's chosen step (`run_cells`).

  def headline_value(self, row: Mapping[str, Any]) -> Optional[float]:
    return _score(row)

  def grid(self, quick: bool) -> Grid:
    return self.setting.quick if quick else Grid()

  def _arms(self, quick: bool) -> List[FamilyArm]:
    names = self.grid(quick).arms
    return [a for a in self.setting.arms if names is None or a.name in names]

  def _tried(self, arm: FamilyArm, quick: bool):
    return arm.tuning[:self.grid(quick).settings_per_arm]

  def num_cells(self, quick: bool) -> int:
    g = self.grid(quick)
    return sum(len(self._tried(arm, quick)) + len(g.seeds)
               for arm in self._arms(quick))

  def run_cells(self, base, quick, run_cell):
    g = self.grid(quick)
    base = base.replace(**g.overrides)
    base = base.replace(rounds_per_checkpoint=min(base.rounds,
                                                  base.rounds_per_checkpoint))
    cells, chosen = [], {}
    for arm in self._arms(quick):
      tried = self._tried(arm, quick)
      for settings in tried:
        key = {'phase': 'tune', 'arm': arm.name,
               'setting': setting_name(settings)}
        config = base.replace(algorithm=arm.algorithm, seed=TUNING_SEED,
                              diversity_zeta=self.setting.tuning_zeta,
                              **arm.settings, **settings)
        cells.append(run_cell(key, config))
      best = _best_tuned(cells).get(arm.name)
      if best is None:
        raise errors.RunError(
            f'every tuning setting of {arm.name} diverged; add smaller step '
            f'sizes to its tuning grid in {__name__}')
      chosen[arm.name] = next(s for s in tried
                              if setting_name(s) == best.key['setting'])
    # The local models take FedAvg-FT's tuned step (as afml_shakespeare's).
    self._local_step = base.replace(
        algorithm='fedavg', **chosen['fedavg_ft']).params_for(
            'fedavg').client_learning_rate
    for seed in g.seeds:
      for arm in self._arms(quick):
        key = {'phase': 'compare', 'seed': seed, 'arm': arm.name}
        if self.setting.zeta is not None:
          key = {'phase': 'compare', 'zeta': self.setting.zeta, 'seed': seed,
                 'arm': arm.name}
        config = base.replace(algorithm=arm.algorithm, seed=seed,
                              diversity_zeta=self.setting.zeta,
                              **arm.settings, **chosen[arm.name])
        cells.append(run_cell(key, config))
    return cells

  def _local_accuracies(self, config, client_ids, dataset) -> List[float]:
    # Every arm of a seed scores the same clients against the same models.
    cache = self._local
    key = (config.diversity_zeta, config.seed, tuple(client_ids))
    if key not in cache:
      steps = config.rounds * config.local_steps
      local_config = config.replace(
          algorithm='fedavg',
          **{'fedavg.client_learning_rate': self._local_step})
      evaluate = diversity_sweep.build_local_model_eval(local_config, steps)
      cache[key] = diversity_sweep.local_model_accuracies(
          local_config, dataset, client_ids, steps, evaluate)
    return cache[key]

  def score(self, config, result, dataset) -> Dict[str, Any]:
    rows = outputs.read_csv_rows(
        os.path.join(config.output_dir, outputs.METRICS_FILE))
    metrics = [personalization.metric_name('accuracy', k)
               for k in sorted({0, 1, self.setting.steps})]
    curves = {name: {row['round_num']: float(row[name]) for row in rows
                     if row.get(name) not in (None, '')}
              for name in metrics}
    last = list(curves[self._metric].values())[
        -self.setting.final_evaluations:]
    row = {name: result.summary.get(name) for name in (
        *metrics, 'bytes_down_per_client_round',
        'bytes_up_per_client_round', 'flops_per_client_round',
        'bytes_total')}
    row[SCORE] = float(np.mean(last))
    state_metric = experiment.WITH_STATE_PREFIX + self._metric
    if state_metric in result.summary:
      row[WITH_STATE_SCORE] = result.summary[state_metric]
      row['with_state_clients'] = result.summary.get(
          experiment.WITH_STATE_PREFIX + summaries.NUM_EVALUATED_CLIENTS)
    row['clients_per_round'] = config.clients_per_round
    details = {'curves': curves}
    if config.seed != TUNING_SEED:
      by_client = dict(zip(result.client_ids, result.client_rows))
      personalized = [by_client[c].get(self._metric, np.nan)
                      for c in result.client_ids]
      local = self._local_accuracies(config, result.client_ids, dataset)
      row['fairness'] = costs.fairness(personalized, local)
      row['local_accuracy'] = _finite_mean(local)
      details.update(personalized=personalized, local=local)
    return {'row': row, 'details': details}

  # --- statistics ---------------------------------------------------------

  def _table(self, cells) -> Dict[str, Dict[int, Dict[str, Any]]]:
    """`{arm: {seed: row}}` of the comparison, the local models included.

    A reused `afml_shakespeare` cell names its score `tuning_score`.
    """
    table = {}
    for cell in cells:
      if (cell.key['phase'] != 'compare' or
          cell.diverged_at_round is not None):
        continue
      row = dict(cell.row, **{SCORE: _score(cell.row)})
      row['bytes_per_client_round'] = (row['bytes_down_per_client_round'] +
                                       row['bytes_up_per_client_round'])
      table.setdefault(cell.key['arm'], {})[cell.key['seed']] = row
      table.setdefault(LOCAL, {})[cell.key['seed']] = {
          SCORE: row['local_accuracy']}
    local = table.pop(LOCAL, None)
    if local is not None:
      table[LOCAL] = local
    return table

  @staticmethod
  def _paired(table, a: str, b: str, column: str = SCORE):
    seeds = sorted(s for s in set(table[a]) & set(table[b])
                   if table[a][s].get(column) is not None and
                   table[b][s].get(column) is not None)
    return ([table[a][s][column] for s in seeds],
            [table[b][s][column] for s in seeds])

  def _claim(self, table, a: str, b: str, what: str) -> Dict[str, Any]:
    return dict(claim=f'{self._labels[a]} {what} {self._labels[b]}',
                better=a, other=b,
                **reproduction.claim_verdict(*self._paired(table, a, b)))

  def summarize(self, cells) -> Dict[str, Any]:
    tuning = [dict({'arm': c.key['arm'], 'setting': c.key['setting'],
                    'score': _score(c.row)},
                   **({'diverged_at_round': c.diverged_at_round}
                      if c.diverged_at_round is not None else {}))
              for c in cells if c.key['phase'] == 'tune']
    table = self._table(cells)
    columns = ('score', 'with_state_score', 'with_state_clients',
               *[personalization.metric_name('accuracy', k)
                 for k in sorted({0, 1, self.setting.steps})],
               'fairness', 'bytes_per_client_round', 'flops_per_client_round')
    spread = {arm: {column: dataclasses.asdict(summaries.spread(
        [row[column] for row in by_seed.values()
         if row.get(column) is not None]))
                    for column in columns
                    if any(row.get(column) is not None
                           for row in by_seed.values())}
              for arm, by_seed in table.items()}
    ranking = sorted(spread, key=lambda arm: -spread[arm][SCORE]['mean'])
    # Every arm against FedAvg-FT and against the local models, and the
    # best arm against every other; each pair once.
    pairs = [(arm, base) for base in ('fedavg_ft', LOCAL) if base in table
             for arm in ranking if arm != base]
    pairs += [(ranking[0], arm) for arm in ranking[1:]]
    claims, seen = [], set()
    for a, b in pairs:
      if frozenset((a, b)) not in seen:
        seen.add(frozenset((a, b)))
        claims.append(self._claim(table, a, b, 'beats'))
    diverged = [dict(c.key, diverged_at_round=c.diverged_at_round)
                for c in cells if c.key['phase'] == 'compare' and
                c.diverged_at_round is not None]
    return {
        'metric': (f'mean over evaluated clients of the test accuracy after '
                   f'{self.setting.steps} personalization step(s) '
                   f'(Pers.{self.setting.steps}), mean of the last '
                   f'{self.setting.final_evaluations} evaluations'),
        'tuning': {'seed': TUNING_SEED, 'zeta': self.setting.tuning_zeta,
                   'tried': tuning,
                   'chosen': {arm: c.key['setting']
                              for arm, c in _best_tuned(cells).items()}},
        'zeta': self.setting.zeta,
        'per_seed': {arm: {str(s): row[SCORE] for s, row in by_seed.items()}
                     for arm, by_seed in table.items()},
        'spread': spread,
        'ranking': ranking,
        'claims': claims,
        'diverged': diverged,
    }

  def plot(self, cells, summary, output_dir) -> List[str]:
    table = self._table(cells)
    path = os.path.join(output_dir, FIGURE_FILE)
    plots.plot_arm_scores(
        {self._labels[arm]: [table[arm][s][SCORE] for s in sorted(table[arm])]
         for arm in summary['ranking']}, path,
        title=f'{self.name}: each seed (dots), mean and std (bars)',
        ylabel=f'Pers.{self.setting.steps} accuracy')
    curves = {}
    for cell in cells:
      if (cell.key['phase'] == 'compare' and
          cell.diverged_at_round is None):
        by_round = curves.setdefault(self._labels[cell.key['arm']], {})
        for r, v in cell.details['curves'][self._metric].items():
          by_round.setdefault(int(r), []).append(v)
    curves_path = os.path.join(output_dir, CURVES_FILE)
    plots.plot_seed_curves(curves, curves_path,
                           title=f'{self.name}: mean over seeds (band: min '
                           'to max)',
                           ylabel=f'Pers.{self.setting.steps} accuracy')
    return [path, curves_path] if plots.available() else []

  def format_summary(self, summary) -> str:
    lines = reproduction.format_tuning(summary['tuning'], self._labels)
    for cell in summary['diverged']:
      lines.append(f'Diverged, left out of the paired claims: seed '
                   f'{cell["seed"]} {self._labels[cell["arm"]]} at round '
                   f'{cell["diverged_at_round"]}')
    columns = ('score', 'with_state_score', 'fairness',
               'bytes_per_client_round', 'flops_per_client_round')
    lines.append(f'{"arm":<18}' + ''.join(f'{c:>25}' for c in columns))
    for arm in summary['ranking']:
      stats = summary['spread'][arm]
      cells = []
      for column in columns:
        s = stats.get(column)
        cells.append(f'{"-" if s is None else format_spread(s):>25}')
      lines.append(f'{self._labels[arm]:<18}' + ''.join(cells))
    lines.append('Claims (paired over seeds, 95% t interval):')
    for claim in summary['claims']:
      lines.append(f'  {claim["claim"]}: '
                   f'{reproduction.format_claim(claim)}')
    return '\n'.join(lines)


def format_spread(s: Mapping[str, float]) -> str:
  """`0.9393 +- 0.0090` (4 significant digits)."""
  return f'{s["mean"]:.4g} +- {s["std"]:.2g}'


MNIST = FamilyComparison(FamilySetting(
    name='family_mnist',
    summary_line=('The personalized-FL family on the Per-FedAvg paper\'s '
                  'MNIST setting (tau = 4, r = 0.2): eight algorithms and '
                  'local models, tuned alike, 3 seeds.'),
    flagfile='family_mnist.flags',
    arms=_mnist_arms(),
    steps=1,
    final_evaluations=3,
    tuning_zeta=None,
    zeta=None,
    quick=Grid(arms=('fedavg_ft', 'ditto', 'fedrep'), seeds=(0, 1),
               settings_per_arm=1,
               overrides={'rounds': 2, 'eval_every': 1,
                          'use_synthetic_data': True,
                          'clients_per_round': 4}),
))

SHAKESPEARE = FamilyComparison(FamilySetting(
    name='family_shakespeare',
    summary_line=('The personalized-FL family on the AFML paper\'s '
                  'Shakespeare setting at zeta = 0: eight algorithms and '
                  'local models, tuned alike, 3 seeds.'),
    flagfile=afml_shakespeare.FLAGFILE,
    arms=_shakespeare_arms(),
    steps=5,
    final_evaluations=afml_shakespeare.TUNING_EVALUATIONS,
    tuning_zeta=afml_shakespeare.TUNING_ZETA,
    zeta=0.0,
    quick=Grid(arms=('fedavg_ft', 'apfl'), seeds=(0, 1), settings_per_arm=1,
               overrides={'rounds': 2, 'eval_every': 1,
                          'num_eval_clients': 4, 'clients_per_round': 4,
                          'use_synthetic_data': True}),
    reuses=(afml_shakespeare.NAME,),
))
