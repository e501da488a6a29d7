"""One run at a time per output directory: an advisory lock with its pid.

`RunLock(output_dir)` takes an exclusive `fcntl.flock` on
`output_dir/.run.lock` and writes this process's pid into it. A second run
on the same directory is refused at once (`OutputDirLockedError`, naming the
pid in the file). The kernel releases a flock when its holder exits, however
it exits, so a lock left by a killed run is simply taken over: the pid in
the file is then stale and is overwritten. The file itself stays (removing
it would let two runs lock two different files).
"""

import errno
import fcntl
import os

from tff_perfed import errors

LOCK_FILE = '.run.lock'


class OutputDirLockedError(errors.RunError):
  """Another process is running in the output directory."""


def lock_path(output_dir: str) -> str:
  """The lock file of a run's directory."""
  return os.path.join(output_dir, LOCK_FILE)


def _holder(fd: int) -> str:
  try:
    text = os.pread(fd, 64, 0).decode('ascii', 'replace').strip()
  except OSError:
    text = ''
  return f'process {text}' if text.isdigit() else 'another process'


def _locked_error(output_dir: str, path: str, fd: int) -> OutputDirLockedError:
  return OutputDirLockedError(
      f'output_dir {output_dir!r} is in use by {_holder(fd)} (it holds '
      f'{path}); wait for that run to end, or use another output_dir.')


def _is_contended(error: OSError) -> bool:
  return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def check_free(output_dir: str) -> None:
  """Fails at once if another process holds `output_dir`'s lock.

  Creates nothing: a run calls it before its slow preparations (loading and
  checking the data), and takes the lock (`RunLock`) when it starts writing.

  Raises:
    OutputDirLockedError: If another process holds the lock.
  """
  path = lock_path(output_dir)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return  # No lock file (a new directory), or none we can read.
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if _is_contended(e):
      raise _locked_error(output_dir, path, fd) from None
  finally:
    os.close(fd)  # Closing releases a flock this check took.


class RunLock:
  """The held run lock of one output directory; a context manager.

  Acquired when constructed, released by `release()` or on leaving the
  `with` statement.
  """

  def __init__(self, output_dir: str):
    """Takes `output_dir`'s run lock at once, or fails.

    Args:
      output_dir: An existing directory.

    Raises:
      OutputDirLockedError: If another process holds the lock.
      OSError: If the lock file cannot be created or written.
    """
    self.path = lock_path(output_dir)
    # Not inherited by children (PEP 446), so a worker cannot keep it held.
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if not _is_contended(e):
          raise
        raise _locked_error(output_dir, self.path, self._fd) from None
      # A pid left by a killed run is stale: the kernel released its flock.
      os.ftruncate(self._fd, 0)
      os.pwrite(self._fd, f'{os.getpid()}\n'.encode('ascii'), 0)
    except BaseException:
      os.close(self._fd)
      raise

  def release(self) -> None:
    """Releases the lock (closing the file releases the flock)."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> 'RunLock':
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()
