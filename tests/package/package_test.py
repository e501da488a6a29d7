"""tff_perfed as a pip package: its wheel, its boundary, its console scripts.

The wheel is built from this checkout (`pip wheel --no-deps`) and installed
with `pip install --no-deps --target` into an empty directory, which a fresh
Python then imports from, with its working directory a user's program that
has modules of its own named `data_utils` and `binaries`: the README's
library example must run there against the installed copy, never against
this clone. Console scripts are compared with the `python -m` forms they
stand for, output and exit status alike.
"""

import configparser
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from tff_perfed.binaries import console_scripts
from tff_perfed.binaries import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
# pyproject.toml's package-dir: wheel folder -> this checkout's folder.
SOURCE_FOLDERS = {'tff_perfed/data_utils': 'data_utils',
                  'tff_perfed/binaries': 'binaries', 'tff_perfed': 'tff_perfed'}
ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')


def _source_of(wheel_path: str) -> str:
  for installed, source in SOURCE_FOLDERS.items():
    if wheel_path.startswith(installed + '/'):
      return source + wheel_path[len(installed):]
  raise AssertionError(f'{wheel_path} is outside the package')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp('wheel')
  subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
       '--no-build-isolation', '-w', str(out), str(ROOT)], check=True,
      capture_output=True, timeout=300,
      env=dict(ENVIRONMENT, PYTHONWARNINGS='ignore'))
  (path,) = out.glob('tff_perfed-*.whl')
  return path


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
  site = tmp_path_factory.mktemp('site')
  subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
       '--target', str(site), str(wheel)], check=True, capture_output=True,
      timeout=300)
  return site


def test_the_wheel_holds_every_module_and_flagfile_under_one_top_level_name(
    wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
  files = [n for n in names if '.dist-info/' not in n]
  assert {n.split('/')[0] for n in files} == {'tff_perfed'}
  want = sorted(
      str(path.relative_to(ROOT))
      for folder in SOURCE_FOLDERS.values()
      for path in (ROOT / folder).rglob('*')
      if path.suffix in ('.py', '.flags') and '__pycache__' not in path.parts)
  assert sorted(_source_of(n) for n in files) == want
  metadata = next(n for n in names if n.endswith('METADATA'))
  with zipfile.ZipFile(wheel) as archive:
    text = archive.read(metadata).decode()
  assert 'Requires-Dist: tensorflow-federated' in text
  assert 'Provides-Extra: tfds' in text


def test_console_scripts_name_every_binary_and_a_function_for_each(wheel):
  with zipfile.ZipFile(wheel) as archive:
    entry_points = next(n for n in archive.namelist()
                        if n.endswith('entry_points.txt'))
    parser = configparser.ConfigParser()
    parser.read_string(archive.read(entry_points).decode())
  scripts = dict(parser['console_scripts'])
  binaries = sorted(
      path.stem for path in (ROOT / 'binaries').glob('*.py')
      if "if __name__ == '__main__':" in path.read_text())
  assert sorted(console_scripts.BINARIES.values()) == binaries
  assert scripts == {
      f'tff-perfed-{name}': f'tff_perfed.binaries.console_scripts:{name}'
      for name in console_scripts.BINARIES}
  for name in console_scripts.BINARIES:
    assert callable(getattr(console_scripts, name))


def _readme_library_example() -> str:
  readme = (ROOT / 'README.md').read_text()
  section = readme[readme.index('## Using the library'):]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_the_installed_wheel_runs_the_readme_example_beside_a_users_own_modules(
    installed, tmp_path):
  program = tmp_path / 'users_program'
  program.mkdir()
  (program / 'data_utils.py').write_text('OWNER = "the user"\n')
  (program / 'binaries.py').write_text('OWNER = "the user"\n')
  script = '\n'.join([
      'import data_utils, binaries',
      _readme_library_example(),
      'import tff_perfed.data_utils, tff_perfed.binaries.train',
      'assert data_utils.OWNER == binaries.OWNER == "the user"',
      'import tff_perfed.data_utils.tasks as t',
      'print(tff_perfed.__file__, t.__file__, metrics["client_work"] '
      'is not None)',
  ])
  (program / 'main.py').write_text(script)
  result = subprocess.run(
      [sys.executable, 'main.py'], cwd=program, capture_output=True,
      text=True, timeout=600, env=dict(ENVIRONMENT, PYTHONPATH=str(installed)))
  assert result.returncode == 0, result.stderr[-3000:]
  package_file, tasks_file, has_metrics = result.stdout.split()
  assert package_file.startswith(str(installed))
  assert tasks_file.startswith(str(installed / 'tff_perfed' / 'data_utils'))
  assert has_metrics == 'True'
  assert 'Traceback' not in result.stderr


def _both_forms(arguments, cwd):
  results = []
  for command in ([str(BIN / 'tff-perfed-train')],
                  [sys.executable, '-m', 'tff_perfed.binaries.train']):
    results.append(subprocess.run(
        [*command, *arguments], cwd=cwd, capture_output=True, text=True,
        timeout=300, env=ENVIRONMENT))
  return results


@pytest.mark.parametrize('arguments, status', [
    (['--help'], 1),  # absl's status for --help.
    (['--rounds=0'], 2),
    (['--no_such_flag'], 2),
])
def test_a_console_script_answers_as_its_python_m_form(tmp_path, arguments,
                                                       status):
  script, module = _both_forms(arguments, tmp_path)
  assert script.returncode == module.returncode == status
  assert script.stdout == module.stdout
  assert script.stderr == module.stderr
  if arguments == ['--help']:
    assert script.stdout.startswith(
        'Trains one algorithm and evaluates per-client personalization.')


def test_a_console_script_interrupted_while_tensorflow_loads_is_quiet(
    tmp_path):
  process = subprocess.Popen(
      [str(BIN / 'tff-perfed-train'), f'--output_dir={tmp_path}/run'],
      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=ENVIRONMENT)
  time.sleep(1.0)  # Importing TensorFlow takes several seconds.
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == 130
  assert stderr.strip().splitlines() == [train.INTERRUPTED_MESSAGE]


def test_importing_a_binarys_first_module_loads_no_tensorflow():
  result = subprocess.run(
      [sys.executable, '-c',
       'import sys, tff_perfed.binaries.exits, tff_perfed.binaries.'
       'console_scripts; print(sorted(m for m in sys.modules if '
       'm.startswith(("tensorflow", "numpy"))))'],
      capture_output=True, text=True, timeout=120, env=ENVIRONMENT)
  assert result.stdout.strip() == '[]', result.stderr


def test_build_names_every_python_file_of_the_checkout():
  build = (ROOT / 'BUILD').read_text()
  listed = set(re.findall(r'"([^"]+\.py)"', build))
  tracked = subprocess.run(['git', 'ls-files', '*.py'], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
  assert sorted(set(tracked) - listed) == []
  assert sorted(p for p in listed if not (ROOT / p).exists()) == []
