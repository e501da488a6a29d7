"""Summaries over clients and seeds, against hand-computed values."""

import json
import math

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from tff_perfed.evaluation import summaries


def test_summary_reports_mean_tenth_percentile_and_worst_client():
  rows = [{'personalized_accuracy@0': a, 'personalized_loss@0': l,
           'num_test_examples': 7.0}
          for a, l in zip(np.linspace(0, 1, 11), np.linspace(2, 0, 11))]
  summary = summaries.summarize(rows)
  assert summary['personalized_accuracy@0'] == pytest.approx(0.5)
  assert summary['personalized_accuracy@0/p10'] == pytest.approx(0.1)
  assert summary['personalized_accuracy@0/worst'] == 0.0
  assert summary['personalized_loss@0/worst'] == 2.0
  assert summary['personalized_loss@0/p10'] == pytest.approx(1.8)
  assert not any(name.startswith('num_test_examples') for name in summary)


def _hand_summary(accuracies, losses):
  """The summary of clean rows, by NumPy, for the comparison."""
  accuracies, losses = np.array(accuracies), np.array(losses)
  return {
      'personalized_accuracy@0': accuracies.mean(),
      'personalized_accuracy@0/p10': np.percentile(accuracies, 10),
      'personalized_accuracy@0/worst': accuracies.min(),
      'personalized_loss@0': losses.mean(),
      'personalized_loss@0/p10': np.percentile(losses, 90),
      'personalized_loss@0/worst': losses.max(),
  }


def test_clients_without_test_examples_or_non_finite_are_left_out_and_counted():
  def row(accuracy, loss, examples=5.0):
    return {'personalized_accuracy@0': accuracy, 'personalized_loss@0': loss,
            'num_test_examples': examples}

  rows = [row(0.8, 0.5), row(0.0, 0.0, examples=0.0), row(0.6, 0.9),
          row(0.7, math.nan), row(math.nan, math.nan, examples=0.0),
          row(0.4, math.inf), row(0.9, 0.3)]
  summary = summaries.summarize(rows)
  expected = _hand_summary([0.8, 0.6, 0.9], [0.5, 0.9, 0.3])
  assert {n: summary[n] for n in expected} == pytest.approx(expected)
  assert summary['num_evaluated_clients'] == 3
  assert summary['num_clients_without_test_examples'] == 2
  assert summary['num_non_finite_clients'] == 2
  json.dumps(summary, allow_nan=False)


def test_a_client_non_finite_at_one_step_is_left_out_at_every_step():
  rows = [{'personalized_accuracy@0': 0.5, 'personalized_accuracy@1': 0.6},
          {'personalized_accuracy@0': 0.9, 'personalized_accuracy@1': math.nan},
          {'personalized_accuracy@0': 0.7, 'personalized_accuracy@1': 0.8}]
  summary = summaries.summarize(rows)
  # Both curves over the same two clients.
  assert summary['personalized_accuracy@0'] == pytest.approx(0.6)
  assert summary['personalized_accuracy@1'] == pytest.approx(0.7)
  assert summary['num_non_finite_clients'] == 1


def test_with_every_client_left_out_the_summary_holds_only_the_counts():
  rows = [{'personalized_loss@0': math.nan, 'num_test_examples': 3.0},
          {'personalized_loss@0': 0.0, 'num_test_examples': 0.0}]
  assert summaries.summarize(rows) == {
      'num_evaluated_clients': 0, 'num_clients_without_test_examples': 1,
      'num_non_finite_clients': 1}
  assert summaries.summarize([]) == {
      'num_evaluated_clients': 0, 'num_clients_without_test_examples': 0,
      'num_non_finite_clients': 0}


def test_the_exclusion_message_names_the_clients_and_their_reasons():
  rows = [{'personalized_loss@0': 0.5, 'num_test_examples': 4.0},
          {'personalized_loss@0': math.nan, 'num_test_examples': 0.0},
          {'personalized_loss@0': math.nan, 'num_test_examples': 4.0},
          {'personalized_loss@0': math.inf, 'num_test_examples': 4.0}]
  ids = ['ok', 'empty', "it's nan", 'inf']
  assert summaries.excluded_clients(ids, rows) == {
      'empty': 'no test examples', "it's nan": 'non-finite scores',
      'inf': 'non-finite scores'}
  assert summaries.exclusion_message(ids, rows, max_named=2) == (
      '3 of 4 evaluated clients left out of the figures: '
      "'empty' (no test examples), \"it's nan\" (non-finite scores), "
      'and 1 more')
  assert summaries.exclusion_message(ids[:1], rows[:1]) is None


