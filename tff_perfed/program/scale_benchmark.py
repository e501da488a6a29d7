"""The program at its datasets' published sizes: start, memory, rounds, evaluation.

`binaries/benchmark.py --suite=scale` writes twins of EMNIST-62 and
CIFAR-100 at their full sizes (`data_utils.twins`) and builds the
Shakespeare reconstruction (`data_utils.shakespeare_plays`), all in one
temporary directory removed after, and runs, for each dataset, measured
children: fresh Python processes running what `binaries/train.py` runs
(`experiment.load_dataset`, the registry's process, `experiment.training_data`,
`experiment.personalized_evaluation`, on the default `in_process` runtime),
without writing a run directory. A child reports the wall time of each stage
from the moment the parent started it:

* `imported`: Python, TensorFlow, TFF and the package imported;
* `loaded`: the file opened, every client checked (and with
  `--diversity_zeta` the scenario's pool built and dealt);
* `ready`: the process built and initialized and the first round's
  datasets made, that is the time from the command to the first round;
* the first round (tracing included), then steady rounds at 10, 50 and 100
  clients per round (one warm-up round each, then the median of
  `round_repeats`; making the round's datasets included);
* one evaluation of every client with the run's K = 5 (`num_eval_clients=0`).

and the child's resident memory after each stage (`rss_after_mib`).

The parent samples the resident memory of the child and of every process
below it every 0.1 s and keeps the peak (also the child's own `ru_maxrss`).
One child per dataset measures all stages without the diversity scenario,
a second one the start and the first round with `diversity_zeta=0.5`.

A last child measures what a user's own `tf.data` pipelines cost: the same
clients' examples as plain `from_tensor_slices(...).repeat().batch(10)`
datasets, passed to the process as they are, against the same datasets
with the package's options, with tf.data's default options set explicitly
(which the runtime leaves as set: the cost before it added its options), and
against the package's own datasets (digits MLP, 10 clients x 4 local steps,
`in_process`).
"""

import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from tff_perfed.program import memory_probe

DATASETS = ('emnist', 'cifar100', 'shakespeare_plays')
ROUND_CLIENTS = (10, 50, 100)
USER_PIPELINE_KINDS = ('plain', 'plain_with_options', 'plain_with_tf_defaults',
                       'package')
DIVERSITY_ZETA = 0.5
_POLL_SECONDS = 0.1
_STDERR_TAIL_LINES = 20

# The goals, on the developer's 2-core machine, for EMNIST-62.
GOAL_START_SECONDS = 60.0
GOAL_PEAK_MIB = 4096.0
GOAL_ROUND_RATIO = 10.0
GOAL_EVALUATION_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class ChildSpec:
  """What one measured child does (passed to it as JSON)."""
  kind: str  # 'run' or 'user_pipelines'.
  result_path: str
  command_time: float  # time.time() when the parent started the child.
  dataset: str = 'digits'
  data_dir: Optional[str] = None
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  round_clients: Sequence[int] = ()
  round_repeats: int = 3
  evaluate_all: bool = False


class ChildFailedError(RuntimeError):
  """A measured child exited with an error."""


def _since(spec: ChildSpec) -> float:
  return time.time() - spec.command_time


