"""The family comparison from made-up cells: tuning, ranking, paired claims."""

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.binaries import reproduce
from tff_perfed.binaries import run_flags
from tff_perfed.program import reproduction
from tff_perfed.program.reproductions import afml_shakespeare
from tff_perfed.program.reproductions import family

EXPERIMENT = family.MNIST


def _tune(arm, setting, score):
  row = ({reproduction.DIVERGED_AT_ROUND: 3} if score is None else
         {family.SCORE: score})
  return reproduction.CellResult(
      key={'phase': 'tune', 'arm': arm, 'setting': setting}, row=row,
      details={}, seconds=1.0)


def _compare(seed, arm, score, local, score_name=family.SCORE):
  if score is None:
    return reproduction.CellResult(
        key={'phase': 'compare', 'seed': seed, 'arm': arm},
        row={reproduction.DIVERGED_AT_ROUND: 4}, details={}, seconds=1.0)
  row = {score_name: score, 'bytes_down_per_client_round': 10.0,
         'bytes_up_per_client_round': 5.0, 'local_accuracy': local,
         'fairness': 0.5}
  curve = {'0': 0.1, '10': score}
  return reproduction.CellResult(
      key={'phase': 'compare', 'seed': seed, 'arm': arm}, row=row,
      details={'curves': {'personalized_accuracy@1': curve}}, seconds=1.0)


SCORES = {
    'fedavg_ft': [0.80, 0.82, 0.81],
    'ditto': [0.90, 0.93, 0.91],
    'per_fedavg': [0.85, 0.83, 0.86],
}
LOCAL = [0.88, 0.86, 0.90]


@pytest.fixture
def summary():
  cells = [_tune('fedavg_ft', 'a', 0.5), _tune('fedavg_ft', 'b', 0.7),
           _tune('ditto', 'a', 0.6), _tune('ditto', 'b', None),
           _tune('per_fedavg', 'a', 0.6), _tune('per_fedavg', 'b', 0.6)]
  for seed in range(3):
    for arm, scores in SCORES.items():
      cells.append(_compare(seed, arm, scores[seed], LOCAL[seed]))
  return EXPERIMENT.summarize(cells)


def test_tuning_chooses_the_best_finished_setting_and_the_first_of_ties(
    summary):
  assert summary['tuning']['chosen'] == {'fedavg_ft': 'b', 'ditto': 'a',
                                         'per_fedavg': 'a'}
  assert {'arm': 'ditto', 'setting': 'b', 'score': None,
          'diverged_at_round': 3} in summary['tuning']['tried']


def test_arms_are_ranked_by_mean_score_with_the_local_models_as_an_arm(
    summary):
  assert summary['ranking'] == ['ditto', 'local', 'per_fedavg', 'fedavg_ft']
  assert summary['spread']['ditto']['score']['mean'] == pytest.approx(
      np.mean(SCORES['ditto']))
  assert summary['spread']['ditto']['score']['std'] == pytest.approx(
      np.std(SCORES['ditto'], ddof=1))
  assert summary['per_seed']['local'] == dict(zip('012', LOCAL))


def test_each_pair_is_claimed_once_with_its_paired_difference(summary):
  claims = {(c['better'], c['other']): c for c in summary['claims']}
  # Every arm against FedAvg-FT and the local models, and the best arm
  # against every other arm; no pair twice in either order.
  assert set(claims) == {
      ('ditto', 'fedavg_ft'), ('per_fedavg', 'fedavg_ft'),
      ('ditto', 'local'), ('per_fedavg', 'local'), ('local', 'fedavg_ft'),
      ('ditto', 'per_fedavg')}
  claim = claims['per_fedavg', 'local']
  assert claim['claim'] == 'Per-FedAvg (FO) beats Local models'
  assert claim['mean'] == pytest.approx(
      np.mean(np.subtract(SCORES['per_fedavg'], LOCAL)))
  assert claim['verdict'] == reproduction.DOES_NOT_HOLD  # -0.03 a seed.
  assert claims['ditto', 'fedavg_ft']['verdict'] == reproduction.HOLDS
  assert claims['local', 'fedavg_ft']['num_better'] == 3


