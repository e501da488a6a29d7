"""The client-state benchmark measures what it says, on a tiny model."""

import io

import numpy as np
import pytest

from tff_perfed import models
from tff_perfed.program import client_state_benchmark


def _model():
  return models.build_mlp(input_dim=3, num_classes=10, seed=0,
                          hidden_units=(4,))


def test_the_store_benchmark_writes_each_clients_weights_once_a_round(
    tmp_path, restore_default_context):
  del restore_default_context
  result = client_state_benchmark.measure_store(
      _model, repeats=1, work_dir=str(tmp_path), rounds_per_checkpoint=(1, 2))
  # A Ditto state is the personal model: its weights as .npy records.
  buffer = io.BytesIO()
  for weight in _model().initial_weights[0]:
    np.save(buffer, np.asarray(weight))
  assert result['state_bytes'] == len(buffer.getvalue())
  for k in (1, 2):
    timing = result['by_rounds_per_checkpoint'][k]
    assert timing['round_seconds'] > 0
    assert timing['store_fraction'] == pytest.approx(
        timing['round_with_store_seconds'] / timing['round_seconds'] - 1)
  assert list(tmp_path.iterdir()) == []  # The store's directory is removed.
