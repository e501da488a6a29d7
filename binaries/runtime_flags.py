"""Where a binary runs its TFF computations: `--runtime` and `--workers`.

Not run settings: a run resumed on another runtime computes the same
numbers, so these flags live apart from `run_flags`' `RunConfig` fields and
are never compared on resume.
"""

from absl import flags

from tff_perfed import runtime
from tff_perfed import validation

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    'runtime', runtime.AUTO, [runtime.AUTO] + runtime.names(),
    'Where TFF computations run: ' + '; '.join(
        f'{r.name}: {r.summary}' for r in runtime.RUNTIMES.values()) +
    f'; {runtime.AUTO}: remote if --workers is set, else in_process (the '
    'fastest here, and the only one that uses GPUs).')
flags.DEFINE_list(
    'workers', [], 'With --runtime=remote: host:port of each TFF worker '
    '(python -m tff_perfed.binaries.worker --port=PORT on each machine).')
flags.DEFINE_bool(
    'retry_on_worker_loss', True, 'With --runtime=remote: redo a lost '
    'worker\'s work on the remaining workers (same numbers) instead of '
    'stopping.')
flags.DEFINE_integer(
    'min_workers', 1, 'With --runtime=remote: stop once fewer workers than '
    'this are left.', lower_bound=1)
flags.DEFINE_float(
    'worker_call_timeout_seconds', 3600.0, 'With --runtime=remote: a worker '
    'silent this long on one call is lost; 0: no limit.', lower_bound=0.0)


def runtime_from_flags() -> str:
  """The runtime `--runtime` and `--workers` ask for, checked.

  Raises:
    tff_perfed.validation.ArgumentValueError: If `--workers` is given to a
      local runtime or missing for `remote`.
  """
  workers = FLAGS.workers
  name = FLAGS.runtime
  if name == runtime.AUTO:
    name = runtime.default_runtime(workers=workers)
  if name == 'remote' and not workers:
    raise validation.ArgumentValueError(
        'workers', 'at least one host:port with --runtime=remote', '')
  if name != 'remote' and workers:
    raise validation.ArgumentValueError(
        'workers', f'empty with --runtime={name} (workers are for '
        '--runtime=remote)', ','.join(workers))
  return name


def set_runtime_from_flags():
  """Installs the runtime the flags ask for as TFF's default context."""
  name = runtime_from_flags()
  options = {}
  if name == 'remote':
    options = dict(
        workers=FLAGS.workers,
        retry_on_worker_loss=FLAGS.retry_on_worker_loss,
        min_workers=FLAGS.min_workers,
        call_timeout_seconds=FLAGS.worker_call_timeout_seconds or None)
  return runtime.set_execution_context(name, **options)