def _peak_own_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(spec: ChildSpec) -> Dict[str, Any]:
  """A run's stages, timed (`kind='run'`)."""
  result: Dict[str, Any] = {}
  # pylint: disable=g-import-not-at-top
  from tff_perfed import runtime
  from tff_perfed.algorithms import registry
  from tff_perfed.program import experiment
  # pylint: enable=g-import-not-at-top
  result['imported'] = _since(spec)
  runtime.set_execution_context(runtime.AUTO)
  config = experiment.RunConfig(
      dataset=spec.dataset, data_dir=spec.data_dir, output_dir='unused',
      **spec.settings)
  dataset = experiment.load_dataset(config)
  result['loaded'] = _since(spec)
  result['num_clients'] = len(dataset.client_ids)
  algorithm = registry.get(config.algorithm)
  process = algorithm.build_process(experiment.model_builder(config),
                                    config.algorithm_params())
  state = process.initialize()
  data = experiment.training_data(config, dataset)(1)
  result['ready'] = _since(spec)
  rss = {'ready': memory_probe.rss_mib(os.getpid())}
  start = time.perf_counter()
  state = process.next(state, data).state
  result['first_round_seconds'] = time.perf_counter() - start
  rounds = {}
  for clients in spec.round_clients:
    data_fn = experiment.training_data(
        config.replace(clients_per_round=clients), dataset)
    times = []
    for round_num in range(2, 3 + spec.round_repeats):
      start = time.perf_counter()
      state = process.next(state, data_fn(round_num)).state
      if round_num > 2:  # The first is a warm-up.
        times.append(time.perf_counter() - start)
    rounds[str(clients)] = statistics.median(times)
    rss[f'rounds of {clients}'] = memory_probe.rss_mib(os.getpid())
  result['round_seconds'] = rounds
  if spec.evaluate_all:
    eval_ids, evaluate_clients = experiment.personalized_evaluation(
        config.replace(num_eval_clients=0), dataset)
    start = time.perf_counter()
    rows = evaluate_clients(process.get_model_weights(state))
    result['evaluation_seconds'] = time.perf_counter() - start
    result['evaluated_clients'] = len(eval_ids)
    assert len(rows) == len(eval_ids)
    rss['evaluation'] = memory_probe.rss_mib(os.getpid())
  result['rss_after_mib'] = rss
  result['peak_own_mib'] = _peak_own_mib()
  return result


def _user_pipelines_child(spec: ChildSpec) -> Dict[str, Any]:
  """Rounds on plain user datasets against the package's (`kind=...`)."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  from tff_perfed.data_utils import client_datasets
  from tff_perfed import runtime
  from tff_perfed.algorithms import registry
  from tff_perfed.program import experiment
  # pylint: enable=g-import-not-at-top
  runtime.set_execution_context('in_process')
  config = experiment.RunConfig(dataset=spec.dataset, output_dir='unused',
                                **spec.settings)
  dataset = experiment.load_dataset(config)
  process = registry.get(config.algorithm).build_process(
      experiment.model_builder(config), config.algorithm_params())
  state = process.initialize()
  clients = client_datasets.sample_clients(
      dataset.client_ids, config.clients_per_round, 0, seed=0)
  num_batches = 3 * config.local_steps  # D, D', D'' per Per-FedAvg step.
  tf_defaults = tf.data.Options()  # Set explicitly, so the runtime keeps them.
  tf_defaults.experimental_optimization.apply_default_optimizations = True
  tf_defaults.autotune.enabled = True

  def plain(client_id):
    examples = list(dataset.train.create_tf_dataset_for_client(
        client_id).as_numpy_iterator())
    arrays = {name: np.stack([e[name] for e in examples])
              for name in examples[0]}
    return tf.data.Dataset.from_tensor_slices(arrays).repeat().batch(
        config.batch_size).take(num_batches)

  kinds = {
      'plain': [plain(c) for c in clients],
      'plain_with_options': [
          plain(c).with_options(client_datasets.pipeline_options())
          for c in clients],
      # What every plain dataset cost before the runtime added the options.
      'plain_with_tf_defaults': [
          plain(c).with_options(tf_defaults) for c in clients],
      'package': experiment.training_data(config, dataset)(0),
  }
  times = {name: [] for name in kinds}
  for repeat in range(2 + spec.round_repeats):
    for name, data in kinds.items():
      start = time.perf_counter()
      state = process.next(state, data).state
      if repeat >= 2:  # Two warm-up rounds each.
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def child_main(spec_json: str) -> None:
  spec = ChildSpec(**json.loads(spec_json))
  if spec.kind == 'run':
    result = _run_child(spec)
  else:
    result = _user_pipelines_child(spec)
  with open(spec.result_path, 'w') as f:
    json.dump(result, f)


def run_measured_child(spec: ChildSpec, log_path: str) -> Dict[str, Any]:
  """Runs `spec` in a fresh Python; its result and peak memory in MiB.

  Raises:
    ChildFailedError: If the child fails; the message ends with its
      stderr's last lines.
  """
  # As a binary runs (in this directory, with the installed package), TF's
  # C++ logs quiet.
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  spec = dataclasses.replace(spec, command_time=time.time())
  with open(log_path, 'w') as log:
    child = subprocess.Popen(
        [sys.executable, '-m', 'tff_perfed.program.scale_benchmark',
         json.dumps(dataclasses.asdict(spec))],
        stdout=log, stderr=subprocess.STDOUT,
        env=environment)
    peak = 0.0
    while child.poll() is None:
      sample = memory_probe.sample_memory(0, start_time=0.0, pid=child.pid)
      peak = max(peak, sample.total_mib)
      time.sleep(_POLL_SECONDS)
  if child.returncode != 0:
    with open(log_path) as f:
      tail = ''.join(f.readlines()[-_STDERR_TAIL_LINES:])
    raise ChildFailedError(
        f'the {spec.kind} child on {spec.dataset} exited with '
        f'{child.returncode}:\n{tail}')
  with open(spec.result_path) as f:
    result = json.load(f)
  result['peak_mib'] = max(peak, result.get('peak_own_mib', 0.0))
  result['total_seconds'] = time.time() - spec.command_time
  return result


def prepare_data(dataset: str, data_dir: str) -> float:
  """Writes `dataset`'s twin (or builds the reconstruction); seconds."""
  # pylint: disable=g-import-not-at-top
  from tff_perfed.data_utils import shakespeare_plays
  from tff_perfed.data_utils import twins
  # pylint: enable=g-import-not-at-top
  start = time.perf_counter()
  if dataset == 'shakespeare_plays':
    shakespeare_plays.ensure_built(data_dir)
  else:
    twins.write_twin(dataset, data_dir)
  return time.perf_counter() - start


