"""Errors that stop a run for a reason the user can act on.

A `RunError` is not a bug: a full disk, a diverged run, an output directory
held by another run, a lost worker. Its message is one line naming what is
concerned (the file, round, process or worker) and what to do; binaries
print it as `error: <message>` and exit with its `exit_code`, never with a
traceback (`binaries/run_flags.py`). Bad input (flags, data files) has its
own errors, `validation.ArgumentError` and `DatasetError`, which exit
with 2.
"""


class RunError(Exception):
  """A run cannot go on; `str(error)` is one line for the user.

  Attributes:
    exit_code: The status a binary exits with.
  """
  exit_code = 1

  def __init__(self, message: str):
    super().__init__(' '.join(str(message).split()))
