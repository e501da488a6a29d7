"""What the client-state store adds to a round: its reads and writes.

`binaries/benchmark.py --suite=client_states` runs, for each model (the
digits MLP, the EMNIST CNN), Ditto rounds of 10 clients x 4 local steps of
batch 10 on random data of the model's input spec, the way the training
loop runs them (`training_loop.ClientStateRounds`: the sampled clients'
states read from a `client_states.ClientStateStore` on disk, the round, the
new states written back), on the binaries' default runtime, `in_process`.
Every client is new in the first (warm-up) round and has a state in the
timed rounds, which each read and write all 10 states. Blocks of k rounds
end with the store's `flush` (what a checkpoint every k rounds waits for;
k = 1, the default `--rounds_per_checkpoint`, and 10, the shipped MNIST
flagfile's). The same blocks, alternating, run on a `MemoryStore` (a dict:
the round without the store's cost). Reported per model and k: the state's
bytes per client, the mean round on each store and the added fraction.
Medians over `repeats` blocks of each, measured in one run so that machine
speed cancels out of the ratio.
"""

import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, Mapping, Sequence

import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import runtime
from tff_perfed.algorithms import ditto
from tff_perfed.data_utils import tasks
from tff_perfed.program import client_states
from tff_perfed.program import runtime_benchmark
from tff_perfed.program import training_loop

MODELS = ('digits', 'emnist')
ROUNDS_PER_CHECKPOINT = (1, 10)
WORKLOAD = runtime_benchmark.Workload('10x4 steps', clients=10,
                                      batch_sizes=(10,), local_steps=4)


class MemoryStore:
  """The store's interface on a dict: the round without the store's cost."""

  def __init__(self):
    self._states = {}

  def read(self, client_id: str) -> Any:
    return self._states.get(client_id)

  def write(self, round_num: int, client_id: str, state: Any) -> None:
    del round_num
    self._states[client_id] = state

  def flush(self) -> None:
    pass


def measure_store(model_fn: Callable[[], Any], *, repeats: int,
                  work_dir: str,
                  rounds_per_checkpoint: Sequence[int] = ROUNDS_PER_CHECKPOINT
                  ) -> Dict[str, Any]:
  """Ditto rounds with the store on disk, against the same on a dict.

  For each `k` in `rounds_per_checkpoint`, blocks of `k` rounds alternate
  between the two stores (so that drift of the machine's speed falls on
  both alike), each block ending with the store's `flush`, which a
  checkpoint every `k` rounds waits for; the first block of each store
  warms up.

  Args:
    model_fn: The model (a `FunctionalModel` builder).
    repeats: Timed blocks of each store and `k`.
    work_dir: Where the store's directory is made (and removed after).
    rounds_per_checkpoint: The values of `k`.

  Returns:
    `{'state_bytes': per client, 'by_rounds_per_checkpoint': {k:
    {'round_seconds': on the dict, 'round_with_store_seconds',
    'store_fraction': the added time over the round}}}`: medians over the
    timed blocks of the mean round in each.
  """
  process = ditto.build_ditto(model_fn, client_learning_rate=0.05,
                              personal_learning_rate=0.05,
                              regularization=0.1,
                              local_steps=WORKLOAD.local_steps)
  model = model_fn()
  # Rounds reuse their data: making it is the loop's cost, not the store's.
  rounds_data = runtime_benchmark.synthetic_rounds(model, WORKLOAD, 2)
  client_ids = [f'client_{i}' for i in range(WORKLOAD.clients)]
  state = process.initialize()
  results = {}
  with tempfile.TemporaryDirectory(dir=work_dir) as root:
    on_disk = client_states.ClientStateStore(
        os.path.join(root, 'client_states'),
        process.initial_client_state(process.get_model_weights(state)))
    stores = (MemoryStore(), on_disk)
    round_num = [0]
    rounds = [training_loop.ClientStateRounds(
        process, store, lambda _: client_ids, lambda: round_num[0])
              for store in stores]
    for k in rounds_per_checkpoint:
      seconds = ([], [])
      for block in range(2 * (repeats + 1)):
        which = block % 2
        start = time.perf_counter()
        for _ in range(k):
          round_num[0] += 1
          state = rounds[which].next(
              state, rounds_data[round_num[0] % 2]).state
        stores[which].flush()
        seconds[which].append((time.perf_counter() - start) / k)
      in_memory = statistics.median(seconds[0][1:])
      with_store = statistics.median(seconds[1][1:])
      results[k] = dict(round_seconds=in_memory,
                        round_with_store_seconds=with_store,
                        store_fraction=with_store / in_memory - 1)
    state_bytes = on_disk.bytes_written / (
        (round_num[0] + 1) // 2 * len(client_ids))
  return dict(state_bytes=state_bytes, by_rounds_per_checkpoint=results)


def measure_client_states(names: Sequence[str] = MODELS, *, repeats: int,
                          work_dir: str = None) -> Dict[str, Dict[str, float]]:
  """`measure_store` for each dataset's model, on `in_process`."""
  previous = tff.framework.get_context_stack().current
  results = {}
  try:
    tff.framework.set_default_context(
        runtime.RUNTIMES['in_process'].create_context())
    for name in names:
      task = tasks.get(name)
      results[name] = measure_store(lambda: task.build_model(0),
                                    repeats=repeats, work_dir=work_dir)
      print(format_row(name, results[name]), flush=True)
  finally:
    tff.framework.set_default_context(previous)
  return results


def format_row(name: str, result: Mapping[str, Any]) -> str:
  parts = [f'{name:<8} state {result["state_bytes"] / 1e6:5.2f} MB a client']
  for k, r in result['by_rounds_per_checkpoint'].items():
    parts.append(f'checkpoint every {k}: round '
                 f'{1e3 * r["round_seconds"]:.0f} ms on a dict, '
                 f'{1e3 * r["round_with_store_seconds"]:.0f} ms with the '
                 f'store ({100 * r["store_fraction"]:+.1f}%)')
  return ' | '.join(parts)