def measure_scale(datasets: Sequence[str] = DATASETS, *,
                  round_repeats: int = 3,
                  round_clients: Sequence[int] = ROUND_CLIENTS,
                  work_dir: Optional[str] = None,
                  previous: Optional[Mapping[str, Any]] = None,
                  on_result: Callable[[Dict[str, Any]], None] = (
                      lambda results: None),
                  report: Callable[[str], None] = print) -> Dict[str, Any]:
  """The whole suite; JSON-ready. Data live in a temporary directory.

  Args:
    datasets: Names in `DATASETS`.
    round_repeats: Timed rounds per number of clients.
    round_clients: The numbers of clients per round.
    work_dir: Where the temporary directory goes.
    previous: Results of an interrupted suite: the datasets it measured
      are kept, not measured again.
    on_result: Called with the results so far after each dataset.
    report: Called with the report's lines of each dataset.
  """
  root = tempfile.mkdtemp(prefix='scale_suite_', dir=work_dir)
  results: Dict[str, Any] = {'datasets': dict(
      (previous or {}).get('datasets', {}))}
  try:
    for dataset in datasets:
      if dataset in results['datasets']:
        report(f'{dataset}: measured before, kept.')
        continue
      data_dir = os.path.join(root, dataset)
      os.makedirs(data_dir)
      measured = {'prepare_seconds': prepare_data(dataset, data_dir)}
      common = dict(dataset=dataset, data_dir=data_dir, command_time=0.0,
                    round_repeats=round_repeats)
      measured['plain'] = run_measured_child(ChildSpec(
          kind='run', result_path=os.path.join(root, 'plain.json'),
          round_clients=tuple(round_clients), evaluate_all=True, **common),
          os.path.join(root, f'{dataset}_plain.log'))
      measured['diversity'] = run_measured_child(ChildSpec(
          kind='run', result_path=os.path.join(root, 'diversity.json'),
          settings=dict(diversity_zeta=DIVERSITY_ZETA), **common),
          os.path.join(root, f'{dataset}_diversity.log'))
      results['datasets'][dataset] = measured
      on_result(results)
      report(format_dataset_rows(dataset, measured))
      # The next dataset's files replace this one's on disk.
      shutil.rmtree(data_dir)
    results['user_pipelines'] = run_measured_child(ChildSpec(
        kind='user_pipelines', result_path=os.path.join(root, 'user.json'),
        command_time=0.0, round_repeats=max(5, round_repeats)),
        os.path.join(root, 'user_pipelines.log'))
    on_result(results)
    report(format_user_pipelines(results['user_pipelines']))
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return results


