"""The training loop: evaluation schedule, checkpoints, resume, releases."""

import asyncio
import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed.program import training_loop


def _process():
  return tff_perfed.build_per_fedavg(
      lambda: models.build_mlp(input_dim=3, num_classes=2, seed=0,
                               hidden_units=(4,)),
      inner_learning_rate=0.1, outer_learning_rate=0.2, local_steps=1)


def _data(round_num):
  rng = np.random.default_rng(round_num)  # Same data for a round, always.
  return [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.normal(size=(3, 4, 3)).astype(np.float32),
      y=rng.integers(0, 2, (3, 4)).astype(np.int32))) for _ in range(2)]


def _run(process, tmp_path, total_rounds, evaluated, releases, **kwargs):
  def evaluate_fn(weights, round_num):
    evaluated.append(round_num)
    return {'first_weight_sum': float(np.sum(weights.trainable[0]))}

  manager = tff.program.FileProgramStateManager(
      str(tmp_path / 'checkpoints'), keep_total=10)
  return training_loop.run_training_loop(
      process, training_data_fn=_data, total_rounds=total_rounds,
      evaluate_fn=evaluate_fn, state_manager=manager,
      release_managers=[releases], **kwargs), manager


def test_evaluates_round_zero_every_eval_every_rounds_and_the_last_round(
    tmp_path):
  evaluated = []
  releases = tff.program.MemoryReleaseManager()
  _run(_process(), tmp_path, 5, evaluated, releases, eval_every=2,
       rounds_per_checkpoint=3)
  assert evaluated == [0, 2, 4, 5]
  released = dict(releases.values())
  assert sorted(released) == [0, 1, 2, 3, 4, 5]
  assert 'first_weight_sum' in released[5] and 'evaluation_seconds' in (
      released[5])
  assert 'first_weight_sum' not in released[3]
  assert 'evaluation_seconds' not in released[3]
  assert {'train/loss', 'train/accuracy', 'num_non_finite_updates',
          'round_seconds'} <= set(released[3])


def test_checkpoints_every_k_rounds_and_after_the_last(tmp_path):
  _, manager = _run(_process(), tmp_path, 5, [],
                    tff.program.MemoryReleaseManager(), eval_every=5,
                    rounds_per_checkpoint=3)
  assert asyncio.run(manager.get_versions()) == [0, 3, 5]


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
  process = _process()
  full, _ = _run(process, tmp_path / 'full', 4, [],
                 tff.program.MemoryReleaseManager())
  _run(process, tmp_path / 'resumed', 2, [],
       tff.program.MemoryReleaseManager())
  evaluated = []
  resumed, _ = _run(process, tmp_path / 'resumed', 4, evaluated,
                    tff.program.MemoryReleaseManager())
  assert evaluated == [3, 4]  # Rounds 0..2 were done before.
  for a, b in zip(process.get_model_weights(full).trainable,
                  process.get_model_weights(resumed).trainable):
    np.testing.assert_array_equal(a, b)


def test_flat_names_keep_client_work_and_evaluation_without_prefixes_and_finalizer_with():
  flat = training_loop.flatten_round_metrics(collections.OrderedDict(
      distributor=(),
      client_work=collections.OrderedDict(
          train=collections.OrderedDict(loss=1.5, accuracy=0.25),
          num_non_finite_updates=0),
      aggregator=collections.OrderedDict(mean_value=()),
      finalizer=collections.OrderedDict(update_non_finite=0),
      training_time_in_seconds=0.5,
      round_number=3,
      **{'evaluation/personalized_accuracy@1': 0.9,
         'evaluation/evaluation_time_in_seconds': 0.1}))
  assert flat == pytest.approx({
      'train/loss': 1.5, 'train/accuracy': 0.25,
      'num_non_finite_updates': 0.0, 'round_seconds': 0.5,
      'finalizer/update_non_finite': 0.0,
      'personalized_accuracy@1': 0.9, 'evaluation_seconds': 0.1})


def test_a_run_resumed_past_its_total_rounds_saves_no_relabelled_state(
    tmp_path, caplog):
  process = _process()
  _run(process, tmp_path, 5, [], tff.program.MemoryReleaseManager(),
       rounds_per_checkpoint=3)
  evaluated = []
  state, manager = _run(process, tmp_path, 4, evaluated,
                        tff.program.MemoryReleaseManager(),
                        rounds_per_checkpoint=3)
  # Before, round 5's state was saved as round 4.
  assert asyncio.run(manager.get_versions()) == [0, 3, 5]
  assert evaluated == []
  saved, _ = asyncio.run(manager.load_latest(process.initialize()))
  for a, b in zip(process.get_model_weights(state).trainable,
                  process.get_model_weights(saved).trainable):
    np.testing.assert_array_equal(a, b)
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING']
  assert len(warnings) == 1 and 'round 5' in warnings[0]


def test_a_round_whose_every_update_is_non_finite_stops_before_it_is_saved(
    tmp_path):
  def nan_data(round_num):
    datasets = _data(round_num)
    if round_num < 3:
      return datasets
    return [d.map(lambda e: collections.OrderedDict(x=e['x'] * np.nan,
                                                    y=e['y']))
            for d in datasets]

  manager = tff.program.FileProgramStateManager(
      str(tmp_path / 'checkpoints'), keep_total=10)
  releases = tff.program.MemoryReleaseManager()
  with pytest.raises(training_loop.TrainingDivergedError) as error:
    training_loop.run_training_loop(
        _process(), training_data_fn=nan_data, total_rounds=5,
        state_manager=manager, release_managers=[releases])
  assert error.value.round_num == 3 and error.value.last_saved_round == 2
  assert str(error.value).startswith(
      'training diverged at round 3: the updates of all 2 clients were '
      'non-finite')
  assert asyncio.run(manager.get_versions()) == [0, 1, 2]
  assert sorted(dict(releases.values())) == [0, 1, 2]
