"""Figures of a run and of a multi-seed comparison (matplotlib, Agg).

matplotlib is the package's `plots` extra: without it every figure is left
out (one warning, once, naming the extra) and the run's other outputs are
written as usual; the functions that return figure paths return none.
"""

import functools
import importlib.util
import os
from typing import Mapping, Sequence

from absl import logging
import numpy as np

from tff_perfed.evaluation import personalization
from tff_perfed.program import outputs


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether matplotlib is installed; warns once when it is not."""
  if importlib.util.find_spec('matplotlib') is not None:
    return True
  logging.warning('matplotlib is not installed (pip install '
                  '"tff-perfed[plots]"): figures are left out.')
  return False


def _figures_need_matplotlib(without):
  """Makes a figure function return `without` when matplotlib is absent."""
  def decorate(function):
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
      if not available():
        return without
      return function(*args, **kwargs)
    return wrapped
  return decorate


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def _save(figure, png_path: str) -> None:
  """Saves `figure` to `png_path` atomically (temporary file, rename).

  Raises:
    OutputWriteError: If the file cannot be written; `png_path` is then as
      it was.
  """
  tmp_path = png_path + '.tmp.png'
  figure.tight_layout()
  try:
    figure.savefig(tmp_path, dpi=100)
    os.replace(tmp_path, png_path)
  except OSError as e:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    _pyplot().close(figure)
    raise outputs.OutputWriteError(png_path, e) from e


@_figures_need_matplotlib(without=None)
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


def _plot_mean_and_band(axis, curves: Mapping[str, Mapping[int, Sequence[
    float]]], *, first_round: float = 0, alpha: float) -> None:
  """Per label: the mean over seeds, shaded from min to max."""
  for label, by_round in curves.items():
    rounds = sorted(r for r in by_round if r >= first_round)
    values = [np.asarray(by_round[r], np.float64) for r in rounds]
    line, = axis.plot(rounds, [v.mean() for v in values], marker='.',
                      label=label)
    axis.fill_between(rounds, [v.min() for v in values],
                      [v.max() for v in values], color=line.get_color(),
                      alpha=alpha)


@_figures_need_matplotlib(without=None)
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
    _plot_mean_and_band(axis, curves, first_round=first_round, alpha=0.2)
    axis.set_xlabel('round')
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
  axes[0].set_title(title)
  axes[1].set_title(f'rounds {last_round / 2:g} to {last_round:g}')
  axes[1].legend(loc='lower right')
  _save(figure, png_path)
  plt.close(figure)


@_figures_need_matplotlib(without=None)
def plot_arm_scores(scores: Mapping[str, Sequence[float]], png_path: str, *,
                    title: str, ylabel: str) -> None:
  """One bar per arm: the mean over seeds, its std, and each seed as a dot.

  Args:
    scores: `{label: [score per seed]}`, in the order of the bars.
    png_path: Where the figure goes (written atomically).
    title: Figure title.
    ylabel: Y axis label.
  """
  plt = _pyplot()
  figure, axis = plt.subplots(figsize=(1.1 * len(scores) + 2, 4.5))
  for i, values in enumerate(scores.values()):
    values = np.asarray(values, np.float64)
    axis.bar(i, values.mean(), yerr=values.std(ddof=1) if values.size > 1
             else 0, color='C0', alpha=0.5, capsize=4)
    axis.plot(np.full(values.size, i), values, 'k.')
  axis.set_xticks(range(len(scores)))
  axis.set_xticklabels(list(scores), rotation=30, ha='right')
  lows = [min(v) for v in scores.values() if len(v)]
  if lows:  # Zoom where the arms differ; bars from zero hide it.
    axis.set_ylim(bottom=max(0.0, min(lows) - 0.05))
  axis.set_ylabel(ylabel)
  axis.set_title(title)
  axis.grid(axis='y', alpha=0.3)
  _save(figure, png_path)
  plt.close(figure)


def _by_arm_and_zeta(rows, column: str):
  """`{arm: {zeta: [values over seeds]}}`, skipping empty values."""
  grouped = {}
  for row in rows:
    value = row.get(column)
    if value is None or value == '':
      continue
    grouped.setdefault(row['algorithm'], {}).setdefault(
        float(row['zeta']), []).append(float(value))
  return grouped


@_figures_need_matplotlib(without=[])
def plot_sweep(rows: Sequence[Mapping[str, object]],
               clients: Mapping[str, Mapping[str, Mapping[str, Sequence[
                   float]]]], labels: Mapping[str, str], output_dir: str,
               *, rounds: int) -> Sequence[str]:
  """The diversity sweep's figures (AFML paper, Fig. 3, 4 and 5).

  Writes to `output_dir` and returns the paths of:
  `accuracy_vs_zeta.png` (Pers.1 and Pers.5, mean and std over seeds; 3a/b),
  `rounds_to_target_vs_zeta.png` (3c/d; runs that never reach the target
  are drawn at `rounds` with an x), `costs.png` (bytes per run and FLOPs per
  client round; 4a), `clients.png` (per-client Pers.5 accuracy per zeta; 5)
  and `fairness.png` (per-client Pers.5 vs local accuracy; 4b).
  """
  plt = _pyplot()
  arms = list(dict.fromkeys(row['algorithm'] for row in rows))
  paths = []

  figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for axis, steps in zip(axes, (1, 5)):
    grouped = _by_arm_and_zeta(rows, f'personalized_accuracy@{steps}')
    for arm in arms:
      zetas = sorted(grouped.get(arm, {}))
      means = [np.mean(grouped[arm][z]) for z in zetas]
      stds = [np.std(grouped[arm][z]) for z in zetas]
      axis.errorbar(zetas, means, yerr=stds, marker='o', capsize=3,
                    label=labels.get(arm, arm))
    axis.set_xlabel('zeta (1 - diversity)')
    axis.set_title(f'Pers.{steps}: accuracy after {steps} step(s)')
    axis.grid(alpha=0.3)
  axes[0].set_ylabel('mean personalized test accuracy')
  axes[0].legend()
  paths.append(os.path.join(output_dir, 'accuracy_vs_zeta.png'))
  _save(figure, paths[-1])
  plt.close(figure)

  figure, axis = plt.subplots(figsize=(6, 4))
  for arm in arms:
    per_zeta = {}
    for row in rows:
      if row['algorithm'] == arm:
        value = row.get('rounds_to_target')
        per_zeta.setdefault(float(row['zeta']), []).append(
            float(value) if value not in (None, '') else np.nan)
    zetas = sorted(per_zeta)
    reached = [np.nanmean(v) if not np.all(np.isnan(v)) else np.nan
               for v in map(np.array, (per_zeta[z] for z in zetas))]
    line = axis.plot(zetas, reached, marker='o', label=labels.get(arm, arm))
    never = [z for z, r in zip(zetas, reached) if np.isnan(r)]
    axis.plot(never, [rounds] * len(never), 'x', color=line[0].get_color(),
              markersize=10)
  axis.set_xlabel('zeta (1 - diversity)')
  axis.set_ylabel('rounds to the target Pers.3 accuracy')
  axis.set_title(f'x: not reached within {rounds} rounds')
  axis.grid(alpha=0.3)
  axis.legend()
  paths.append(os.path.join(output_dir, 'rounds_to_target_vs_zeta.png'))
  _save(figure, paths[-1])
  plt.close(figure)

  figure, axes = plt.subplots(1, 2, figsize=(10, 4))
  for axis, column, title in (
      (axes[0], 'bytes_total', 'bytes per run (all clients, down + up)'),
      (axes[1], 'flops_per_client_round', 'FLOPs per client and round')):
    # A run whose FLOPs the profiler could not count has none (README).
    counted = [[float(r[column]) for r in rows if r['algorithm'] == arm and
                r.get(column) not in (None, '')] for arm in arms]
    axis.bar([labels.get(arm, arm) for arm in arms],
             [np.mean(v) if v else 0.0 for v in counted])
    if not all(counted):
      title += ' (0: not counted)'
    axis.set_title(title)
    axis.tick_params(axis='x', rotation=20)
  paths.append(os.path.join(output_dir, 'costs.png'))
  _save(figure, paths[-1])
  plt.close(figure)

  zetas = sorted({float(z) for arm in clients for z in clients[arm]})
  figure, axes = plt.subplots(1, len(zetas), figsize=(4 * len(zetas), 4),
                              sharey=True, squeeze=False)
  for axis, zeta in zip(axes[0], zetas):
    data = [clients[arm][f'{zeta:g}']['personalized'] for arm in arms
            if f'{zeta:g}' in clients.get(arm, {})]
    axis.boxplot(data, labels=[labels.get(a, a) for a in arms
                               if f'{zeta:g}' in clients.get(a, {})])
    axis.set_title(f'zeta = {zeta:g}: per-client Pers.5 accuracy')
    axis.tick_params(axis='x', rotation=30)
  paths.append(os.path.join(output_dir, 'clients.png'))
  _save(figure, paths[-1])
  plt.close(figure)

  figure, axes = plt.subplots(1, len(zetas), figsize=(4 * len(zetas), 4),
                              sharey=True, squeeze=False)
  for axis, zeta in zip(axes[0], zetas):
    for arm in arms:
      entry = clients.get(arm, {}).get(f'{zeta:g}')
      if entry:
        axis.scatter(entry['local'], entry['personalized'], s=8, alpha=0.6,
                     label=labels.get(arm, arm))
    axis.plot([0, 1], [0, 1], color='gray', linewidth=1)
    axis.set_xlabel('local model accuracy')
    axis.set_title(f'zeta = {zeta:g} (above the line: beats local)')
  axes[0][0].set_ylabel('personalized (Pers.5) accuracy')
  axes[0][0].legend()
  paths.append(os.path.join(output_dir, 'fairness.png'))
  _save(figure, paths[-1])
  plt.close(figure)
  return paths


@_figures_need_matplotlib(without=None)
def plot_curve_panels(
    panels: Mapping[str, Mapping[str, Mapping[int, Sequence[float]]]],
    png_path: str, *, ylabel: str, columns: int = 2) -> None:
  """One panel per grid cell; per label, the mean over seeds, min to max.

  Args:
    panels: `{panel title: {label: {round: [value for each seed]}}}`.
    png_path: Where the figure goes (written atomically).
    ylabel: Y axis label of every panel.
    columns: Panels per row.
  """
  plt = _pyplot()
  rows = max(1, -(-len(panels) // columns))
  figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns,
                                                      4 * rows),
                              squeeze=False)
  flat = [axis for row in axes for axis in row]
  for axis, (title, curves) in zip(flat, panels.items()):
    _plot_mean_and_band(axis, curves, alpha=0.15)
    axis.set_title(title)
    axis.set_xlabel('round')
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
  for axis in flat[len(panels):]:
    axis.set_visible(False)
  if panels:
    flat[0].legend(loc='lower right', fontsize='small')
  _save(figure, png_path)
  plt.close(figure)
