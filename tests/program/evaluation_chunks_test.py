"""The personalized evaluation of many clients, a chunk of them per call."""

import os

from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config


def _clients_csv(output_dir, **settings):
  config = run_config.RunConfig(
      dataset='digits', rounds=1, clients_per_round=2, local_steps=1,
      batch_size=4, personalization_steps=2, num_eval_clients=7,
      eval_every=1, output_dir=str(output_dir), **settings)
  experiment.run_experiment(config, show_progress=False)
  with open(os.path.join(output_dir, outputs.CLIENTS_FILE)) as f:
    return f.read()


def test_scores_do_not_depend_on_how_many_clients_one_call_evaluates(
    tmp_path, monkeypatch):
  whole = _clients_csv(tmp_path / 'whole')
  # 7 clients in calls of 3, 3 and 1, their datasets made for each call.
  monkeypatch.setattr(experiment, 'EVAL_CLIENTS_PER_CALL', 3)
  chunked = _clients_csv(tmp_path / 'chunked')
  assert chunked == whole
  assert len(whole.splitlines()) == 1 + 7
