"""The reproduction binary: quick grids end to end, resumption, bad names."""

import csv
import json
import os
import subprocess
import sys

import pytest
import reproduce_runs

from tff_perfed.program import reproduction

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_reproduce = reproduce_runs.reproduce_in_process
_progress_lines = reproduce_runs.progress_lines


def test_quick_per_fedavg_mnist_writes_its_files_and_a_rerun_ends_at_once(
    tmp_path, capsys):
  args = ('--experiment=per_fedavg_mnist', '--quick',
          f'--reproduce_output_dir={tmp_path}')
  _reproduce(*args)
  lines = _progress_lines(capsys.readouterr().out)
  assert len(lines) == 8 and all('(trained in' in line for line in lines)
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    summary_text = f.read()
  summary = json.loads(summary_text)
  (panel,) = summary['panels']
  assert (panel['local_steps'], panel['clients_per_round']) == (1, 5)
  assert panel['seeds'] == [0, 1]
  claim = panel['claims']['Per-FedAvg (FO) + 1 step beats FedAvg + 1 step']
  fo = panel['per_seed']['Per-FedAvg (FO) + 1 step']
  fedavg = panel['per_seed']['FedAvg + 1 step']
  assert claim['mean'] == pytest.approx(
      sum(a - b for a, b in zip(fo, fedavg)) / 2)
  # From the experiment's flagfile, not the train binary's defaults.
  assert summary['settings']['dataset'] == 'mnist_5k'
  with open(tmp_path / reproduction.CELLS_CSV) as f:
    rows = list(csv.DictReader(f))
  assert [r['run'] for r in rows[:4]] == [
      'fedavg', 'per_fedavg_fo', 'per_fedavg_hf', 'per_fedavg_exact']
  assert os.path.getsize(tmp_path / 'figure_1.png') > 0

  _reproduce(*args)
  lines = _progress_lines(capsys.readouterr().out)
  assert len(lines) == 8
  assert all(line.endswith('(finished earlier)') for line in lines)
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    assert f.read() == summary_text


def test_quick_afml_shakespeare_tunes_every_arm_then_compares(
    tmp_path, capsys):
  _reproduce('--experiment=afml_shakespeare', '--quick',
             f'--reproduce_output_dir={tmp_path}')
  printed = capsys.readouterr().out
  assert len(_progress_lines(printed)) == 8
  assert 'Claims of section 5.1:' in printed
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    summary = json.load(f)
  assert set(summary['tuning']['chosen']) == {
      'fedavg_ft', 'fedper_meta', 'fedmaml', 'afml'}
  assert set(summary['spread']) == {'1'}
  verdicts = {c['verdict'] for c in summary['claims']}
  # One seed decides nothing.
  assert verdicts <= {reproduction.CANNOT_TELL}
  with open(tmp_path / reproduction.CELLS_CSV) as f:
    rows = list(csv.DictReader(f))
  assert [r['phase'] for r in rows] == ['tune'] * 4 + ['compare'] * 4
  compared = [r for r in rows if r['phase'] == 'compare']
  assert all(0 <= float(r['fairness']) <= 1 for r in compared)
  for name in ('accuracy_vs_zeta.png', 'costs.png', 'clients.png',
               'fairness.png', 'rounds_to_target_vs_zeta.png'):
    assert os.path.getsize(tmp_path / name) > 0


@pytest.mark.parametrize('argument', ['--experiment=nope', '--rounds=2'])
def test_an_unknown_or_missing_experiment_is_one_line_naming_the_known(
    tmp_path, argument):
  process = subprocess.run(
      [sys.executable, '-m', 'tff_perfed.binaries.reproduce', argument,
       f'--reproduce_output_dir={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert process.returncode == 2
  assert process.stderr.count('\n') == 1, process.stderr
  assert process.stderr.startswith('error: --experiment')
  assert 'per_fedavg_mnist' in process.stderr
  assert 'afml_shakespeare' in process.stderr
  assert not os.listdir(tmp_path)
