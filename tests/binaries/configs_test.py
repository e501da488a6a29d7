"""Shipped flagfiles are valid runs; the README lists every algorithm flag."""

import glob
import os
import re

from absl.testing import flagsaver
import pytest

from tff_perfed.algorithms import registry
from tff_perfed.binaries import run_flags
from tff_perfed.program import run_config

CONFIGS = sorted(glob.glob(os.path.join(
    os.path.dirname(run_flags.__file__), 'configs', '*.flags')))


def test_the_demo_settings_ship_as_a_flagfile():
  assert any(path.endswith('demo.flags') for path in CONFIGS)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_flagfile_parses_and_validates_as_a_run(path):
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', f'--flagfile={path}'])
    config = run_flags.config_from_flags()
  assert config.rounds >= 1


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_shipped_flagfiles_use_no_legacy_flag(path):
  with open(path) as f:
    names = [line.split('=')[0][2:] for line in f if line.startswith('--')]
  assert not set(names) & set(run_config.LEGACY_SETTINGS), path


def test_the_readme_lists_every_algorithm_flag_and_no_other():
  readme = os.path.join(os.path.dirname(__file__), '..', '..', 'README.md')
  with open(readme) as f:
    text = f.read()
  listed = set(re.findall(r'`--((?:' + '|'.join(registry.names()) +
                          r')\.\w+)', text))
  generated = {setting.name for algorithm in registry.ALGORITHMS.values()
               for setting in algorithm.settings()}
  assert listed == generated
  for name in generated:  # Each is a flag of every binary.
    assert name in run_flags.FLAGS
