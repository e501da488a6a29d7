r"""Costs: the algorithms' variants, and the runtimes against plain TF.

  python -m tff_perfed.binaries.benchmark --suite=variants [--dataset=digits] ...
  python -m tff_perfed.binaries.benchmark --suite=runtimes [--runtimes=cpp,in_process]
  python -m tff_perfed.binaries.benchmark --suite=memory \
      --flagfile=binaries/configs/demo.flags --rounds=2000 [--runtime=cpp]
  python -m tff_perfed.binaries.benchmark --suite=scale \
      [--scale_datasets=emnist,cifar100,shakespeare_plays]
  python -m tff_perfed.binaries.benchmark --suite=client_states

`--suite=runtimes` (`tff_perfed.program.runtime_benchmark`): for the digits
MLP and the EMNIST CNN, first-order and exact Per-FedAvg, and each workload
(10 clients x 4 steps; 10 clients x 150 examples; 50 clients x 30
examples), the steady round and the warm-up of each runtime as ratios to a
plain-TF loop over the same clients, measured in one run; `remote` runs on
one and on two local workers (bytes moved per round included). Writes
`--output_json`.

`--suite=memory` (`tff_perfed.program.memory_probe`): one run of the run
flags (in a temporary output directory) on `--runtime`, with the resident
memory of this process and of the workers it started sampled after every
round; prints the levels (medians over 20 rounds) and the growth from
`--memory_from_round` to the last round. Writes the samples to
`--output_json`.

`--suite=scale` (`tff_perfed.program.scale_benchmark`): EMNIST-62 and
CIFAR-100 twins at their published sizes and the rebuilt Shakespeare, in a
temporary directory (`--scale_work_dir`, removed after; EMNIST's twin takes
2.9 GB): for each, in fresh processes, the time from the command to the
first round, peak memory with and without `--diversity_zeta`, steady rounds
at 10, 50 and 100 clients as ratios to 10, one evaluation of every client;
and a user's own `tf.data` pipelines against the package's. About 40
minutes on 2 cores. Writes `--output_json`.

`--suite=client_states` (`tff_perfed.program.client_state_benchmark`):
what the client-state store's reads and writes add to a 10-client Ditto
round on the digits MLP and the EMNIST CNN (`--scale_round_repeats` timed
rounds, the store in `--scale_work_dir`). Writes `--output_json`.

`--suite=variants`: for one workload (the run flags: dataset, clients per
round, local steps, batch sizes), measures in one run, so that machine speed
cancels out:
  * one local step of each variant, the algorithm registry's `local_step`
    compiled as a `tf.function`: FedAvg's SGD step on one batch, a
    Per-FedAvg step (eq. 8 with the FIRST_ORDER, HESSIAN_FREE or EXACT
    meta-gradient on three batches), an AFML client pair (head and
    encoder gradients on a support and a query batch, second order through
    the head's inner step), and one step of Ditto (its global model's),
    pFedMe (its `inner_steps` steps for theta and the move of w), APFL (w
    and v), FedRep (a head step) and FedPer;
  * one steady-state round of the TFF learning process (tracing and worker
    start excluded by warm-up rounds) with the same clients; a process whose
    clients keep state gets newcomers' states (`initial_client_state`) and
    its round carries them in and out. A round is the algorithm's own:
    Ditto's also trains the personal model (`--ditto.personal_steps`),
    FedRep's is `--fedrep.head_steps` plus `--fedrep.body_steps`.
Prints medians in milliseconds and as ratios to FedAvg and to first-order
Per-FedAvg; rounds run on `--runtime`.
"""

# First, before TensorFlow loads: an interrupt at any moment ends the
# program with one line, never a traceback (`binaries.exits`).
from tff_perfed.binaries import exits  # pylint: disable=g-bad-import-order

INTERRUPTED_MESSAGE = 'interrupted.'
if __name__ == '__main__':
  exits.exit_quietly_on_signals(INTERRUPTED_MESSAGE)

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict

from absl import flags

