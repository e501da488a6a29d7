"""The demo binary: several seeds, the paper's arms, a paired verdict."""

import csv
import json
import math
import os

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.binaries import demo
from tff_perfed.binaries import run_flags


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp('demo')
  with flagsaver.flagsaver():
    demo.parse_flags(['demo', '--demo_rounds=2', '--eval_every=1',
                      '--demo_seeds=3,4', f'--demo_output_dir={output_dir}',
                      '--num_eval_clients=4', '--demo_final_evaluations=2'])
    run_flags.main_wrapper(demo.main, interrupted_message='')(['demo'])
  return output_dir


def _run_summary(output_dir, seed, algorithm):
  with open(os.path.join(output_dir, f'seed_{seed}', algorithm,
                         'summary.json')) as f:
    return json.load(f)


def test_demo_runs_each_algorithm_on_each_seed_with_demo_flags(demo_run):
  for seed in (3, 4):
    for algorithm in ('fedavg', 'per_fedavg'):
      with open(os.path.join(demo_run, f'seed_{seed}', algorithm,
                             'flags.json')) as f:
        settings = json.load(f)
      assert (settings['seed'], settings['algorithm']) == (seed, algorithm)
      # From binaries/configs/demo.flags, not the train binary's defaults.
      assert settings['rounds_per_checkpoint'] == 25
      assert settings['rounds'] == 2  # --demo_rounds overrides.


def test_summary_holds_per_seed_scores_and_their_paired_difference(demo_run):
  with open(os.path.join(demo_run, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['seeds'] == [3, 4]
  per_seed = summary['accuracy']['per_seed']
  fedavg_1 = per_seed['FedAvg + 1 step']
  per_fedavg_1 = per_seed['Per-FedAvg + 1 step']
  # Each score is the mean of the run's last two evaluations (rounds 1, 2);
  # round 2's is the run's own summary.json.
  for seed, score in zip((3, 4), per_fedavg_1):
    run_dir = os.path.join(demo_run, f'seed_{seed}', 'per_fedavg')
    with open(os.path.join(run_dir, 'metrics.csv'), newline='') as f:
      by_round = {int(row['round_num']): row['personalized_accuracy@1']
                  for row in csv.DictReader(f)}
    last = _run_summary(demo_run, seed, 'per_fedavg')[
        'personalized_accuracy@1']
    assert float(by_round[2]) == pytest.approx(last)
    assert score == pytest.approx((float(by_round[1]) + last) / 2)
  differences = np.subtract(per_fedavg_1, fedavg_1)
  paired = summary['accuracy']['paired_difference']
  assert summary['difference_of'] == ['Per-FedAvg + 1 step',
                                      'FedAvg + 1 step']
  assert paired['mean'] == pytest.approx(differences.mean())
  # t_{0.975, 1} = 12.706204736174698 (tables).
  half_width = 12.706204736174698 * differences.std(ddof=1) / math.sqrt(2)
  assert paired['high'] - paired['mean'] == pytest.approx(half_width)
  assert summary['accuracy']['mean']['FedAvg'] == pytest.approx(
      np.mean(per_seed['FedAvg']))
  assert summary['verdict'] == summary['accuracy']['verdict']
  losses = summary['loss']['per_seed']['Per-FedAvg + 1 step']
  assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_figure_compares_both_algorithms(demo_run):
  assert os.path.getsize(os.path.join(demo_run, 'comparison.png')) > 0
