"""The family comparison's quick grid end to end: tuning, states, local models."""

import json
import os

import numpy as np
import pytest
import reproduce_runs

from tff_perfed.program import outputs
from tff_perfed.program import reproduction
from tff_perfed.program.reproductions import family

_reproduce = reproduce_runs.reproduce_in_process
_progress_lines = reproduce_runs.progress_lines


def _cell(output_dir, *parts):
  with open(os.path.join(output_dir, reproduction.CELLS_DIR, *parts,
                         reproduction.CELL_FILE)) as f:
    return json.load(f)


def test_quick_family_mnist_scores_every_arm_and_the_local_models(
    tmp_path, capsys):
  args = ('--experiment=family_mnist', '--quick',
          f'--reproduce_output_dir={tmp_path}')
  _reproduce(*args)
  lines = _progress_lines(capsys.readouterr().out)
  # fedavg_ft, ditto and fedrep: one tuning setting each, then two seeds.
  assert len(lines) == 9 and all('(trained in' in line for line in lines)
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    summary_text = f.read()
  summary = json.loads(summary_text)
  assert summary['settings']['dataset'] == 'mnist_5k'
  assert set(summary['ranking']) == {'fedavg_ft', 'ditto', 'fedrep',
                                     family.LOCAL}
  for seed in (0, 1):
    cell = _cell(tmp_path, 'phase_compare', f'seed_{seed}', 'arm_ditto')
    assert cell['settings']['ditto.personal_steps'] == 4
    # The score: Pers.1 of the last 3 evaluations in the run's metrics.csv.
    rows = outputs.read_csv_rows(os.path.join(
        cell['settings']['output_dir'], outputs.METRICS_FILE))
    pers1 = [float(r['personalized_accuracy@1']) for r in rows
             if r.get('personalized_accuracy@1')]
    assert summary['per_seed']['ditto'][str(seed)] == pytest.approx(
        np.mean(pers1[-3:]))
    # Ditto's clients keep state: those that trained are scored apart.
    assert 0 < cell['row']['with_state_clients'] <= 50
    # Every arm of a seed is held to the same local models.
    local = cell['details']['local']
    assert summary['per_seed'][family.LOCAL][str(seed)] == pytest.approx(
        np.mean(local))
    fedrep = _cell(tmp_path, 'phase_compare', f'seed_{seed}', 'arm_fedrep')
    assert fedrep['details']['local'] == local
    assert fedrep['settings']['fedrep.head_steps'] == 3
    assert fedrep['row']['fairness'] == pytest.approx(np.mean(
        np.greater(fedrep['details']['personalized'], local)))
  claimed = {(c['better'], c['other']) for c in summary['claims']}
  assert ('ditto', 'fedavg_ft') in claimed and (
      'fedrep', family.LOCAL) in claimed
  for name in (family.FIGURE_FILE, family.CURVES_FILE):
    assert os.path.getsize(tmp_path / name) > 0

  _reproduce(*args)
  lines = _progress_lines(capsys.readouterr().out)
  assert all(line.endswith('(finished earlier)') for line in lines)
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    assert f.read() == summary_text
