"""The reproduction binary run in this process, for its tests."""

from absl.testing import flagsaver

from tff_perfed.binaries import reproduce
from tff_perfed.binaries import run_flags


def reproduce_in_process(*args: str) -> None:
  """`python -m tff_perfed.binaries.reproduce *args`, without a new process.

  Flags are restored afterwards, so that tests do not see each other's.
  """
  with flagsaver.flagsaver():
    reproduce.parse_flags(['reproduce', *args])
    run_flags.main_wrapper(reproduce.main,
                           interrupted_message='')(['reproduce'])


def progress_lines(printed: str):
  """The per-cell progress lines of the binary's output."""
  return [line for line in printed.splitlines() if line.startswith('[')]
