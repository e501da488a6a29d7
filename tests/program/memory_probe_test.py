"""The memory probe: RSS of a run's process tree after every round."""

import os
import subprocess
import time

import pytest

from tff_perfed.data_utils import client_datasets
from tff_perfed import runtime
from tff_perfed.program import RunConfig
from tff_perfed.program import memory_probe

Sample = memory_probe.MemorySample


def _samples(totals):
  return [Sample(round_num=r, seconds=float(r), driver_mib=t, workers_mib=0.0)
          for r, t in enumerate(totals)]


def test_growth_is_between_window_medians_so_one_spike_does_not_count():
  totals = [100.0] * 50 + [110.0] * 50
  totals[45] = 500.0  # An evaluation's transient peak.
  samples = _samples(totals)
  assert memory_probe.memory_level(samples, 49, window=10) == 100.0
  assert memory_probe.relative_growth(samples, 49, 99, window=10) == (
      pytest.approx(0.10))


def test_workers_count_in_the_total():
  samples = [Sample(round_num=r, seconds=0.0, driver_mib=100.0,
                    workers_mib=10.0 * r) for r in range(11)]
  assert memory_probe.memory_level(samples, 10, window=1) == 200.0
  driver = memory_probe.memory_level(samples, 10, window=1,
                                     value=lambda s: s.driver_mib)
  assert driver == 100.0


def test_slope_of_a_steady_climb_is_its_step_per_round():
  samples = _samples([800.0 + 0.05 * r for r in range(200)])
  assert memory_probe.slope_mib_per_round(samples, from_round=100) == (
      pytest.approx(0.05))


def test_a_window_without_samples_is_refused_naming_the_rounds():
  with pytest.raises(ValueError, match='rounds 91 to 100'):
    memory_probe.memory_level(_samples([1.0] * 10), 100, window=10)


def test_grandchildren_are_part_of_the_tree_and_their_memory_counts():
  shell = subprocess.Popen(['sh', '-c', 'sleep 30 & wait'])
  try:
    deadline = time.monotonic() + 10
    below = []
    while len(below) < 2 and time.monotonic() < deadline:
      below = memory_probe.descendant_pids(os.getpid())
      time.sleep(0.05)
    assert shell.pid in below
    assert len(below) >= 2  # The shell and its sleep.
    shell_tree_mib = sum(memory_probe.rss_mib(pid) for pid in below)
    sample = memory_probe.sample_memory(1, start_time=time.monotonic())
    # Other tests' workers may be descendants too: at least the shell's tree.
    assert shell_tree_mib > 0
    assert sample.workers_mib >= 0.9 * shell_tree_mib
    assert sample.driver_mib > 0
  finally:
    shell.kill()
    shell.wait()
  assert memory_probe.rss_mib(shell.pid) == 0.0


def test_a_run_is_sampled_after_every_round_and_the_hook_is_removed(
    tmp_path, restore_default_context):
  del restore_default_context
  runtime.set_execution_context('in_process', handle_sigterm=False)
  original = client_datasets.training_datasets
  config = RunConfig(dataset='digits', rounds=3, clients_per_round=2,
                     local_steps=1, batch_size=4, personalization_steps=1,
                     num_eval_clients=2, eval_every=2,
                     output_dir=str(tmp_path / 'run'))
  report = memory_probe.measure_run(
      config, diagnostics={'one': lambda: 1.0}, diagnose_every=2)
  assert [s.round_num for s in report.samples] == [0, 1, 2, 3]
  assert all(s.driver_mib > 100 for s in report.samples)
  assert report.diagnostics == {'one': [(0, 1.0), (2, 1.0)]}
  assert client_datasets.training_datasets is original
  assert set(report.to_json()) == {'samples', 'diagnostics'}
