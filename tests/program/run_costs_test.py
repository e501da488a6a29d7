"""Every run's costs: bytes and FLOPs per client round, in its outputs."""

import json
import os

import numpy as np

from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config


def _run(output_dir, **settings):
  config = run_config.RunConfig(**dict(dict(
      dataset='digits', rounds=2, clients_per_round=3, local_steps=1,
      batch_size=4, personalization_steps=1, num_eval_clients=2,
      eval_every=1), **settings), output_dir=str(output_dir))
  experiment.run_experiment(config, show_progress=False)
  with open(os.path.join(output_dir, outputs.SUMMARY_FILE)) as f:
    summary = json.load(f)
  rows = outputs.read_csv_rows(os.path.join(output_dir, outputs.METRICS_FILE))
  return config, summary, rows


def test_a_runs_summary_and_metrics_carry_its_bytes_and_flops(tmp_path):
  config, summary, rows = _run(tmp_path / 'one_step')
  model = experiment.model_builder(config)()
  parameters = sum(np.size(w) for w in model.initial_weights[0])
  # Per-FedAvg broadcasts the float32 model and gets back an update of it.
  assert summary['bytes_down_per_client_round'] == 4 * parameters
  assert summary['bytes_up_per_client_round'] >= 4 * parameters
  per_round = 3 * (summary['bytes_down_per_client_round'] +
                   summary['bytes_up_per_client_round'])
  assert summary['bytes_total'] == 2 * per_round
  assert [float(row['bytes_total']) for row in rows] == [
      0.0, per_round, 2 * per_round]
  for row in rows:
    assert float(row['flops_per_client_round']) == (
        summary['flops_per_client_round'])
  # A round of two local steps costs two steps.
  _, two_steps, _ = _run(tmp_path / 'two_steps', local_steps=2)
  assert summary['flops_per_client_round'] > 0
  assert two_steps['flops_per_client_round'] == (
      2 * summary['flops_per_client_round'])
