r"""Cost of Per-FedAvg's meta-gradient modes relative to FedAvg.

  python -m binaries.benchmark [--dataset=digits] [--use_synthetic_data]

For one workload, measures in one run (so machine speed cancels out):
  * one local step: FedAvg's SGD step on one batch, and a Per-FedAvg step
    (eq. 8 with the FIRST_ORDER, HESSIAN_FREE or EXACT meta-gradient on
    three batches), each a compiled `tf.function`;
  * one steady-state round of the TFF learning process (tracing and worker
    start excluded by warm-up rounds) with the same clients and batches.
Prints medians in milliseconds and as ratios to FedAvg.
"""

import json
import statistics
import time
from typing import Callable, Dict, List

from absl import app
from absl import flags

from binaries import common
from data_utils import client_datasets
from data_utils import federated_data
import tensorflow as tf
import tff_perfed
from tff_perfed import meta_gradients
from tff_perfed import models
from tff_perfed import runtime

_DATASET = flags.DEFINE_string('dataset', 'digits', 'Workload dataset.')
_USE_SYNTHETIC_DATA = flags.DEFINE_bool('use_synthetic_data', False,
                                        'Synthetic data of the dataset.')
_CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', 10, 'Clients.')
_LOCAL_STEPS = flags.DEFINE_integer('local_steps', 4, 'Local steps.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 10, 'Batch size.')
_STEP_REPEATS = flags.DEFINE_integer('step_repeats', 200, 'Timed steps.')
_ROUND_REPEATS = flags.DEFINE_integer('round_repeats', 10, 'Timed rounds.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None, 'Also write here.')

VARIANTS = ('fedavg', 'first_order', 'hessian_free', 'exact')
ALPHA = BETA = 0.02


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
  fn()  # Trace and warm up.
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_local_steps(model, batches, repeats: int) -> Dict[str, float]:
  loss_fn = models.batch_loss_fn(model)
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])

  @tf.function
  def fedavg_step(w):
    return meta_gradients.sgd_step(
        w, meta_gradients.loss_gradient(loss_fn, w, batches[0]), BETA)

  def per_fedavg_step(mode):
    @tf.function
    def step(w):
      g = meta_gradients.per_fedavg_meta_gradient(
          loss_fn, w, batches, inner_learning_rate=ALPHA, hessian_mode=mode)
      return meta_gradients.sgd_step(w, g, BETA)
    return step

  steps = {'fedavg': fedavg_step}
  for mode in tff_perfed.HessianMode:
    steps[mode.value] = per_fedavg_step(mode)
  # tf.nest.flatten(...)[0].numpy() waits for the result.
  return {
      name: _median_seconds(
          lambda s=step: tf.nest.flatten(s(weights))[0].numpy(), repeats)
      for name, step in steps.items()
  }


def time_rounds(dataset, model_fn, repeats: int) -> Dict[str, float]:
  clients = client_datasets.sample_clients(
      dataset.client_ids, _CLIENTS_PER_ROUND.value, 0, seed=0)
  results = {}
  for name in VARIANTS:
    algorithm = (common.Algorithm.FEDAVG if name == 'fedavg' else
                 common.Algorithm.PER_FEDAVG)
    process = common.build_process(
        algorithm, model_fn, alpha=ALPHA, beta=BETA,
        hessian_mode=tff_perfed.HessianMode(
            'first_order' if name == 'fedavg' else name),
        local_steps=_LOCAL_STEPS.value)
    data = common.training_datasets(
        dataset, clients, algorithm=algorithm,
        batch_sizes=[_BATCH_SIZE.value] * 3,
        local_steps=_LOCAL_STEPS.value, round_num=0, seed=0)
    state = process.initialize()
    results[name] = _median_seconds(lambda: process.next(state, data),
                                    repeats)
  return results


def format_report(step: Dict[str, float], rounds: Dict[str, float]) -> str:
  lines = [f'{"variant":<14}{"step ms":>10}{"step / FedAvg":>15}'
           f'{"round ms":>11}{"round / FedAvg":>16}']
  for name in VARIANTS:
    lines.append(
        f'{name:<14}{1e3 * step[name]:>10.3f}'
        f'{step[name] / step["fedavg"]:>15.2f}{1e3 * rounds[name]:>11.1f}'
        f'{rounds[name] / rounds["fedavg"]:>16.2f}')
  lines.append(
      f'EXACT / FIRST_ORDER: step {step["exact"] / step["first_order"]:.2f}x, '
      f'round {rounds["exact"] / rounds["first_order"]:.2f}x')
  return '\n'.join(lines)


def main(argv: List[str]) -> None:
  del argv
  common.quiet_logging()
  runtime.set_local_execution_context()
  try:
    dataset = federated_data.load_federated_dataset(
        _DATASET.value, use_synthetic_data=_USE_SYNTHETIC_DATA.value)
    model_fn = common.model_fn_for(dataset, seed=0)
    client = dataset.client_ids[0]
    batches = tuple(client_datasets.cycled_batches(
        dataset.train.create_tf_dataset_for_client(client),
        batch_sizes=[_BATCH_SIZE.value], num_batches=3, seed=0))
    step = time_local_steps(model_fn(), batches, _STEP_REPEATS.value)
    rounds = time_rounds(dataset, model_fn, _ROUND_REPEATS.value)
  finally:
    runtime.shutdown_workers()
  print(f'{_DATASET.value}: {_CLIENTS_PER_ROUND.value} clients x '
        f'{_LOCAL_STEPS.value} local steps, batch {_BATCH_SIZE.value}')
  print(format_report(step, rounds))
  if _OUTPUT_JSON.value:
    with open(_OUTPUT_JSON.value, 'w') as f:
      json.dump({'step_seconds': step, 'round_seconds': rounds}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
