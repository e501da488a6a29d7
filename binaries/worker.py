r"""Runs one TFF worker in the foreground, for the `remote` runtime.

  python -m tff_perfed.binaries.worker --port=8000

The worker is the C++ `worker_binary` shipped in the TFF package (the same
version as the driver's: 0.87.0); it listens on every interface of this
host, without TLS or authentication, so keep it on a private network. Once
it accepts calls, one line on stdout gives its address; its own logs go to
stderr. SIGINT or SIGTERM (Ctrl-C, `docker stop`) stop it and exit 0; the
worker also dies if this program is killed. Drivers connect with
`--runtime=remote --workers=HOST:PORT,...` (see deploy/README.md).
"""

import os
import signal
import subprocess
import sys
import time
from typing import List

# A service: keep TF's C++ start-up chatter out of its log.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from tff_perfed.binaries import flag_parsing
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS

flags.DEFINE_integer('port', 8000, 'Port to serve on (every interface).',
                     lower_bound=1, upper_bound=65535)
flags.DEFINE_integer(
    'max_concurrent_computation_calls', -1, 'Most parallel calls of one '
    'computation (e.g. clients of a federated_map) on this worker; '
    'non-positive means no limit.')
flags.DEFINE_float('ready_timeout_seconds', 120.0,
                   'Give up if the worker does not accept calls by then.',
                   lower_bound=0.0)

_POLL_SECONDS = 0.2
_STOP_SECONDS = 10.0


class _Stop:
  """Records SIGINT/SIGTERM and passes SIGTERM on to the worker."""

  def __init__(self):
    self.requested = False
    self.process = None

  def __call__(self, signum, frame) -> None:
    del signum, frame
    self.requested = True
    if self.process is not None and self.process.poll() is None:
      self.process.terminate()


def _wait_until_ready(process: subprocess.Popen, port: int, stop: _Stop,
                      timeout_seconds: float) -> bool:
  """Whether the worker accepts calls (False: it exited or we stop).

  Raises:
    TimeoutError: If it does not within `timeout_seconds`.
  """
  import grpc  # pylint: disable=g-import-not-at-top
  deadline = time.monotonic() + timeout_seconds
  # Only ever probes the loopback address. The channel is dropped, not
  # closed: closing races with gRPC's connectivity thread.
  ready = grpc.channel_ready_future(
      grpc.insecure_channel(f'127.0.0.1:{port}'))
  while not stop.requested and process.poll() is None:
    try:
      ready.result(timeout=_POLL_SECONDS)
      return True
    except grpc.FutureTimeoutError:
      if time.monotonic() > deadline:
        raise TimeoutError(
            f'the TFF worker did not accept calls on port {port} within '
            f'{timeout_seconds:g} s.') from None
  return False


def _stop(process: subprocess.Popen) -> None:
  if process.poll() is None:
    process.terminate()
  try:
    process.wait(timeout=_STOP_SECONDS)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()


def main(argv: List[str]) -> int:
  flag_parsing.parse_flags(argv)
  stop = _Stop()
  # Installed before the worker starts, so that no signal can leave it
  # behind.
  signal.signal(signal.SIGTERM, stop)
  signal.signal(signal.SIGINT, stop)

  # Imported only now, so that bad flags fail fast.
  # pylint: disable=g-import-not-at-top
  from tff_perfed.runtime import local_cpp
  import tensorflow_federated as tff
  # pylint: enable=g-import-not-at-top

  if stop.requested:
    return 0
  args, preexec_fn = local_cpp.owned_command([
      local_cpp.worker_binary_path(), f'--port={FLAGS.port}',
      '--max_concurrent_computation_calls='
      f'{FLAGS.max_concurrent_computation_calls}'
  ])
  process = subprocess.Popen(
      args,
      stdin=subprocess.DEVNULL,
      stdout=sys.stderr,  # stdout carries only the address line.
      close_fds=True,
      preexec_fn=preexec_fn)
  stop.process = process
  if stop.requested:  # A signal between Popen and the line above.
    process.terminate()
  try:
    try:
      ready = _wait_until_ready(process, FLAGS.port, stop,
                                FLAGS.ready_timeout_seconds)
    except TimeoutError as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    if ready:
      print(f'TFF worker (tensorflow_federated {tff.__version__}, pid '
            f'{process.pid}) serving on [::]:{FLAGS.port}; drivers use '
            f'--workers=<this host>:{FLAGS.port}', flush=True)
    while process.poll() is None:
      try:
        process.wait()
      except InterruptedError:
        continue
  finally:
    _stop(process)
  if stop.requested:
    return 0
  print(f'error: the TFF worker exited with code {process.returncode}.',
        file=sys.stderr)
  return 1


if __name__ == '__main__':
  sys.exit(main(sys.argv))
