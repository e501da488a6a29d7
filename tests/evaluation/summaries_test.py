"""Summaries over clients and seeds, against hand-computed values."""

import math

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
