"""Child processes seen through /proc, for tests that no worker is left."""

import os
import time
from typing import List


def children_named(parent_pid: int, name: str = 'worker_binary') -> List[int]:
  """Pids of `parent_pid`'s children whose command is `name`."""
  found = []
  for pid in os.listdir('/proc'):
    if not pid.isdigit():
      continue
    try:
      with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      with open(f'/proc/{pid}/comm') as f:
        comm = f.read().strip()
    except OSError:
      continue
    if int(fields[1]) == parent_pid and comm == name:
      found.append(int(pid))
  return found


def alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie does not)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


def assert_gone(pids, timeout: float = 20) -> None:
  """Waits up to `timeout` seconds for every pid to end; fails otherwise."""
  deadline = time.monotonic() + timeout
  while any(alive(p) for p in pids) and time.monotonic() < deadline:
    time.sleep(0.1)
  left = [p for p in pids if alive(p)]
  assert not left, f'TFF workers {left} outlived their parent'
