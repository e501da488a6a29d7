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
                                      '--target_accuracy=3'])
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
