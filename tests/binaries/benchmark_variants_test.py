"""The variants suite times every registered algorithm, client states too."""

import re

from tff_perfed.algorithms import registry
from tff_perfed.binaries import benchmark
from tff_perfed.program import experiment
from tff_perfed.program import run_config as run_config_lib


def test_every_registered_algorithm_is_a_variant_with_its_own_settings():
  names = set(benchmark.VARIANTS)
  assert set(registry.names()) - {'per_fedavg'} <= names
  assert {'first_order', 'hessian_free', 'exact'} <= names
  config = run_config_lib.RunConfig()
  assert benchmark.variant_config(config, 'ditto').algorithm == 'ditto'
  exact = benchmark.variant_config(config, 'exact')
  assert exact.algorithm_params().hessian_mode.value == 'exact'


def test_steps_and_rounds_of_every_variant_are_timed_and_reported_as_ratios():
  config = run_config_lib.RunConfig(dataset='digits', use_synthetic_data=True,
                                    clients_per_round=2, local_steps=1)
  dataset = experiment.load_dataset(config)
  steps = benchmark.time_local_steps(config, dataset, repeats=1)
  rounds = benchmark.time_rounds(config, dataset, repeats=1)
  assert list(steps) == list(rounds) == list(benchmark.VARIANTS)
  assert all(t > 0 for t in [*steps.values(), *rounds.values()])
  report = benchmark.format_report(steps, rounds)
  ditto = re.search(r'DITTO / FIRST_ORDER: step ([\d.]+)x, round ([\d.]+)x',
                    report)
  assert float(ditto.group(1)) == round(
      steps['ditto'] / steps['first_order'], 2)
  assert float(ditto.group(2)) == round(
      rounds['ditto'] / rounds['first_order'], 2)
  assert re.search(r'^fedavg .* 1\.00 .* 1\.00$', report, re.MULTILINE)
