"""AFML's reproduction summary from made-up cells: tuning and pairing."""

import pytest

from tff_perfed.program import reproduction
from tff_perfed.program.reproductions import afml_shakespeare as afml

ARMS = ('fedavg_ft', 'fedper_meta', 'fedmaml', 'afml')


def _tune(arm, setting, score):
  row = ({reproduction.DIVERGED_AT_ROUND: 9} if score is None else
         {'tuning_score': score})
  return reproduction.CellResult(
      key={'phase': 'tune', 'arm': arm, 'setting': setting}, row=row,
      details={}, seconds=1.0)


def _compare(seed, arm, pers5):
  if pers5 is None:
    return reproduction.CellResult(
        key={'phase': 'compare', 'zeta': 0.3, 'seed': seed, 'arm': arm},
        row={reproduction.DIVERGED_AT_ROUND: 4}, details={}, seconds=1.0)
  row = {afml.PERS1: pers5 - 0.1, afml.PERS5: pers5,
         'bytes_down_per_client_round': 100.0,
         'bytes_up_per_client_round': 50.0 if arm == 'afml' else 100.0,
         'clients_per_round': 10, 'fairness': pers5, 'tuning_score': pers5}
  curve = {'0': 0.1, '5': pers5 - 0.05, '10': pers5}
  return reproduction.CellResult(
      key={'phase': 'compare', 'zeta': 0.3, 'seed': seed, 'arm': arm},
      row=row, details={'curves': {afml.PERS3: curve, afml.PERS5: curve}},
      seconds=1.0)


@pytest.fixture
def summary():
  cells = [_tune(arm, 'small', 0.1) for arm in ARMS]
  cells += [_tune('afml', 'large', None), _tune('fedmaml', 'large', 0.2)]
  # AFML's seed 2 diverged; every baseline finished every seed.
  pers5 = {'fedavg_ft': [0.10, 0.12, 0.11], 'fedper_meta': [0.2, 0.2, 0.2],
           'fedmaml': [0.15, 0.16, 0.15], 'afml': [0.20, 0.22, None]}
  cells += [_compare(seed, arm, values[seed])
            for arm, values in pers5.items() for seed in range(3)]
  return afml.AfmlShakespeare().summarize(cells)


def test_a_diverged_tuning_setting_is_never_chosen(summary):
  chosen = summary['tuning']['chosen']
  assert chosen['afml'] == 'small' and chosen['fedmaml'] == 'large'
  (diverged,) = [e for e in summary['tuning']['tried']
                 if 'diverged_at_round' in e]
  assert (diverged['arm'], diverged['pers5']) == ('afml', None)


def test_claims_pair_arms_over_the_seeds_both_finished(summary):
  assert summary['diverged'] == [{'phase': 'compare', 'zeta': 0.3,
                                  'seed': 2, 'arm': 'afml',
                                  'diverged_at_round': 4}]
  assert summary['spread']['0.3']['afml'][afml.PERS5]['num_seeds'] == 2
  claims = {c['claim']: c for c in summary['claims']}
  versus_fedavg = claims['AFML beats FedAvg-FT in Pers.5 at zeta = 0.3']
  assert versus_fedavg['num_seeds'] == 2
  assert versus_fedavg['mean'] == pytest.approx((0.10 + 0.10) / 2)
  fewer_bytes = claims[
      'AFML sends fewer bytes per client round than FedMAML at zeta = 0.3']
  assert fewer_bytes['mean'] == pytest.approx(-50.0)
  gain = claims['AFML Pers.5 above its Pers.1 at zeta = 0.3']
  assert gain['mean'] == pytest.approx(0.1)
  trained = claims['FedPer-Meta Pers.5 above that of the initial weights at '
                   'zeta = 0.3']
  assert trained['mean'] == pytest.approx(0.2 - 0.1)
  assert trained['verdict'] == reproduction.HOLDS  # +0.1 on every seed.
  printed = afml.AfmlShakespeare().format_summary(summary)
  assert (f'zeta 0.3 seed 2 {afml.LABELS["afml"]} at round 4' in printed)
  assert f'{afml.LABELS["afml"]} large: diverged at round 9' in printed