def test_a_diverged_seed_leaves_only_its_arms_pairs():
  cells = [_tune(arm, 'a', 0.5) for arm in SCORES]
  for seed in range(3):
    for arm, scores in SCORES.items():
      score = None if (arm, seed) == ('ditto', 2) else scores[seed]
      cells.append(_compare(seed, arm, score, LOCAL[seed]))
  summary = EXPERIMENT.summarize(cells)
  claims = {(c['better'], c['other']): c for c in summary['claims']}
  assert claims['ditto', 'fedavg_ft']['num_seeds'] == 2
  assert claims['per_fedavg', 'fedavg_ft']['num_seeds'] == 3
  assert summary['diverged'] == [{'phase': 'compare', 'seed': 2,
                                  'arm': 'ditto', 'diverged_at_round': 4}]


def test_a_reused_afml_shakespeare_cell_is_scored_by_its_tuning_score():
  cells = [_tune('fedavg_ft', 'a', 0.5),
           _compare(0, 'fedavg_ft', 0.3, 0.2, score_name='tuning_score'),
           _compare(1, 'fedavg_ft', 0.4, 0.2, score_name='tuning_score')]
  summary = family.SHAKESPEARE.summarize(cells)
  assert summary['per_seed']['fedavg_ft'] == {'0': 0.3, '1': 0.4}


def test_every_arm_is_tuned_over_as_many_settings():
  for exp in (family.MNIST, family.SHAKESPEARE):
    assert len(exp.setting.arms) == 8
    assert {len(arm.tuning) for arm in exp.setting.arms} == {4}


def test_shakespeare_arms_shared_with_afml_shakespeare_are_its_runs():
  arms = {arm.name: arm for arm in family.SHAKESPEARE.setting.arms}
  for name, theirs in (('fedavg_ft', 'fedavg_ft'),
                       ('per_fedavg', 'fedper_meta'), ('afml', 'afml')):
    sweep_arm = afml_shakespeare.ARMS[theirs]
    assert arms[name].algorithm == sweep_arm.algorithm
    assert dict(arms[name].settings) == dict(sweep_arm.settings)
    assert arms[name].tuning == afml_shakespeare.TUNING_GRID[theirs]
  assert family.SHAKESPEARE.flagfile == afml_shakespeare.FLAGFILE
  assert family.SHAKESPEARE.reuses == (afml_shakespeare.NAME,)
  assert (family.SHAKESPEARE.setting.tuning_zeta ==
          afml_shakespeare.TUNING_ZETA)
  assert family.SHAKESPEARE.setting.zeta in afml_shakespeare.FULL_GRID.zetas


def test_every_arm_takes_as_many_client_steps_a_round():
  for arm in family.MNIST.setting.arms:
    if arm.name == 'ditto':
      assert arm.settings['ditto.personal_steps'] == 4
    if arm.name == 'fedrep':
      assert (arm.settings['fedrep.head_steps'] +
              arm.settings['fedrep.body_steps']) == 4


def _configs(exp, base):
  """`[(key, config)]` of every cell `exp` runs, every tuning score equal."""
  recorded = []

  def run_cell(key, config):
    recorded.append((dict(key), config))
    return reproduction.CellResult(
        key=dict(key), row={'tuning_score': 0.1, family.SCORE: 0.1},
        details={}, seconds=0.0)

  exp.run_cells(base, False, run_cell)
  return recorded


def test_shakespeare_runs_of_the_shared_arms_are_afml_shakespeares_runs():
  # The flagfile both experiments start from, as the binary reads it.
  with flagsaver.flagsaver():
    reproduce.parse_flags(['reproduce', '--experiment=family_shakespeare'])
    base = run_flags.config_from_flags()
  theirs = [config for _, config in _configs(afml_shakespeare.EXPERIMENT,
                                             base)]
  shared = [(key, config) for key, config in _configs(family.SHAKESPEARE,
                                                      base)
            if key['arm'] in ('fedavg_ft', 'per_fedavg', 'afml')]
  # 4 tuning settings and 3 seeds at zeta = 0 each: all reused, none trained.
  assert len(shared) == 3 * (4 + 3)
  for key, config in shared:
    assert any(reproduction.same_run(config, other.to_json())
               for other in theirs), key
  # A new arm's run is no afml_shakespeare run.
  ditto = next(config for key, config in _configs(family.SHAKESPEARE, base)
               if key['arm'] == 'ditto')
  assert not any(reproduction.same_run(ditto, other.to_json())
                 for other in theirs)