from tff_perfed.binaries import run_flags  # Sets TF's log level before TF is imported.
from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import tasks
import tensorflow as tf
from tff_perfed import runtime
from tff_perfed import validation
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms import registry
from tff_perfed.program import client_state_benchmark
from tff_perfed.program import experiment
from tff_perfed.program import memory_probe
from tff_perfed.program import outputs
from tff_perfed.program import runtime_benchmark
from tff_perfed.program import scale_benchmark
# pylint: enable=g-import-not-at-top,wrong-import-position

_SUITE = flags.DEFINE_enum('suite', 'variants',
                           ['variants', 'runtimes', 'memory', 'scale',
                            'client_states'],
                           'What to measure (see the module docstring).')
_STEP_REPEATS = flags.DEFINE_integer('step_repeats', 200, 'Timed steps.')
_ROUND_REPEATS = flags.DEFINE_integer('round_repeats', 10, 'Timed rounds.')
_RUNTIMES = flags.DEFINE_list(
    'runtimes', ['cpp', 'in_process', 'remote'],
    '--suite=runtimes: the runtimes to compare (remote: on one and on two '
    'local workers).')
_MODELS = flags.DEFINE_list('benchmark_datasets', ['digits', 'emnist'],
                            '--suite=runtimes: whose models to time.')
_TRIALS = flags.DEFINE_integer(
    'trials', 1, '--suite=runtimes: measure each comparison this many times '
    'and report the spread of every ratio.')
_MEMORY_FROM_ROUND = flags.DEFINE_integer(
    'memory_from_round', 100, '--suite=memory: growth is measured from this '
    'round (after warm-up) to the last.', lower_bound=1)
_MEMORY_TRIM_HEAP = flags.DEFINE_bool(
    'memory_trim_heap', False, '--suite=memory: collect garbage and return '
    'the C heap\'s free pages (malloc_trim) before each sample, to tell '
    'memory still allocated from memory the allocator merely keeps.')
_SCALE_DATASETS = flags.DEFINE_list(
    'scale_datasets', list(scale_benchmark.DATASETS),
    '--suite=scale: the datasets to measure at full size.')
_SCALE_ROUND_REPEATS = flags.DEFINE_integer(
    'scale_round_repeats', 3, '--suite=scale: timed rounds per number of '
    'clients (after one warm-up).', lower_bound=1)
_SCALE_WORK_DIR = flags.DEFINE_string(
    'scale_work_dir', None, '--suite=scale: where the temporary data '
    'directory goes (default: the system\'s temporary directory).')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None, 'Also write here.')

HessianMode = meta_gradients.HessianMode
# Per-FedAvg's three modes, then every other registered algorithm.
VARIANTS = ('fedavg',) + tuple(mode.value for mode in HessianMode) + tuple(
    name for name in registry.names() if name not in ('fedavg', 'per_fedavg'))


def variant_config(config, name: str):
  """The run settings of one variant."""
  if name in registry.names():
    return config.replace(algorithm=name)
  return config.replace(algorithm='per_fedavg',
                        **{'per_fedavg.hessian_mode': HessianMode(name)})


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
  fn()  # Trace and warm up.
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_local_steps(config, dataset, *, repeats: int) -> Dict[str, float]:
  """Median seconds of one local step per variant, on one client's batches."""
  client = dataset.client_ids[0]
  results = {}
  for name in VARIANTS:
    variant = variant_config(config, name)
    algorithm = registry.get(variant.algorithm)
    step, weights = algorithm.local_step(
        experiment.model_builder(variant)(), variant.algorithm_params())
    weights = tf.nest.map_structure(tf.constant, weights)
    batches = client_datasets.one_step_batches(dataset.train, client,
                                               variant.batch_sizes())
    compiled = tf.function(step)
    # tf.nest.flatten(...)[0].numpy() waits for the result.
    results[name] = _median_seconds(
        lambda: tf.nest.flatten(compiled(weights, batches))[0].numpy(),
        repeats)
  return results