def round_ratios(round_seconds: Mapping[str, float]) -> Dict[str, float]:
  """Each round's seconds over the smallest round's (clients as keys)."""
  smallest = min(round_seconds, key=int)
  return {clients: seconds / round_seconds[smallest]
          for clients, seconds in round_seconds.items()}


def goals(measured: Mapping[str, Any]) -> Dict[str, bool]:
  """The issue's goals, met or not, for one dataset's measurements."""
  plain, diversity = measured['plain'], measured['diversity']
  met = {
      'start': max(plain['ready'], diversity['ready']) <= GOAL_START_SECONDS,
      'peak memory': diversity['peak_mib'] < GOAL_PEAK_MIB,
  }
  ratios = round_ratios(plain['round_seconds'])
  if '100' in ratios:
    met['100-client round'] = ratios['100'] <= GOAL_ROUND_RATIO
  if 'evaluation_seconds' in plain:
    met['evaluation'] = (plain['evaluation_seconds'] <
                         GOAL_EVALUATION_SECONDS)
  return met


def format_dataset_rows(dataset: str, measured: Mapping[str, Any]) -> str:
  """Lines of the report for one dataset."""
  lines = [f'{dataset}: {measured["plain"]["num_clients"]} clients, data '
           f'prepared in {measured["prepare_seconds"]:.0f} s']
  for label in ('plain', 'diversity'):
    run = measured[label]
    lines.append(
        f'  {label:<9} imported {run["imported"]:5.1f} s, loaded '
        f'{run["loaded"]:6.1f} s, first round starts {run["ready"]:6.1f} s'
        f' (first round {run["first_round_seconds"]:.1f} s), peak '
        f'{run["peak_mib"]:6.0f} MiB')
  plain = measured['plain']
  ratios = round_ratios(plain['round_seconds'])
  lines.append('  steady round: ' + ', '.join(
      f'{c} clients {plain["round_seconds"][c]:.2f} s ({ratios[c]:.1f}x)'
      for c in sorted(ratios, key=int)))
  if 'evaluation_seconds' in plain:
    seconds, clients = plain['evaluation_seconds'], plain['evaluated_clients']
    lines.append(f'  evaluation of all {clients} clients: {seconds:.0f} s '
                 f'({1e3 * seconds / clients:.0f} ms per client)')
  if 'rss_after_mib' in plain:
    lines.append('  resident after: ' + ', '.join(
        f'{stage} {mib:.0f} MiB'
        for stage, mib in plain['rss_after_mib'].items()))
  lines.append('  goals: ' + ', '.join(
      f'{name} {"met" if ok else "NOT met"}'
      for name, ok in goals(measured).items()))
  return '\n'.join(lines)


def format_user_pipelines(times: Mapping[str, float]) -> str:
  package = times['package']
  return ('user pipelines (digits MLP, 10 clients x 4 steps, in_process): '
          + ', '.join(f'{name} {1e3 * times[name]:.1f} ms '
                      f'({times[name] / package:.2f}x)'
                      for name in USER_PIPELINE_KINDS))


def format_report(results: Mapping[str, Any]) -> str:
  lines: List[str] = [format_dataset_rows(name, measured)
                      for name, measured in results['datasets'].items()]
  if 'user_pipelines' in results:
    lines.append(format_user_pipelines(results['user_pipelines']))
  return '\n'.join(lines)


if __name__ == '__main__':
  child_main(sys.argv[1])
