"""Figures of a run and of a multi-seed comparison (matplotlib, Agg)."""

import os
from typing import Mapping, Sequence

import numpy as np

from tff_perfed.evaluation import personalization
from tff_perfed.program import outputs


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def _save(figure, png_path: str) -> None:
  tmp_path = png_path + '.tmp.png'
  figure.tight_layout()
  figure.savefig(tmp_path, dpi=100)
  os.replace(tmp_path, png_path)


def plot_run_accuracy(metrics_csv_path: str, png_path: str,
                      personalization_steps: int, title: str) -> None:
  """Mean personalized accuracy at k = 0, 1, K over rounds, from metrics.csv."""
  plt = _pyplot()
  rows = outputs.read_csv_rows(metrics_csv_path)
  figure, axis = plt.subplots(figsize=(6, 4))
  for k in sorted({0, min(1, personalization_steps), personalization_steps}):
    name = personalization.metric_name('accuracy', k)
    points = [(int(r['round_num']), float(r[name]))
              for r in rows if r.get(name) not in (None, '')]
    if points:
      axis.plot(*zip(*points), marker='o', label=f'after {k} step(s)')
  axis.set_xlabel('round')
  axis.set_ylabel('mean personalized test accuracy')
  axis.set_title(title)
  axis.grid(alpha=0.3)
  axis.legend()
  _save(figure, png_path)
  plt.close(figure)


def plot_seed_curves(curves: Mapping[str, Mapping[int, Sequence[float]]],
                     png_path: str, *, title: str, ylabel: str) -> None:
  """One line per label: the mean over seeds, shaded from min to max.

  The left panel shows every round; the right one zooms into the second
  half of training, where the differences between the lines are small.

  Args:
    curves: `{label: {round: [value for each seed]}}`.
    png_path: Where the figure goes (written atomically).
    title: Figure title.
    ylabel: Y axis label.
  """
  plt = _pyplot()
  figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
  last_round = max((max(c) for c in curves.values() if c), default=0)
  for axis, first_round in zip(axes, (0, last_round / 2)):
    for label, by_round in curves.items():
      rounds = sorted(r for r in by_round if r >= first_round)
      values = [np.asarray(by_round[r], np.float64) for r in rounds]
      line, = axis.plot(rounds, [v.mean() for v in values], marker='.',
                        label=label)
      axis.fill_between(rounds, [v.min() for v in values],
                        [v.max() for v in values], color=line.get_color(),
                        alpha=0.2)
    axis.set_xlabel('round')
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
  axes[0].set_title(title)
  axes[1].set_title(f'rounds {last_round / 2:g} to {last_round:g}')
  axes[1].legend(loc='lower right')
  _save(figure, png_path)
  plt.close(figure)