def time_rounds(config, dataset, repeats: int) -> Dict[str, float]:
  clients = client_datasets.sample_clients(
      dataset.client_ids, config.clients_per_round, 0, seed=0)
  results = {}
  for name in VARIANTS:
    variant = variant_config(config, name)
    process = registry.get(variant.algorithm).build_process(
        experiment.model_builder(variant), variant.algorithm_params())
    data = client_datasets.training_datasets(
        dataset.train, clients, batch_sizes=variant.batch_sizes(),
        local_steps=variant.local_steps, round_num=0, seed=0)
    state = process.initialize()
    args = (state, data)
    if experiment.has_client_states(process):
      # Newcomers' states, the same every repeat: a steady round's cost.
      args += ([process.initial_client_state(
          process.get_model_weights(state))] * len(clients),)
    results[name] = _median_seconds(lambda: process.next(*args), repeats)
  return results


def format_report(step: Dict[str, float], rounds: Dict[str, float]) -> str:
  lines = [f'{"variant":<14}{"step ms":>10}{"step / FedAvg":>15}'
           f'{"round ms":>11}{"round / FedAvg":>16}']
  for name in VARIANTS:
    lines.append(
        f'{name:<14}{1e3 * step[name]:>10.3f}'
        f'{step[name] / step["fedavg"]:>15.2f}{1e3 * rounds[name]:>11.1f}'
        f'{rounds[name] / rounds["fedavg"]:>16.2f}')
  for name in VARIANTS[VARIANTS.index('exact'):]:
    lines.append(
        f'{name.upper()} / FIRST_ORDER: step '
        f'{step[name] / step["first_order"]:.2f}x, round '
        f'{rounds[name] / rounds["first_order"]:.2f}x')
  return '\n'.join(lines)


def _runtime_contexts(names, workers):
  """`{label: make_context}` for the runtimes of the suite."""
  contexts = {}
  for name in names:
    if name == 'remote':
      from tff_perfed.runtime import remote  # pylint: disable=g-import-not-at-top
      for n in (1, 2):
        contexts[f'remote x{n}'] = (
            lambda n=n: remote.create_remote_execution_context(workers[:n]))
    else:
      contexts[name] = runtime.RUNTIMES[name].create_context
  return contexts


def run_runtime_suite(names, datasets, repeats, trials):
  """Every (dataset, mode, workload) of the runtime suite; JSON-ready.

  Each comparison is measured `trials` times (plain loop and every runtime
  each time), so that the report can show the spread of every ratio.
  """
  for name in names:
    runtime.registry.get(name)
  workers = []
  if 'remote' in names:
    from tff_perfed.runtime import remote  # pylint: disable=g-import-not-at-top
    workers = remote.start_local_workers(2)
  contexts = _runtime_contexts(names, workers)
  results = []
  bytes_moved = {}

  def count_bytes(label, context, phase):
    if label.startswith('remote'):
      from tff_perfed.runtime import remote  # pylint: disable=g-import-not-at-top
      moved = remote.bytes_moved(context)
      bytes_moved[(label, phase)] = moved['sent'] + moved['received']

  for dataset in datasets:
    task = tasks.get(dataset)
    for mode in (HessianMode.FIRST_ORDER, HessianMode.EXACT):
      for workload in runtime_benchmark.WORKLOADS:
        selected = {
            label: make for label, make in contexts.items()
            if not label.startswith('remote') or (
                mode is HessianMode.FIRST_ORDER and
                workload is runtime_benchmark.WORKLOADS[0])
        }
        measured = []
        for _ in range(trials):
          bytes_moved.clear()
          seconds = runtime_benchmark.measure_runtimes(
              lambda: task.build_model(0), hessian_mode=mode,
              workload=workload, contexts=selected, repeats=repeats,
              on_context=count_bytes)
          for label in selected:
            if (label, 'end') in bytes_moved:
              seconds[label]['bytes_per_round'] = (
                  bytes_moved[(label, 'end')] -
                  bytes_moved[(label, 'start')]) / (repeats + 1)
          measured.append(seconds)
        results.append(dict(dataset=dataset, hessian_mode=mode.value,
                            workload=workload.name, trials=measured))
        print(format_runtime_row(results[-1]), flush=True)
  return results


def _spread(values) -> str:
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return (f'{statistics.median(values):.2f} '
          f'[{min(values):.2f}-{max(values):.2f}]')


