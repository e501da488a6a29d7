"""Every shipped flagfile is a valid run for the train binary."""

import glob
import os

from absl.testing import flagsaver
import pytest

from tff_perfed.binaries import run_flags

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
