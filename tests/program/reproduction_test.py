"""Cells that are never rerun, summaries from the cells, honest verdicts."""

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from tff_perfed.program import experiment
from tff_perfed.program import reproduction
from tff_perfed.program import run_config as run_config_lib
from tff_perfed.program import training_loop


def test_claim_interval_is_the_paired_t_interval_of_the_differences():
  a, b = [0.90, 0.93, 0.91, 0.95], [0.88, 0.90, 0.90, 0.91]
  d = np.subtract(a, b)
  half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
  claim = reproduction.claim_verdict(a, b)
  assert claim['mean'] == pytest.approx(d.mean())
  assert claim['low'] == pytest.approx(d.mean() - half)
  assert claim['high'] == pytest.approx(d.mean() + half)
  assert claim['num_better'] == 4
  assert claim['verdict'] == reproduction.HOLDS


def test_claim_verdicts_cover_both_directions_and_no_difference():
  assert reproduction.claim_verdict(
      [0.1, 0.2, 0.1], [0.3, 0.4, 0.35])['verdict'] == (
          reproduction.DOES_NOT_HOLD)
  assert reproduction.claim_verdict(
      [0.3, 0.1, 0.2], [0.2, 0.2, 0.2])['verdict'] == reproduction.CANNOT_TELL
  # Fewer bytes is better: 10 below 12 on every seed holds.
  fewer = reproduction.claim_verdict([10, 10, 11], [12, 12.5, 13],
                                     higher_is_better=False)
  assert fewer['verdict'] == reproduction.HOLDS
  assert fewer['num_better'] == 3


def test_one_seed_cannot_decide_a_claim():
  claim = reproduction.claim_verdict([0.9], [0.1])
  assert claim['verdict'] == reproduction.CANNOT_TELL
  assert (claim['low'], claim['high']) == (-math.inf, math.inf)


class _Grid(reproduction.Experiment):
  """Two seeds of one run, scored by a fake `run_experiment`."""

  name = 'fake'
  headline = 'score'

  def __init__(self, seeds=(0, 1)):
    self.seeds = seeds
    self.scored = []

  def num_cells(self, quick):
    return len(self.seeds)

  def run_cells(self, base, quick, run_cell):
    return [run_cell({'seed': s}, base.replace(seed=s)) for s in self.seeds]

  def score(self, config, result, dataset):
    self.scored.append(config.seed)
    return {'row': {'score': result.summary['score']}, 'details': {}}

  def summarize(self, cells):
    return {'mean': float(np.mean([c.row['score'] for c in cells
                                   if c.diverged_at_round is None]))}

  def plot(self, cells, summary, output_dir):
    return []

  def format_summary(self, summary):
    return str(summary)


@pytest.fixture
def fake_runs(monkeypatch):
  """`run_experiment` that scores seed s as s / 10 and counts its calls."""
  calls = []

  def run(config, *, dataset, show_progress):
    del dataset, show_progress
    calls.append(config.output_dir)
    return experiment.RunResult(summary={'score': config.seed / 10},
                                client_ids=[], client_rows=[])

  monkeypatch.setattr(experiment, 'run_experiment', run)
  monkeypatch.setattr(experiment, 'load_dataset', lambda config: None)
  return calls


def test_finished_cells_are_never_rerun_and_the_summary_is_the_same(
    tmp_path, fake_runs):
  base = run_config_lib.RunConfig(rounds=3)
  lines = []
  first = reproduction.run_reproduction(_Grid(), base, output_dir=str(
      tmp_path), log=lines.append)
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    summary = f.read()
  assert len(fake_runs) == 2
  assert first.summary['mean'] == pytest.approx(0.05)
  again = _Grid()
  rerun_lines = []
  reproduction.run_reproduction(again, base, output_dir=str(tmp_path),
                                log=rerun_lines.append)
  assert len(fake_runs) == 2 and not again.scored  # Nothing ran.
  assert all(line.endswith('(finished earlier)') for line in rerun_lines)
  assert rerun_lines[0].startswith('[1/2] fake seed=0: score 0.0')
  with open(tmp_path / reproduction.SUMMARY_FILE) as f:
    assert f.read() == summary
  with open(tmp_path / reproduction.CELLS_CSV) as f:
    assert f.read().splitlines() == ['seed,score,seconds',
                                     f'0,0.0,{first.cells[0].seconds}',
                                     f'1,0.1,{first.cells[1].seconds}']


