"""Verdicts of a comparison: direction per metric, and no overclaiming."""

import pytest

from tff_perfed import validation
from tff_perfed.algorithms import registry
from tff_perfed.program import comparison


def _result(accuracy_differences, loss_differences):
  def scores(differences):
    return {'A': [0.5] * len(differences),
            'B': [0.5 + d for d in differences]}
  by_metric = {'accuracy': scores(accuracy_differences),
               'loss': scores(loss_differences)}
  return comparison.ComparisonResult(
      seeds=list(range(len(accuracy_differences))),
      metrics=['accuracy', 'loss'],
      scores=by_metric,
      difference_labels=('B', 'A'),
      curves={})


def test_higher_accuracy_and_lower_loss_both_count_as_beating():
  result = _result([0.010, 0.012, 0.011], [-0.02, -0.03, -0.025])
  assert result.verdict().startswith('B beats A in personalized accuracy')
  assert result.verdict('loss').startswith('B beats A in personalized loss')


def test_an_interval_that_straddles_zero_is_no_clear_difference():
  result = _result([0.02, -0.01, 0.015], [0.02, -0.03, 0.01])
  assert result.verdict().startswith('No clear difference')
  assert result.verdict('loss').startswith('No clear difference')


def test_losing_is_called_losing():
  result = _result([-0.010, -0.012, -0.011], [0.02, 0.03, 0.025])
  assert result.verdict().startswith('B loses to A')
  assert result.verdict('loss').startswith('B loses to A')


def test_table_lists_every_arm_and_metric():
  table = comparison.format_table(_result([0.01, 0.012], [-0.02, -0.03]))
  for text in ('personalized accuracy', 'personalized loss', 'A ', 'B ',
               'difference'):
    assert text in table


def test_statistics_are_those_of_the_per_seed_scores():
  result = _result([0.01, 0.03], [-0.02, -0.04])
  assert result.spreads['accuracy']['B'].mean == pytest.approx(0.52)
  assert result.differences['loss'].mean == pytest.approx(-0.03)
  assert result.differences['accuracy'].num_positive == 2


def test_arms_read_from_specs_are_labelled_like_the_papers():
  assert comparison.parse_arms(comparison.arms_spec(comparison.PAPER_ARMS),
                               max_steps=1) == comparison.PAPER_ARMS
  assert [arm.label for arm in comparison.parse_arms(
      ['ditto:0', 'pfedme:5', 'fedrep:1'], max_steps=5)] == [
          'Ditto', 'pFedMe + 5 steps', 'FedRep + 1 step']


def test_every_registered_algorithm_has_a_readable_label():
  labels = [registry.get(name).label for name in registry.names()]
  assert all(labels) and len(set(labels)) == len(labels)
  assert comparison.arm_label('per_fedavg', 1) == 'Per-FedAvg + 1 step'


def test_unknown_arm_algorithm_lists_the_registered_ones():
  with pytest.raises(validation.ArgumentValueError) as error:
    comparison.parse_arms(['fedavg:1', 'fedprox:1'], max_steps=1,
                          argument='demo_arms')
  assert error.value.argument == 'demo_arms'
  assert ', '.join(registry.names()) in str(error.value)
