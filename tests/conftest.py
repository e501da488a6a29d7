"""Shared test set-up: quiet TF, one owned TFF context for the session."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import hypothesis  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from tff_perfed import runtime  # pylint: disable=g-import-not-at-top

# Property tests: a small, derandomized profile for CI (`make test`), and a
# longer one for hunting (`HYPOTHESIS_PROFILE=thorough make test`).
hypothesis.settings.register_profile(
    'ci', max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    'thorough', max_examples=500, deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))


@pytest.fixture(scope='session', autouse=True)
def local_execution_context():
  runtime.set_local_execution_context(handle_sigterm=False)
  yield
  runtime.shutdown_workers()


@pytest.fixture
def restore_default_context():
  """Puts back the default context a test replaced."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  before = tff.framework.get_context_stack().current
  yield
  tff.framework.set_default_context(before)


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
  """A user with empty caches: ~ and $XDG_CACHE_HOME under tmp_path."""
  home = tmp_path / 'home'
  home.mkdir()
  monkeypatch.setenv('HOME', str(home))
  monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
  return home
