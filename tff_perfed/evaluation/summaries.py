"""Summaries of personalized results: over clients, and over seeds.

Over clients (`summarize`): clients count equally, as users do in the
personalized objective (Fallah et al. 2020, eq. 4); besides the mean, the
10th percentile and the worst client show how the tail of users fares. A
client with no test examples has no score, and one with a non-finite score
(NaN features, an adaptation step that diverged) has none that means
anything: both are left out of every figure and counted instead, the way a
training round zeroes and counts non-finite client updates. A client is left
out of all metrics and steps k at once, not per k: the curves over k then
compare the same clients, which is what a reader of "accuracy after k
steps" compares.

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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from tff_perfed.evaluation import personalization


# Counts `summarize` adds to every summary.
NUM_EVALUATED_CLIENTS = 'num_evaluated_clients'
NUM_CLIENTS_WITHOUT_TEST_EXAMPLES = 'num_clients_without_test_examples'
NUM_NON_FINITE_CLIENTS = 'num_non_finite_clients'

# Why `exclusion_reason` leaves a client out.
NO_TEST_EXAMPLES = 'no test examples'
NON_FINITE_SCORES = 'non-finite scores'


def _lower_is_better(name: str) -> bool:
  return 'loss' in name or 'error' in name


def exclusion_reason(row: Mapping[str, float]) -> Optional[str]:
  """Why a client's row is left out of the summary, or None to keep it.

  Args:
    row: One client's `{metric name: value}`, with `num_test_examples` when
      the model counts examples.

  Returns:
    `NO_TEST_EXAMPLES` if the row has 0 test examples (whatever its scores),
    else `NON_FINITE_SCORES` if any value is NaN or infinite, else None.
  """
  if row.get(personalization.NUM_TEST_EXAMPLES) == 0:
    return NO_TEST_EXAMPLES
  if not all(math.isfinite(value) for value in row.values()):
    return NON_FINITE_SCORES
  return None


def split_rows(rows: Sequence[Mapping[str, float]]
              ) -> Tuple[List[Mapping[str, float]], Dict[str, int]]:
  """The rows that count, and how many were left out for each reason.

  Args:
    rows: One row per client, as `summarize` takes them.

  Returns:
    `(kept rows, {NO_TEST_EXAMPLES: n, NON_FINITE_SCORES: m})`.
  """
  kept = []
  excluded = {NO_TEST_EXAMPLES: 0, NON_FINITE_SCORES: 0}
  for row in rows:
    reason = exclusion_reason(row)
    if reason is None:
      kept.append(row)
    else:
      excluded[reason] += 1
  return kept, excluded


def excluded_clients(client_ids: Sequence[str],
                     rows: Sequence[Mapping[str, float]]) -> Dict[str, str]:
  """The clients `summarize` leaves out, and why.

  Args:
    client_ids: The evaluated clients.
    rows: Their rows, in the same order.

  Returns:
    `{client id: exclusion_reason(row)}` of the left-out clients, in order.
  """
  excluded = {}
  for client_id, row in zip(client_ids, rows):
    reason = exclusion_reason(row)
    if reason is not None:
      excluded[client_id] = reason
  return excluded


def exclusion_message(client_ids: Sequence[str],
                      rows: Sequence[Mapping[str, float]], *,
                      max_named: int = 5) -> Optional[str]:
  """One line naming the clients left out of the summary, or None.

  E.g. `2 of 10 evaluated clients left out of the figures: 'f0001' (no
  test examples), 'f0007' (non-finite scores)`, for a run to log.

  Args:
    client_ids: The evaluated clients.
    rows: Their rows, in the same order.
    max_named: The most clients named; the rest are `and N more`.

  Returns:
    The line, or None if no client is left out.
  """
  excluded = excluded_clients(client_ids, rows)
  if not excluded:
    return None
  named = [f'{client_id!r} ({reason})'
           for client_id, reason in list(excluded.items())[:max_named]]
  if len(excluded) > max_named:
    named.append(f'and {len(excluded) - max_named} more')
  return (f'{len(excluded)} of {len(rows)} evaluated clients left out of the '
          f'figures: {", ".join(named)}')


def summarize(rows: Sequence[Mapping[str, float]]) -> Dict[str, float]:
  """Mean over clients, 10th percentile and worst client, per metric.

  For a metric where higher is better (accuracy) the worst client has the
  lowest value; where lower is better (names with "loss" or "error") the
  highest. `/p10` is the value that 10% of clients do worse than: the 10th
  percentile of accuracy, the 90th of loss.

  Clients with no test examples or with any non-finite value (at any step
  k) are left out of every figure (`exclusion_reason`) and counted. The
  summary therefore holds only finite numbers; if no client is left, it
  holds only the counts, which say why.

  Args:
    rows: One `{metric name: value}` row per client, as
      `personalization.per_client_metrics` makes them.

  Returns:
    `{name: mean, name/p10: ..., name/worst: ...}` for every metric over the
    kept clients, plus `num_evaluated_clients` (the clients the figures are
    over, those kept),
    `num_clients_without_test_examples` and `num_non_finite_clients`
    (ints).
  """
  kept, excluded = split_rows(rows)
  summary = {}
  names = [name for name in kept[0]
           if name != personalization.NUM_TEST_EXAMPLES] if kept else []
  for name in names:
    values = np.array([row[name] for row in kept], np.float64)
    lower_is_better = _lower_is_better(name)
    summary[name] = float(values.mean())
    summary[f'{name}/p10'] = float(
        np.percentile(values, 90 if lower_is_better else 10))
    summary[f'{name}/worst'] = float(
        values.max() if lower_is_better else values.min())
  summary[NUM_EVALUATED_CLIENTS] = len(kept)
  summary[NUM_CLIENTS_WITHOUT_TEST_EXAMPLES] = excluded[NO_TEST_EXAMPLES]
  summary[NUM_NON_FINITE_CLIENTS] = excluded[NON_FINITE_SCORES]
  return summary


@dataclasses.dataclass(frozen=True)
class Spread:
  """Mean and sample standard deviation of one number over seeds."""
  mean: float
  std: float
  num_seeds: int


def spread(values: Sequence[float]) -> Spread:
  """Mean and sample standard deviation (ddof=1; 0 for a single value).

  Non-finite values (a seed with no finite figure) are left out and
  `num_seeds` counts the rest; with none left, mean and std are NaN.
  """
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return Spread(math.nan, math.nan, 0)
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
    A `PairedDifference` over the seeds where both values are finite
    (`num_seeds` counts them); with no such seed, its numbers are NaN and
    `num_seeds` is 0.

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
  # A seed without a finite value on either side has no difference to pair.
  differences = differences[np.isfinite(differences)]
  if differences.size == 0:
    return PairedDifference(math.nan, math.nan, math.nan, math.nan,
                            confidence, 0, 0)
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