def test_a_diverged_cell_is_recorded_once_and_never_rerun(
    tmp_path, monkeypatch, fake_runs):
  run = experiment.run_experiment

  def diverge_on_seed_1(config, **kwargs):
    if config.seed == 1:
      fake_runs.append(config.output_dir)
      raise training_loop.TrainingDivergedError(7, 'all NaN', 5)
    return run(config, **kwargs)

  monkeypatch.setattr(experiment, 'run_experiment', diverge_on_seed_1)
  base = run_config_lib.RunConfig(rounds=3)
  lines = []
  result = reproduction.run_reproduction(_Grid(), base, output_dir=str(
      tmp_path), log=lines.append)
  assert [c.diverged_at_round for c in result.cells] == [None, 7]
  assert lines[1].startswith('[2/2] fake seed=1: diverged at round 7 (')
  assert result.summary['mean'] == 0.0  # The experiment left it out.
  reproduction.run_reproduction(_Grid(), base, output_dir=str(tmp_path),
                                log=lines.append)
  assert len(fake_runs) == 2
  assert lines[3] == '[2/2] fake seed=1: diverged at round 7 (finished earlier)'


def test_a_cell_with_more_rounds_or_a_cut_short_file_runs_again(
    tmp_path, fake_runs):
  base = run_config_lib.RunConfig(rounds=3)
  reproduction.run_reproduction(_Grid(), base, output_dir=str(tmp_path),
                                log=lambda line: None)
  with open(tmp_path / 'cells' / 'seed_1' / reproduction.CELL_FILE, 'w') as f:
    f.write('{"key": ')  # A write cut short.
  reproduction.run_reproduction(_Grid(), base, output_dir=str(tmp_path),
                                log=lambda line: None)
  assert len(fake_runs) == 3 and fake_runs[-1].endswith('seed_1')
  reproduction.run_reproduction(_Grid(), base.replace(rounds=4),
                                output_dir=str(tmp_path),
                                log=lambda line: None)
  assert len(fake_runs) == 5  # Both resume to the new round count.
  with open(tmp_path / 'cells' / 'seed_0' / reproduction.CELL_FILE) as f:
    assert json.load(f)['settings']['rounds'] == 4


def test_cell_directories_are_named_by_their_coordinates():
  cell = reproduction.Cell({'zeta': 0.3, 'seed': 2, 'arm': 'afml'},
                           run_config_lib.RunConfig())
  assert cell.directory_name == os.path.join('zeta_0.3', 'seed_2',
                                             'arm_afml')
  assert cell.name == 'zeta=0.3 seed=2 arm=afml'


class _Reusing(_Grid):
  """`_Grid` under another name that takes the cells of 'fake'."""

  name = 'reusing'
  reuses = ('fake',)


def test_a_cell_of_the_same_settings_in_a_reused_experiment_is_not_rerun(
    tmp_path, fake_runs):
  base = run_config_lib.RunConfig(rounds=3)
  reproduction.run_reproduction(_Grid(), base, output_dir=str(
      tmp_path / 'fake'), log=lambda line: None)
  assert len(fake_runs) == 2
  lines = []
  # Seed 2 is new; seeds 0 and 1 are the same runs as fake's.
  reusing = _Reusing(seeds=(0, 1, 2))
  result = reproduction.run_reproduction(
      reusing, base, output_dir=str(tmp_path / 'reusing'), log=lines.append)
  assert len(fake_runs) == 3 and reusing.scored == [2]
  assert lines[0] == ('[1/3] reusing seed=0: score 0.0000 (the same run as '
                      '../fake/cells/seed_0/cell.json)')
  assert [c.row['score'] for c in result.cells] == [0.0, 0.1, 0.2]
  with open(tmp_path / 'reusing' / 'cells' / 'seed_1' /
            reproduction.CELL_FILE) as f:
    copied = json.load(f)
  assert copied['reused_from'] == '../fake/cells/seed_1/cell.json'
  assert copied['settings']['output_dir'].endswith(
      os.path.join('reusing', 'cells', 'seed_1'))
  # From then on the copy is this experiment's own finished cell.
  reproduction.run_reproduction(_Reusing(seeds=(0, 1, 2)), base,
                                output_dir=str(tmp_path / 'reusing'),
                                log=lines.append)
  assert all(line.endswith('(finished earlier)') for line in lines[3:])


@pytest.mark.parametrize('change,reused', [
    ({'eval_every': 2}, False), ({'batch_size': 7}, False),
    ({'per_fedavg.outer_learning_rate': 0.3}, False),
    # Another algorithm's setting does not change a Per-FedAvg run.
    ({'fedavg.client_learning_rate': 0.3}, True),
    # Nor does where it reads its data from.
    ({'data_dir': '/elsewhere'}, True)])
def test_a_cell_is_reused_only_when_its_run_is_the_same(
    tmp_path, fake_runs, change, reused):
  base = run_config_lib.RunConfig(rounds=3)
  reproduction.run_reproduction(_Grid(), base, output_dir=str(
      tmp_path / 'fake'), log=lambda line: None)
  reproduction.run_reproduction(_Reusing(), base.replace(**change),
                                output_dir=str(tmp_path / 'reusing'),
                                log=lambda line: None)
  assert len(fake_runs) == (2 if reused else 4)
