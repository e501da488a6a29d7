"""Figures are the `plots` extra: without matplotlib a run leaves them out."""

import importlib.util

from tff_perfed.program import plots


def test_without_matplotlib_figures_are_left_out_with_one_warning(
    tmp_path, monkeypatch):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(
      importlib.util, 'find_spec',
      lambda name, *a: None if name == 'matplotlib' else real_find_spec(
          name, *a))
  plots.available.cache_clear()
  warnings = []
  monkeypatch.setattr(plots.logging, 'warning',
                      lambda message, *a: warnings.append(message % a))
  try:
    png = tmp_path / 'accuracy.png'
    assert plots.plot_run_accuracy('no_such.csv', str(png), 1, 't') is None
    assert plots.plot_sweep([], {}, {}, str(tmp_path), rounds=1) == []
    assert plots.plot_curve_panels({}, str(png), ylabel='y') is None
    assert not png.exists()
    assert len(warnings) == 1 and 'tff-perfed[plots]' in warnings[0]
  finally:
    plots.available.cache_clear()  # Later callers see the real matplotlib.
