"""Summaries of personalized results: over clients, and over seeds.

Over clients (`summarize`): clients count equally, as users do in the
personalized objective (Fallah et al. 2020, eq. 4); besides the mean, the
10th percentile and the worst client show how the tail of users fares.

Over seeds (`spread`, `paired_difference`): one training run is one sample of
everything random in it (initialization, data split, client sampling,
batches), so a comparison of algorithms is reported as mean and standard
deviation over seeds, and the difference of two algorithms as the mean of
their per-seed differences with a Student-t confidence interval (the runs of
one seed share data split and initialization, so pairing removes that
variance).
"""

import dataclasses
import math
from typing import Dict, Mapping, Sequence

import numpy as np
from scipy import stats

from tff_perfed.evaluation import personalization


def _lower_is_better(name: str) -> bool:
  return 'loss' in name or 'error' in name


def summarize(rows: Sequence[Mapping[str, float]]) -> Dict[str, float]:
  """Mean over clients, 10th percentile and worst client, per metric.

  For a metric where higher is better (accuracy) the worst client has the
  lowest value; where lower is better (names with "loss" or "error") the
  highest. `/p10` is the value that 10% of clients do worse than: the 10th
  percentile of accuracy, the 90th of loss.

  Args:
    rows: One `{metric name: value}` row per client, as
      `personalization.per_client_metrics` makes them.

  Returns:
    `{name: mean, name/p10: ..., name/worst: ...}` for every metric; empty if
    there are no rows.
  """
  summary = {}
  if not rows:
    return summary
  for name in rows[0]:
    if name == personalization.NUM_TEST_EXAMPLES:
      continue
    values = np.array([row[name] for row in rows], np.float64)
    lower_is_better = _lower_is_better(name)
    summary[name] = float(values.mean())
    summary[f'{name}/p10'] = float(
        np.percentile(values, 90 if lower_is_better else 10))
    summary[f'{name}/worst'] = float(
        values.max() if lower_is_better else values.min())
  return summary


@dataclasses.dataclass(frozen=True)
class Spread:
  """Mean and sample standard deviation of one number over seeds."""
  mean: float
  std: float
  num_seeds: int


def spread(values: Sequence[float]) -> Spread:
  """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return Spread(float(values.mean()), std, int(values.size))


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """Mean of per-seed differences a - b, with a t confidence interval.

  Attributes:
    mean: Mean difference over seeds.
    std: Sample standard deviation of the differences.
    low: Lower end of the confidence interval (-inf for one seed).
    high: Upper end (+inf for one seed).
    confidence: The interval's confidence level, e.g. 0.95.
    num_seeds: Number of paired seeds.
    num_positive: Seeds where a > b.
  """
  mean: float
  std: float
  low: float
  high: float
  confidence: float
  num_seeds: int
  num_positive: int

  @property
  def excludes_zero(self) -> bool:
    """Whether the interval lies entirely on one side of zero."""
    return self.low > 0 or self.high < 0


def paired_difference(a: Sequence[float], b: Sequence[float], *,
                      confidence: float = 0.95) -> PairedDifference:
  """The mean difference a - b over paired seeds, with a t interval.

  Args:
    a: One value per seed.
    b: The other algorithm's value for the same seeds, in the same order.
    confidence: Two-sided confidence level of the interval, in (0, 1).

  Returns:
    A `PairedDifference`.

  Raises:
    ValueError: If `a` and `b` differ in length or are empty, or the
      confidence is not in (0, 1).
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.size == 0 or a.ndim != 1:
    raise ValueError(f'paired_difference needs two equally long non-empty '
                     f'sequences, got {a.size} and {b.size} values.')
  if not 0 < confidence < 1:
    raise ValueError(f'`confidence` must be in (0, 1), got {confidence!r}.')
  differences = a - b
  mean = float(differences.mean())
  if differences.size == 1:
    low, high, std = -math.inf, math.inf, 0.0
  else:
    std = float(differences.std(ddof=1))
    half_width = float(
        stats.t.ppf(0.5 + confidence / 2, differences.size - 1) * std /
        math.sqrt(differences.size))
    low, high = mean - half_width, mean + half_width
  return PairedDifference(mean, std, low, high, confidence,
                          int(differences.size), int((differences > 0).sum()))
