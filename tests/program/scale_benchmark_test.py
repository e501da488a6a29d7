"""The scale suite's measured children, ratios and goals (on small data)."""

import pytest

from tff_perfed.program import scale_benchmark


def _measured(ready=10.0, peak=1000.0, rounds=None, evaluation=100.0):
  run = dict(imported=5.0, loaded=8.0, ready=ready, first_round_seconds=1.0,
             num_clients=3400, peak_mib=peak,
             round_seconds=rounds or {'10': 1.0, '50': 4.0, '100': 8.0},
             evaluation_seconds=evaluation, evaluated_clients=3400)
  return dict(prepare_seconds=30.0, plain=run,
              diversity=dict(run, round_seconds={}))


def test_round_ratios_are_to_the_smallest_round():
  assert scale_benchmark.round_ratios({'100': 9.0, '10': 1.5, '50': 6.0}) == {
      '100': 6.0, '10': 1.0, '50': 4.0}


@pytest.mark.parametrize('measured,missed', [
    (_measured(), None),
    (_measured(ready=61.0), 'start'),
    (_measured(peak=4096.0), 'peak memory'),
    (_measured(rounds={'10': 1.0, '100': 10.5}), '100-client round'),
    (_measured(evaluation=600.0), 'evaluation'),
])
def test_each_goal_is_marked_met_or_not(measured, missed):
  met = scale_benchmark.goals(measured)
  assert [name for name, ok in met.items() if not ok] == (
      [missed] if missed else [])
  report = scale_benchmark.format_dataset_rows('emnist', measured)
  assert ('NOT met' in report) == (missed is not None)


def test_a_run_child_reports_every_stage_in_order_and_its_peak(tmp_path):
  result = scale_benchmark.run_measured_child(
      scale_benchmark.ChildSpec(
          kind='run', result_path=str(tmp_path / 'result.json'),
          command_time=0.0, dataset='digits', round_clients=(2, 4),
          round_repeats=1, evaluate_all=True,
          settings=dict(clients_per_round=2, local_steps=1)),
      str(tmp_path / 'child.log'))
  assert 0 < result['imported'] < result['loaded'] < result['ready'] < (
      result['total_seconds'])
  assert set(result['round_seconds']) == {'2', '4'}
  assert result['evaluated_clients'] == result['num_clients'] == 50
  # A Python with TensorFlow loaded holds a few hundred MiB at least.
  assert result['peak_mib'] >= result['peak_own_mib'] > 200


def test_a_failing_child_raises_with_the_end_of_its_output(tmp_path):
  with pytest.raises(scale_benchmark.ChildFailedError,
                     match='(?s)run child on mnist_fashion.*mnist_fashion'):
    scale_benchmark.run_measured_child(
        scale_benchmark.ChildSpec(
            kind='run', result_path=str(tmp_path / 'result.json'),
            command_time=0.0, dataset='mnist_fashion'),
        str(tmp_path / 'child.log'))
