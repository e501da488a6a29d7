"""What a TFF round costs on each runtime, against a plain-TF loop.

For one model, Per-FedAvg mode and workload (clients per round, batch sizes,
local steps), `measure_runtimes` times in one run, so that machine speed
cancels out of the ratios:

* `plain`: the tightest loop this process can run: the project's own client
  `tf.function` (`per_fedavg.build_per_fedavg_client_update`) called on each
  client's dataset, and the mean update applied in one more `tf.function`;
  the same client work as a TFF round, without TFF;
* each runtime: a steady round of the Per-FedAvg `LearningProcess`, and its
  warm-up (build the process, initialize, first round), in a new context so
  that nothing is cached from another measurement.

Every round reads datasets made for it (outside the timer), as the training
loop does. Medians over `repeats` rounds.
"""

import collections
import dataclasses
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import client_datasets
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms import per_fedavg

HessianMode = meta_gradients.HessianMode


@dataclasses.dataclass(frozen=True)
class Workload:
  """One round's shape.

  Attributes:
    name: Short label for reports.
    clients: Clients per round.
    batch_sizes: (b, b', b''): D, D' and D'' of one local step.
    local_steps: Steps per client (each reads the three batches).
  """
  name: str
  clients: int
  batch_sizes: Sequence[int]
  local_steps: int

  @property
  def examples_per_client(self) -> int:
    return sum(self.batch_sizes) * self.local_steps


# 10 clients x 4 local steps of batch 10; 10 clients of 150 examples; the
# same 1,500 examples over 50 clients of 30. A Per-FedAvg step reads three
# batches of 10 (30 examples), so the 200 and 40 examples per client of the
# issue are rounded down to whole steps, keeping both totals equal. Batch
# sizes are equal: with unequal ones every client dataset carries a
# flat_map function that TF instantiates on its first iteration (tens of
# milliseconds in this process's TensorFlow, plain loop included).
WORKLOADS = (
    Workload('10x4 steps', clients=10, batch_sizes=(10, 10, 10),
             local_steps=4),
    Workload('10x150 ex', clients=10, batch_sizes=(10, 10, 10),
             local_steps=5),
    Workload('50x30 ex', clients=50, batch_sizes=(10, 10, 10),
             local_steps=1),
)


def synthetic_rounds(model, workload: Workload, rounds: int,
                     seed: int = 0) -> List[List[tf.data.Dataset]]:
  """`rounds` lists of client datasets, random data of the model's spec."""
  spec = model.input_spec
  rng = np.random.default_rng(seed)
  examples = workload.examples_per_client
  clients = []
  for _ in range(workload.clients):
    x = rng.normal(size=(examples,) + tuple(spec['x'].shape[1:]))
    y = rng.integers(0, 10, examples)
    clients.append(collections.OrderedDict(
        x=x.astype(spec['x'].dtype.as_numpy_dtype),
        y=y.astype(spec['y'].dtype.as_numpy_dtype)))
  num_batches = len(workload.batch_sizes) * workload.local_steps
  return [[
      client_datasets.cycled_batches(
          tf.data.Dataset.from_tensor_slices(c),
          batch_sizes=workload.batch_sizes, num_batches=num_batches,
          seed=client_datasets.derive_seed(seed, r, i))
      for i, c in enumerate(clients)
  ] for r in range(rounds)]


def _median_seconds(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> float:
  times = []
  for data in inputs:
    start = time.perf_counter()
    fn(data)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def plain_round_seconds(model, params: per_fedavg.PerFedAvgParams,
                        rounds: Sequence[Sequence[tf.data.Dataset]],
                        warmup: int = 2) -> float:
  """Median steady round of the plain-TF loop over the same clients."""
  client_update = per_fedavg.build_per_fedavg_client_update(model, params)
  trainable = tuple(tf.constant(w) for w in model.initial_weights[0])
  non_trainable = tuple(tf.constant(w) for w in model.initial_weights[1])

  @tf.function
  def apply_mean(weights, updates):
    count = float(len(updates))
    return tuple(w - tf.add_n(list(u)) / count
                 for w, u in zip(weights, zip(*updates)))

  def run_round(datasets):
    updates = [client_update((trainable, non_trainable), d)[0].update
               for d in datasets]
    return apply_mean(trainable, updates)[0].numpy()

  for data in rounds[:warmup]:
    run_round(data)
  return _median_seconds(run_round, rounds[warmup:])


def process_round_seconds(build_process: Callable[[], Any],
                          rounds: Sequence[Sequence[tf.data.Dataset]]
                         ) -> Dict[str, float]:
  """The start-up phases and the median steady round of a learning process.

  Returns:
    Seconds: `build` (trace the process), `initialize`, `first` (the first
    round: compilation, graph imports, first calls), `warmup` (the sum of
    those three), and `round` (the steady median over `rounds[1:]`).
  """
  start = time.perf_counter()
  process = build_process()
  built = time.perf_counter()
  state = process.initialize()
  initialized = time.perf_counter()
  state, _ = process.next(state, rounds[0])
  first = time.perf_counter()

  def run_round(data):
    process.next(state, data)

  return dict(build=built - start, initialize=initialized - built,
              first=first - initialized, warmup=first - start,
              round=_median_seconds(run_round, rounds[1:]))


def measure_runtimes(
    model_fn: Callable[[], Any], *, hessian_mode: HessianMode,
    workload: Workload, contexts: Dict[str, Callable[[], Any]],
    repeats: int, alpha: float = 0.02, beta: float = 0.05,
    on_context: Optional[Callable[[str, Any, Any], None]] = None
) -> Dict[str, Dict[str, float]]:
  """Times the plain loop and a Per-FedAvg round on each context.

  Args:
    model_fn: The model (a `FunctionalModel` builder).
    hessian_mode: Per-FedAvg's meta-gradient.
    workload: Clients, batches and steps of a round.
    contexts: `{name: make_context()}`, each a new TFF context.
    repeats: Timed steady rounds.
    alpha: Per-FedAvg's inner step.
    beta: Per-FedAvg's outer step.
    on_context: `on_context(name, context, phase)` before (`'start'`) and
      after (`'end'`) a context's rounds, e.g. to count its bytes.

  Returns:
    `{'plain': {'round': s}, name: process_round_seconds(...), ...}`.
  """
  params = per_fedavg.PerFedAvgParams(
      inner_learning_rate=alpha, outer_learning_rate=beta,
      hessian_mode=hessian_mode, local_steps=workload.local_steps)
  model = model_fn()
  results = {'plain': {'round': plain_round_seconds(
      model, params, synthetic_rounds(model, workload, repeats + 2))}}

  def build_process():
    return per_fedavg.build_per_fedavg(
        model_fn, inner_learning_rate=alpha, outer_learning_rate=beta,
        hessian_mode=hessian_mode, local_steps=workload.local_steps)

  previous = tff.framework.get_context_stack().current
  try:
    for name, make_context in contexts.items():
      context = make_context()
      tff.framework.set_default_context(context)
      rounds = synthetic_rounds(model, workload, repeats + 1)
      if on_context is not None:
        on_context(name, context, 'start')
      results[name] = process_round_seconds(build_process, rounds)
      if on_context is not None:
        on_context(name, context, 'end')
  finally:
    tff.framework.set_default_context(previous)
  return results
