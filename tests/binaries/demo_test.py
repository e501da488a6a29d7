"""The demo binary: several seeds, the paper's arms, a paired verdict."""

import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys

from absl.testing import flagsaver
import numpy as np
import pytest

from tff_perfed.algorithms import registry
from tff_perfed.binaries import demo
from tff_perfed.binaries import run_flags
from tff_perfed.program import comparison

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


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


# --demo_arms: any registered algorithm, here one whose clients keep state.
ARMS_FLAGS = ['--demo_rounds=2', '--eval_every=1', '--demo_seeds=3,4',
              '--clients_per_round=3', '--num_eval_clients=4',
              '--adaptation_draws=1', '--demo_final_evaluations=2']


@pytest.fixture(scope='module')
def ditto_demo_run(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp('demo_arms')
  printed = io.StringIO()
  with flagsaver.flagsaver(), contextlib.redirect_stdout(printed):
    demo.parse_flags(['demo', *ARMS_FLAGS, '--demo_arms=fedavg:1,ditto:1',
                      f'--demo_output_dir={output_dir}'])
    run_flags.main_wrapper(demo.main, interrupted_message='')(['demo'])
  return output_dir, printed.getvalue()


def _score_from_metrics_csv(output_dir, seed, algorithm, column):
  """Mean of the run's last two evaluations of `column`, read from its CSV."""
  path = os.path.join(output_dir, f'seed_{seed}', algorithm, 'metrics.csv')
  with open(path, newline='') as f:
    evaluated = sorted((int(row['round_num']), float(row[column]))
                       for row in csv.DictReader(f) if row[column])
  return np.mean([value for _, value in evaluated[-2:]])


def test_demo_arms_score_each_seed_from_its_runs_metrics_csv(ditto_demo_run):
  output_dir, _ = ditto_demo_run
  # Ditto's clients kept state: the run went through the client-state store.
  assert os.path.isdir(os.path.join(output_dir, 'seed_3', 'ditto',
                                    'client_states'))
  with open(os.path.join(output_dir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['difference_of'] == ['Ditto + 1 step', 'FedAvg + 1 step']
  for metric in ('accuracy', 'loss'):
    column = f'personalized_{metric}@1'
    expected = {
        label: [_score_from_metrics_csv(output_dir, seed, algorithm, column)
                for seed in (3, 4)]
        for label, algorithm in (('FedAvg + 1 step', 'fedavg'),
                                 ('Ditto + 1 step', 'ditto'))}
    per_seed = summary[metric]['per_seed']
    assert set(per_seed) == set(expected)
    for label, scores in expected.items():
      assert per_seed[label] == pytest.approx(scores)
    differences = [ditto - fedavg for ditto, fedavg in zip(
        expected['Ditto + 1 step'], expected['FedAvg + 1 step'])]
    assert summary[metric]['paired_difference']['mean'] == pytest.approx(
        sum(differences) / len(differences))


def test_demo_arms_print_their_labels_and_difference(ditto_demo_run):
  _, printed = ditto_demo_run
  # The table's rows in the order of --demo_arms.
  assert 0 < printed.index('\nFedAvg + 1 step ') < printed.index(
      '\nDitto + 1 step ')
  assert '(Ditto + 1 step minus FedAvg + 1 step)' in printed
  assert 'Per-FedAvg' not in printed


def test_default_demo_arms_are_the_papers():
  assert comparison.parse_arms(
      run_flags.FLAGS['demo_arms'].default, max_steps=1) == (
      comparison.PAPER_ARMS)


@pytest.mark.parametrize('arms,expected', [
    ('fedprox:1,fedavg:1',
     'algorithm is one of ' + ', '.join(registry.names())),
    ('fedavg:1,ditto:-1', 'steps are an int from 0'),
    ('fedavg:1,ditto:one', "got 'ditto:one'"),
    # demo.flags scores after at most --personalization_steps=1 step.
    ('fedavg:1,ditto:2', "personalization_steps (1), got 'ditto:2'"),
    ('ditto:1', 'two arms or more'),
    ('fedavg:1,ditto', "algorithm:steps (e.g. fedavg:1), got 'ditto'"),
    ('fedavg:1,fedavg:1', 'without repeats'),
])
def test_bad_demo_arms_exit_with_one_line_before_any_run(
    tmp_path, capsys, arms, expected):
  with flagsaver.flagsaver(), pytest.raises(SystemExit) as exit_info:
    demo.parse_flags(['demo', f'--demo_arms={arms}',
                      f'--demo_output_dir={tmp_path / "out"}'])
    run_flags.main_wrapper(demo.main, interrupted_message='')(['demo'])
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith('error: --demo_arms must be ') and expected in line
  assert not (tmp_path / 'out').exists()


def test_unknown_demo_arm_algorithm_ends_the_binary_with_one_line(tmp_path):
  process = subprocess.run(
      [sys.executable, '-m', 'tff_perfed.binaries.demo',
       '--demo_arms=fedavg:1,fedprox:1', f'--demo_output_dir={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert process.returncode == 2
  assert process.stderr.count('\n') == 1, process.stderr
  assert process.stderr.startswith('error: --demo_arms must be ')
  assert 'ditto' in process.stderr and 'fedprox' in process.stderr
  assert not os.listdir(tmp_path)