_SCORES = st.one_of(st.floats(0, 1), st.sampled_from([math.nan, math.inf,
                                                      -math.inf]))


@hypothesis.given(st.lists(
    st.tuples(_SCORES, _SCORES, st.sampled_from([0.0, 1.0, 7.0])),
    max_size=12))
def test_summary_is_finite_and_is_the_summary_of_the_clean_clients(clients):
  rows = [{'personalized_accuracy@0': a, 'personalized_loss@0': l,
           'num_test_examples': n} for a, l, n in clients]
  summary = summaries.summarize(rows)
  json.dumps(summary, allow_nan=False)
  clean = [(a, l) for a, l, n in clients
           if n > 0 and math.isfinite(a) and math.isfinite(l)]
  assert summary['num_evaluated_clients'] == len(clean)
  assert summary['num_clients_without_test_examples'] == sum(
      n == 0 for _, _, n in clients)
  assert (summary['num_evaluated_clients'] +
          summary['num_clients_without_test_examples'] +
          summary['num_non_finite_clients']) == len(clients)
  if clean:
    expected = _hand_summary(*zip(*clean))
    assert {n: summary[n] for n in expected} == pytest.approx(expected)
  else:
    assert 'personalized_accuracy@0' not in summary


def test_spread_is_mean_and_sample_standard_deviation():
  spread = summaries.spread([1.0, 2.0, 4.0])
  assert spread.mean == pytest.approx(7 / 3)
  # Sample variance: ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3.
  assert spread.std == pytest.approx(math.sqrt(7 / 3))
  assert summaries.spread([0.3]).std == 0.0


def test_paired_difference_interval_is_the_t_interval_of_the_differences():
  a = [0.98, 0.97, 0.99, 0.975]
  b = [0.97, 0.968, 0.975, 0.97]
  d = np.subtract(a, b)  # 0.010, 0.002, 0.015, 0.005
  result = summaries.paired_difference(a, b, confidence=0.95)
  # t_{0.975, 3} = 3.182446305284263 (tables).
  half_width = 3.182446305284263 * d.std(ddof=1) / 2
  assert result.mean == pytest.approx(d.mean())
  assert result.low == pytest.approx(d.mean() - half_width)
  assert result.high == pytest.approx(d.mean() + half_width)
  assert result.num_positive == 4 and result.num_seeds == 4
  # Four wins out of four seeds, yet too spread to exclude no difference.
  assert result.low < 0 < result.high and not result.excludes_zero


def test_paired_difference_of_one_seed_has_an_unbounded_interval():
  result = summaries.paired_difference([0.9], [0.8])
  assert result.mean == pytest.approx(0.1)
  assert result.low == -math.inf and result.high == math.inf
  assert not result.excludes_zero


def test_paired_difference_rejects_unpaired_values():
  with pytest.raises(ValueError, match='equally long'):
    summaries.paired_difference([0.1, 0.2], [0.1])


def test_spread_leaves_out_seeds_without_a_finite_value():
  spread = summaries.spread([1.0, math.nan, 2.0, math.inf, 4.0])
  assert spread.mean == pytest.approx(7 / 3)
  assert spread.std == pytest.approx(math.sqrt(7 / 3))
  assert spread.num_seeds == 3
  empty = summaries.spread([math.nan])
  assert math.isnan(empty.mean) and empty.num_seeds == 0


def test_paired_difference_pairs_only_seeds_finite_on_both_sides():
  a = [0.98, math.nan, 0.97, 0.99, 0.975, 0.5]
  b = [0.97, 0.9, 0.968, 0.975, 0.97, math.inf]
  result = summaries.paired_difference(a, b)
  expected = summaries.paired_difference([0.98, 0.97, 0.99, 0.975],
                                         [0.97, 0.968, 0.975, 0.97])
  assert result == expected and result.num_seeds == 4
  none_left = summaries.paired_difference([math.nan], [0.5])
  assert none_left.num_seeds == 0 and math.isnan(none_left.mean)
  assert not none_left.excludes_zero
