"""Resident memory of a training run over its rounds: driver plus workers.

`measure_run(config)` runs `experiment.run_experiment(config)` and samples
after every round the resident set size (`VmRSS` in `/proc/<pid>/status`)
of this process and of every process it started (the `cpp` runtime's
`worker_binary`, the workers of `remote.start_local_workers`). The samples
are taken when TFF's loop asks for the next round's clients, that is after
the previous round, its evaluation, its release and its checkpoint, and once
more after the run.

RSS is noisy from one round to the next (the allocator returns memory in
pages, evaluations allocate and free), so growth is measured between levels,
the median of the samples in a window of rounds (`memory_level`), not
between two samples. Linux only (`/proc`).
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import os
import statistics
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

_KIB_PER_MIB = 1024


def rss_mib(pid: int) -> float:
  """Resident set size of `pid` in MiB; 0 if it has ended or is a zombie."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / _KIB_PER_MIB
  except OSError:
    pass
  return 0.0


def _parent_pids() -> Dict[int, int]:
  parents = {}
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        # The command, in parentheses, may hold spaces: split after it.
        parents[int(entry)] = int(f.read().rsplit(')', 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
      continue
  return parents


def descendant_pids(pid: int) -> List[int]:
  """Every process below `pid` (children, their children, ...)."""
  children: Dict[int, List[int]] = {}
  for child, parent in _parent_pids().items():
    children.setdefault(parent, []).append(child)
  found, frontier = [], [pid]
  while frontier:
    below = children.get(frontier.pop(), [])
    found.extend(below)
    frontier.extend(below)
  return sorted(found)


def release_free_heap() -> bool:
  """Returns the C heap's free pages to the system (glibc's `malloc_trim`).

  RSS counts freed memory that the allocator keeps; trimming before a
  sample tells growth that is still allocated from memory that is merely
  kept. Returns whether the C library could trim.
  """
  name = ctypes.util.find_library('c')
  if not name:
    return False
  try:
    return bool(ctypes.CDLL(name).malloc_trim(0))
  except (OSError, AttributeError):
    return False


@dataclasses.dataclass(frozen=True)
class MemorySample:
  """Resident memory after one round.

  Attributes:
    round_num: The round just finished (0: before the first).
    seconds: Since the measurement started.
    driver_mib: RSS of the driver (this process).
    workers_mib: Summed RSS of the processes it started.
  """
  round_num: int
  seconds: float
  driver_mib: float
  workers_mib: float

  @property
  def total_mib(self) -> float:
    return self.driver_mib + self.workers_mib


def sample_memory(round_num: int, *, start_time: float,
                  pid: Optional[int] = None) -> MemorySample:
  """Samples the RSS of `pid` (default: this process) and its descendants."""
  pid = os.getpid() if pid is None else pid
  return MemorySample(
      round_num=round_num,
      seconds=time.monotonic() - start_time,
      driver_mib=rss_mib(pid),
      workers_mib=sum(rss_mib(p) for p in descendant_pids(pid)))


def memory_level(samples: Sequence[MemorySample], round_num: int, *,
                 window: int = 20,
                 value: Callable[[MemorySample], float] = (
                     lambda s: s.total_mib)) -> float:
  """The median of `value` over the samples of rounds (round_num - window, round_num].

  Raises:
    ValueError: If no sample falls in that window.
  """
  values = [value(s) for s in samples
            if round_num - window < s.round_num <= round_num]
  if not values:
    raise ValueError(f'no memory sample in rounds {round_num - window + 1} '
                     f'to {round_num}.')
  return statistics.median(values)


def relative_growth(samples: Sequence[MemorySample], start_round: int,
                    end_round: int, *, window: int = 20,
                    value: Callable[[MemorySample], float] = (
                        lambda s: s.total_mib)) -> float:
  """(level at end_round - level at start_round) / level at start_round."""
  start = memory_level(samples, start_round, window=window, value=value)
  end = memory_level(samples, end_round, window=window, value=value)
  return (end - start) / start


def slope_mib_per_round(samples: Sequence[MemorySample], *,
                        from_round: int = 0,
                        value: Callable[[MemorySample], float] = (
                            lambda s: s.total_mib)) -> float:
  """Least-squares slope of `value` against the round, from `from_round` on.

  Raises:
    ValueError: If fewer than two rounds are sampled from `from_round` on.
  """
  points = [(s.round_num, value(s)) for s in samples
            if s.round_num >= from_round]
  if len({r for r, _ in points}) < 2:
    raise ValueError(f'need samples of two rounds from round {from_round}.')
  mean_r = statistics.fmean(r for r, _ in points)
  mean_v = statistics.fmean(v for _, v in points)
  covariance = sum((r - mean_r) * (v - mean_v) for r, v in points)
  variance = sum((r - mean_r) ** 2 for r, _ in points)
  return covariance / variance


@contextlib.contextmanager
def sampling_each_round(on_round: Callable[[int], None]) -> Iterator[None]:
  """Calls `on_round(r)` after each round r of a run, within the block.

  `experiment.run_experiment` builds each round's client datasets with
  `client_datasets.training_datasets(..., round_num=r + 1)` when TFF's loop
  starts round r + 1, which is after round r was trained, evaluated,
  released and saved; this wraps that function for the block.
  """
  from tff_perfed.data_utils import client_datasets  # pylint: disable=g-import-not-at-top
  original = client_datasets.training_datasets

  def training_datasets(*args, round_num, **kwargs):
    on_round(round_num - 1)
    return original(*args, round_num=round_num, **kwargs)

  client_datasets.training_datasets = training_datasets
  try:
    yield
  finally:
    client_datasets.training_datasets = original


@dataclasses.dataclass(frozen=True)
class MemoryReport:
  """What `measure_run` measured.

  Attributes:
    samples: One per round (after it), plus one after the run.
    diagnostics: `{name: [(round, value), ...]}` from the `diagnostics`
      callables given to `measure_run`, sampled every `diagnose_every`
      rounds.
  """
  samples: List[MemorySample]
  diagnostics: Dict[str, List[tuple]]

  def growth(self, start_round: int, end_round: int, *,
             window: int = 20) -> float:
    return relative_growth(self.samples, start_round, end_round,
                           window=window)

  def to_json(self) -> dict:
    return {
        'samples': [dataclasses.asdict(s) for s in self.samples],
        'diagnostics': {k: [list(p) for p in v]
                        for k, v in self.diagnostics.items()},
    }


def measure_run(config, *,
                diagnostics: Optional[Dict[str, Callable[[], float]]] = None,
                diagnose_every: int = 100,
                collect_garbage: bool = False,
                trim_heap: bool = False) -> MemoryReport:
  """Runs `config` with `run_experiment`, sampling RSS after every round.

  Args:
    config: A `RunConfig`; its `output_dir` should be new (a resumed run
      samples only the rounds it trains).
    diagnostics: Extra numbers to follow (`{name: fn}`, e.g. the size of a
      cache), sampled every `diagnose_every` rounds.
    diagnose_every: Rounds between diagnostic samples.
    collect_garbage: Run `gc.collect()` before each sample, so that the
      samples show what is still referenced rather than what the collector
      has not reached yet.
    trim_heap: `release_free_heap()` before each sample (after the
      collection), so that the samples leave out freed memory the C
      allocator keeps.

  Returns:
    A `MemoryReport`.
  """
  # Imported here: measuring a run needs the whole program, the pure
  # functions above do not.
  from tff_perfed.program import experiment  # pylint: disable=g-import-not-at-top
  diagnostics = dict(diagnostics or {})
  start_time = time.monotonic()
  samples: List[MemorySample] = []
  followed: Dict[str, List[tuple]] = {name: [] for name in diagnostics}

  def on_round(round_num: int) -> None:
    if collect_garbage:
      gc.collect()
    if trim_heap:
      release_free_heap()
    samples.append(sample_memory(round_num, start_time=start_time))
    if round_num % diagnose_every == 0:
      for name, fn in diagnostics.items():
        followed[name].append((round_num, fn()))

  with sampling_each_round(on_round):
    experiment.run_experiment(config, show_progress=False)
  on_round(config.rounds)
  return MemoryReport(samples=samples, diagnostics=followed)


def format_memory_report(report: MemoryReport, *, start_round: int,
                         end_round: int, window: int = 20) -> str:
  """Levels of driver, workers and total, then the growth and the slope."""
  lines = [f'{"round":>6}{"driver MiB":>12}{"workers MiB":>13}'
           f'{"total MiB":>11}']
  rounds = sorted({r for r in (window, start_round, end_round // 4,
                               end_round // 2, 3 * end_round // 4, end_round)
                   if 0 < r <= end_round})
  for r in rounds:
    levels = [memory_level(report.samples, r, window=window, value=value)
              for value in (lambda s: s.driver_mib, lambda s: s.workers_mib,
                            lambda s: s.total_mib)]
    lines.append(f'{r:>6}{levels[0]:>12.1f}{levels[1]:>13.1f}'
                 f'{levels[2]:>11.1f}')
  growth = relative_growth(report.samples, start_round, end_round,
                           window=window)
  slope = slope_mib_per_round(report.samples, from_round=start_round)
  lines.append(f'growth from round {start_round} to {end_round}: '
               f'{100 * growth:+.2f}% ({1024 * slope:.1f} KiB a round)')
  return '\n'.join(lines)
