"""--runtime and the remote runtime's failover flags reach the runtime."""

from absl.testing import flagsaver

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import runtime_flags
from tff_perfed import runtime


def _installed_runtime(monkeypatch, *args):
  installed = {}
  monkeypatch.setattr(
      runtime, 'set_execution_context',
      lambda name, **options: installed.update(name=name, options=options))
  with flagsaver.flagsaver():
    run_flags.parse_flags(['train', *args])
    runtime_flags.set_runtime_from_flags()
  return installed


def test_remote_failover_flags_become_the_contexts_options(monkeypatch):
  installed = _installed_runtime(
      monkeypatch, '--workers=h1:8000,h2:8000', '--noretry_on_worker_loss',
      '--min_workers=2', '--worker_call_timeout_seconds=0')
  assert installed == dict(name='remote', options=dict(
      workers=['h1:8000', 'h2:8000'], retry_on_worker_loss=False,
      min_workers=2, call_timeout_seconds=None))


def test_remote_retries_by_default_with_an_hour_per_call(monkeypatch):
  installed = _installed_runtime(monkeypatch, '--workers=h1:8000')
  assert installed['options'] == dict(
      workers=['h1:8000'], retry_on_worker_loss=True, min_workers=1,
      call_timeout_seconds=3600.0)


def test_local_runtimes_take_no_remote_options(monkeypatch):
  assert _installed_runtime(monkeypatch, '--runtime=cpp') == dict(
      name='cpp', options={})
