"""absl flag parsing with the binaries' contract for bad flags.

One `error:` line on stderr and exit status 2, never a traceback. Kept apart
from `run_flags` so that a binary that declares no run flags
(`binaries/worker.py`) need not import TensorFlow to parse its own.
"""

import sys
from typing import List

from absl import flags


def parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parser, failing with one `error:` line and status 2."""
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)
  if len(remaining) > 1:
    print(f'error: unexpected arguments {" ".join(remaining[1:])!r}; all '
          'options are --flags.', file=sys.stderr)
    sys.exit(2)
  return remaining