def format_runtime_row(result) -> str:
  """One line: plain-loop ms, then per runtime round / plain and start-up.

  Ratios are medians over trials with their range; the first round is in
  steady rounds of the same runtime.
  """
  trials = result['trials']
  plain = [t['plain']['round'] for t in trials]
  parts = [f'{result["dataset"]:<7}{result["hessian_mode"]:<12}'
           f'{result["workload"]:<11}plain {1e3 * statistics.median(plain):7.1f} ms']
  for label in trials[0]:
    if label == 'plain':
      continue
    ratio = [t[label]['round'] / t['plain']['round'] for t in trials]
    first = [t[label]['first'] / t[label]['round'] for t in trials]
    part = f'{label} {_spread(ratio)}x (first round {_spread(first)})'
    if 'bytes_per_round' in trials[0][label]:
      part += (f' {trials[0][label]["bytes_per_round"] / 1e6:.2f} '
               'MB/round')
    parts.append(part)
  return ' | '.join(parts)


def run_memory_suite(config, from_round: int, *, trim_heap: bool = False):
  """One run of `config` in a temporary directory, sampled every round."""
  if config.rounds < 2 * from_round:
    raise validation.ArgumentValueError(
        'rounds', f'at least 2 * --memory_from_round = {2 * from_round} '
        'with --suite=memory', config.rounds)
  output_dir = tempfile.mkdtemp(prefix='memory_suite_')
  try:
    report = memory_probe.measure_run(
        config.replace(output_dir=output_dir), collect_garbage=trim_heap,
        trim_heap=trim_heap)
  finally:
    shutil.rmtree(output_dir, ignore_errors=True)
  print(memory_probe.format_memory_report(
      report, start_round=from_round, end_round=config.rounds))
  return dict(report.to_json(), from_round=from_round,
              growth=report.growth(from_round, config.rounds))


def main() -> None:
  if _SUITE.value == 'client_states':
    report = client_state_benchmark.measure_client_states(
        repeats=_SCALE_ROUND_REPEATS.value, work_dir=_SCALE_WORK_DIR.value)
  elif _SUITE.value == 'scale':
    for name in _SCALE_DATASETS.value:
      validation.require_choice('scale_datasets', name,
                                scale_benchmark.DATASETS)
    previous = None
    if _OUTPUT_JSON.value and os.path.exists(_OUTPUT_JSON.value):
      # An interrupted suite's datasets are kept (written after each one).
      with open(_OUTPUT_JSON.value) as f:
        previous = json.load(f)
    report = scale_benchmark.measure_scale(
        _SCALE_DATASETS.value, round_repeats=_SCALE_ROUND_REPEATS.value,
        work_dir=_SCALE_WORK_DIR.value, previous=previous,
        on_result=lambda results: _OUTPUT_JSON.value and outputs.write_json(
            _OUTPUT_JSON.value, results))
  elif _SUITE.value == 'memory':
    report = run_memory_suite(run_flags.config_from_flags(),
                              _MEMORY_FROM_ROUND.value,
                              trim_heap=_MEMORY_TRIM_HEAP.value)
  elif _SUITE.value == 'runtimes':
    results = run_runtime_suite(_RUNTIMES.value, _MODELS.value,
                                _ROUND_REPEATS.value, _TRIALS.value)
    report = {'runtimes': results}
  else:
    config = run_flags.config_from_flags()
    dataset = experiment.load_dataset(config)
    step = time_local_steps(config, dataset, repeats=_STEP_REPEATS.value)
    rounds = time_rounds(config, dataset, _ROUND_REPEATS.value)
    print(f'{config.dataset}: {config.clients_per_round} clients x '
          f'{config.local_steps} local steps, batch {config.batch_size}')
    print(format_report(step, rounds))
    report = {'step_seconds': step, 'round_seconds': rounds}
  if _OUTPUT_JSON.value:
    outputs.write_json(_OUTPUT_JSON.value, report)


if __name__ == '__main__':
  run_flags.run(main, interrupted_message=INTERRUPTED_MESSAGE)
