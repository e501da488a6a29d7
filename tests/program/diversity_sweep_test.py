"""The diversity sweep on a tiny grid: rows, costs, fairness, figures."""

import csv
import json
import os

import numpy as np
import pytest

from tff_perfed import models
from tff_perfed import validation
from tff_perfed.algorithms import registry
from tff_perfed.program import diversity_sweep
from tff_perfed.program import plots
from tff_perfed.program import run_config

TINY = dict(dataset='digits', use_synthetic_data=True, rounds=2,
            clients_per_round=3, local_steps=1, personalization_steps=5,
            eval_every=1, rounds_per_checkpoint=2)


def _num_parameters(weights):
  return sum(int(np.prod(np.shape(w))) for w in weights)


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp('sweep'))
  config = run_config.RunConfig(**TINY, output_dir=output_dir)
  result = diversity_sweep.run_diversity_sweep(
      config, zetas=[0.0, 1.0], seeds=[0], output_dir=output_dir,
      target_accuracy=0.0, local_model_steps=3, show_progress=False)
  return output_dir, result


def test_sweep_writes_one_row_per_algorithm_zeta_and_seed(sweep):
  output_dir, result = sweep
  with open(os.path.join(output_dir, diversity_sweep.SWEEP_FILE)) as f:
    rows = list(csv.DictReader(f))
  assert [(r['algorithm'], float(r['zeta'])) for r in rows] == [
      (arm.name, zeta) for zeta in (0.0, 1.0)
      for arm in diversity_sweep.COMPARISON_SET]
  assert set(rows[0]) == set(diversity_sweep.COLUMNS)
  for row in result.rows:
    assert 0.0 <= row['personalized_accuracy@5'] <= 1.0
    assert 0.0 <= row['fairness'] <= 1.0
    # A target of 0 is reached at the first evaluation, round 0.
    assert row['rounds_to_target'] == 0 and row['bytes_to_target'] == 0


def test_bytes_are_the_broadcast_and_uploaded_tensors(sweep):
  _, result = sweep
  by_name = {r['algorithm']: r for r in result.rows if r['zeta'] == 0.0}
  whole = models.build_mlp(input_dim=64, num_classes=10, seed=0)
  split_model = models.build_mlp_split(input_dim=64, num_classes=10, seed=0)
  model_bytes = 4 * _num_parameters(whole.initial_weights[0])
  for name in ('fedavg_ft', 'fedper_meta', 'fedmaml'):
    assert by_name[name]['bytes_down_per_client_round'] == model_bytes
  head = _num_parameters(split_model.head.initial_weights[0])
  encoder = _num_parameters(split_model.encoder.initial_weights)
  # AFML broadcasts theta_hat, the sampled theta_t and an int64[2] round key.
  assert by_name['afml']['bytes_down_per_client_round'] == (
      4 * (head + encoder) + 16)
  # And uploads two gradients of those sizes, plus weights and metrics.
  assert 4 * (head + encoder) < by_name['afml'][
      'bytes_up_per_client_round'] < 4 * (head + encoder) + 64
  row = by_name['afml']
  assert row['bytes_total'] == 2 * 3 * (
      row['bytes_down_per_client_round'] + row['bytes_up_per_client_round'])


def test_flops_grow_with_the_meta_gradients_order(sweep):
  _, result = sweep
  flops = {r['algorithm']: r['flops_per_client_round'] for r in result.rows}
  assert 0 < flops['fedavg_ft'] < flops['fedper_meta'] < flops['fedmaml']
  assert flops['afml'] > 0


def test_clients_json_pairs_personalized_and_local_accuracies(sweep):
  output_dir, result = sweep
  with open(os.path.join(output_dir, diversity_sweep.CLIENTS_FILE)) as f:
    clients = json.load(f)
  assert clients == result.clients
  entry = clients['afml']['0']
  assert len(entry['personalized']) == len(entry['local']) == 50
  row = next(r for r in result.rows
             if r['algorithm'] == 'afml' and r['zeta'] == 0.0)
  expected = np.mean(np.array(entry['personalized']) >
                     np.array(entry['local']))
  assert row['fairness'] == pytest.approx(expected)


def test_sweep_figures_are_written(sweep, tmp_path):
  _, result = sweep
  labels = {arm.name: arm.label for arm in diversity_sweep.COMPARISON_SET}
  paths = plots.plot_sweep(result.rows, result.clients, labels,
                           str(tmp_path), rounds=2)
  assert sorted(os.path.basename(p) for p in paths) == [
      'accuracy_vs_zeta.png', 'clients.png', 'costs.png', 'fairness.png',
      'rounds_to_target_vs_zeta.png']
  for path in paths:
    assert os.path.getsize(path) > 0


@pytest.mark.parametrize('changes,argument', [
    (dict(personalization_steps=3), 'personalization_steps'),
    (dict(zetas=[1.5]), 'sweep_zetas'),
    (dict(seeds=[]), 'sweep_seeds'),
    (dict(target_accuracy=1.5), 'target_accuracy'),
])
def test_bad_sweep_settings_name_the_setting(tmp_path, changes, argument):
  config = run_config.RunConfig(**dict(
      TINY, personalization_steps=changes.pop('personalization_steps', 5)),
                                output_dir=str(tmp_path))
  kwargs = dict(zetas=[0.0], seeds=[0], target_accuracy=0.5,
                local_model_steps=None)
  kwargs.update(changes)
  with pytest.raises(validation.ArgumentError) as error:
    diversity_sweep.check_sweep_settings(config, **kwargs)
  assert error.value.argument == argument


def test_every_arm_trains_a_registered_algorithm_under_its_own_name():
  arms = diversity_sweep.COMPARISON_SET + diversity_sweep.FAMILY_ARMS
  assert list(diversity_sweep.ARMS) == [arm.name for arm in arms]
  assert {arm.algorithm for arm in diversity_sweep.FAMILY_ARMS} == {
      'ditto', 'pfedme', 'apfl', 'fedrep', 'fedper'}
  for arm in arms:
    assert registry.get(arm.algorithm).name == arm.algorithm


def test_select_arms_keeps_the_order_given_and_lists_known_arms():
  assert [arm.name for arm in diversity_sweep.select_arms(
      ['fedper', 'fedavg_ft'])] == ['fedper', 'fedavg_ft']
  with pytest.raises(validation.ArgumentValueError) as error:
    diversity_sweep.select_arms(['fedprox'])
  assert ', '.join(diversity_sweep.ARMS) in str(error.value)
