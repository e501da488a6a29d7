"""The sweep binary: sweep.flags, a tiny grid, the table and the files."""

import csv
import json
import os
import subprocess
import sys

from absl.testing import flagsaver
import pytest

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import sweep_diversity
from tff_perfed.program import diversity_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_sweep_binary_writes_csv_figures_and_prints_the_table(
    tmp_path, capsys):
  with flagsaver.flagsaver():
    sweep_diversity.parse_flags([
        'sweep', '--rounds=1', '--clients_per_round=2', '--local_steps=1',
        '--eval_every=1', '--sweep_zetas=0.5', '--sweep_seeds=1',
        '--use_synthetic_data', '--local_model_steps=2',
        f'--sweep_output_dir={tmp_path}'])
    run_flags.main_wrapper(sweep_diversity.main,
                           interrupted_message='')(['sweep'])
  with open(tmp_path / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['algorithm'] for r in rows] == [
      'fedavg_ft', 'fedper_meta', 'fedmaml', 'afml']
  with open(tmp_path / 'zeta_0.5' / 'seed_1' / 'afml' / 'flags.json') as f:
    settings = json.load(f)
  # From binaries/configs/sweep.flags, not the train binary's defaults.
  assert settings['afml.head_learning_rate'] == 0.2
  assert settings['diversity_zeta'] == 0.5
  for name in ('accuracy_vs_zeta.png', 'rounds_to_target_vs_zeta.png',
               'costs.png', 'clients.png', 'fairness.png', 'clients.json'):
    assert os.path.getsize(tmp_path / name) > 0
  printed = capsys.readouterr().out
  for name in ('fedavg_ft', 'fedper_meta', 'fedmaml', 'afml'):
    assert name in printed


@pytest.mark.parametrize('argument', ['--sweep_zetas=a,b', '--sweep_zetas=2',
                                      '--target_accuracy=3',
                                      '--sweep_arms=fedprox'])
def test_bad_sweep_flags_exit_with_one_line(tmp_path, argument):
  process = subprocess.run(
      [sys.executable, '-m', 'tff_perfed.binaries.sweep_diversity', argument,
       f'--sweep_output_dir={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert process.returncode == 2
  assert process.stderr.count('\n') == 1, process.stderr
  assert process.stderr.startswith('error: ')
  assert not os.listdir(tmp_path)


def test_sweep_arms_trains_the_named_arms_in_order(tmp_path, capsys):
  with flagsaver.flagsaver():
    sweep_diversity.parse_flags([
        'sweep', '--rounds=1', '--clients_per_round=2', '--local_steps=1',
        '--eval_every=1', '--sweep_zetas=0.5', '--sweep_seeds=1',
        '--use_synthetic_data', '--local_model_steps=2',
        '--sweep_arms=ditto,fedrep', f'--sweep_output_dir={tmp_path}'])
    run_flags.main_wrapper(sweep_diversity.main,
                           interrupted_message='')(['sweep'])
  with open(tmp_path / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['algorithm'], r['zeta'], r['seed']) for r in rows] == [
      ('ditto', '0.5', '1'), ('fedrep', '0.5', '1')]
  for row in rows:
    assert 0 <= float(row['personalized_accuracy@5']) <= 1
    assert float(row['flops_per_client_round']) > 0
  with open(tmp_path / 'zeta_0.5' / 'seed_1' / 'ditto' / 'flags.json') as f:
    settings = json.load(f)
  # From binaries/configs/sweep.flags (4, its --local_steps; the command
  # line's --local_steps=1 does not change it).
  assert (settings['algorithm'], settings['ditto.personal_steps']) == (
      'ditto', 4)
  assert os.path.isdir(tmp_path / 'zeta_0.5' / 'seed_1' / 'ditto' /
                       'client_states')
  assert os.path.getsize(tmp_path / 'accuracy_vs_zeta.png') > 0
  printed = capsys.readouterr().out
  assert 'ditto' in printed and 'fedrep' in printed
  assert 'afml' not in printed


def test_default_sweep_arms_are_the_comparison_set():
  assert diversity_sweep.select_arms(
      run_flags.FLAGS['sweep_arms'].default) == diversity_sweep.COMPARISON_SET


@pytest.mark.parametrize('arms,expected', [
    ('fedavg_ft,fedprox',
     'from ' + ', '.join(diversity_sweep.ARMS) + ", got 'fedprox'"),
    ('', "got ''"),
    ('ditto,ditto', 'no repeats'),
])
def test_bad_sweep_arms_exit_with_one_line_before_any_run(
    tmp_path, capsys, arms, expected):
  with flagsaver.flagsaver(), pytest.raises(SystemExit) as exit_info:
    sweep_diversity.parse_flags([
        'sweep', f'--sweep_arms={arms}',
        f'--sweep_output_dir={tmp_path / "out"}'])
    run_flags.main_wrapper(sweep_diversity.main,
                           interrupted_message='')(['sweep'])
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith('error: --sweep_arms must be ') and expected in line
  assert not (tmp_path / 'out').exists()
