"""docs/tutorial.ipynb runs top to bottom in a fresh Jupyter kernel.

The notebook is executed with nbclient in a `python3` kernel of this
interpreter (its cells import the clone's `tff_perfed`), headless, in a
temporary working directory. Any cell's error fails the test
(`CellExecutionError`, with the cell's traceback); cells tagged
`skip-execution` (the `pip install`) are skipped. The notebook compares the
`in_process` runtime with `cpp` in an assert cell of its own; here its
printed tables are read back: the personalized accuracies are numbers in
[0, 1] and K adaptation steps beat none, as its text says.
"""

import pathlib
import re
import subprocess
import sys

from jupyter_client import KernelManager
import nbclient
import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / 'docs' / 'tutorial.ipynb'


def _cell_tagged(notebook, tag):
  (cell,) = [c for c in notebook.cells if tag in c.metadata.get('tags', [])]
  return cell


def _stdout(cell):
  return ''.join(o.get('text', '') for o in cell.outputs
                 if o.output_type == 'stream' and o.name == 'stdout')


def _require_a_kernel_of_this_interpreter():
  command = KernelManager(kernel_name='python3').format_kernel_cmd()
  assert command[0] == sys.executable, command
  # A kernel that cannot import IPython dies before nbclient can say why.
  check = subprocess.run([sys.executable, '-c', 'import IPython'],
                         capture_output=True, text=True, timeout=120)
  assert check.returncode == 0, (
      'the Jupyter kernel cannot start: `import IPython` fails:\n' +
      check.stderr[-2000:])


def test_the_tutorial_notebook_runs_every_cell_without_error(
    tmp_path, monkeypatch):
  _require_a_kernel_of_this_interpreter()
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '3')
  # No GUI backend; the notebook's `%matplotlib inline` still keeps the plot.
  monkeypatch.setenv('MPLBACKEND', 'Agg')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert not any(c.get('outputs') for c in notebook.cells
                 if c.cell_type == 'code'), 'saved with outputs'

  nbclient.NotebookClient(
      notebook, timeout=300, kernel_name='python3',
      resources={'metadata': {'path': str(tmp_path)}}).execute()

  skipped = _cell_tagged(notebook, 'skip-execution')
  assert 'pip install' in skipped.source and not skipped.outputs

  table = _stdout(_cell_tagged(notebook, 'personalization-table'))
  rows = [line.split() for line in table.splitlines()[1:]]
  assert [int(row[0]) for row in rows] == list(range(len(rows)))
  assert len(rows) >= 2, table
  for column in (1, 2):  # Per-FedAvg, AFML.
    curve = [float(row[column]) for row in rows]
    assert all(0.0 <= a <= 1.0 for a in curve), table
    assert curve[-1] > curve[0], table

  plot = _cell_tagged(notebook, 'personalization-plot')
  assert any('image/png' in o.get('data', {}) for o in plot.outputs)

  comparison = _stdout(_cell_tagged(notebook, 'runtime-comparison'))
  differences = re.fullmatch(
      r'in_process vs cpp: accuracy difference (\S+), '
      r'weight difference (\S+)\n', comparison)
  assert differences, comparison
  assert all(float(d) <= 1e-5 for d in differences.groups()), comparison
  last = [c for c in notebook.cells if c.cell_type == 'code'][-1]
  assert 'back on cpp' in _stdout(last)
