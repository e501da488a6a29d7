r"""Cost of Per-FedAvg's meta-gradient modes relative to FedAvg.

  python -m binaries.benchmark [--dataset=digits] [--use_synthetic_data]

For one workload (the run flags: dataset, clients per round, local steps,
batch sizes), measures in one run, so that machine speed cancels out:
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
from typing import Callable, Dict

from absl import app
from absl import flags

from binaries import run_flags  # Sets TF's log level before TF is imported.
from data_utils import client_datasets
from data_utils import tasks
import tensorflow as tf
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms import registry
from tff_perfed.program import experiment

_STEP_REPEATS = flags.DEFINE_integer('step_repeats', 200, 'Timed steps.')
_ROUND_REPEATS = flags.DEFINE_integer('round_repeats', 10, 'Timed rounds.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None, 'Also write here.')

HessianMode = meta_gradients.HessianMode
VARIANTS = ('fedavg',) + tuple(mode.value for mode in HessianMode)


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
  fn()  # Trace and warm up.
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_local_steps(model, batches, *, alpha: float, beta: float,
                     repeats: int) -> Dict[str, float]:
  loss_fn = learning_utils.batch_loss_fn(model)
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])

  @tf.function
  def fedavg_step(w):
    return meta_gradients.sgd_step(
        w, meta_gradients.loss_gradient(loss_fn, w, batches[0]), beta)

  def per_fedavg_step(mode):
    @tf.function
    def step(w):
      g = meta_gradients.per_fedavg_meta_gradient(
          loss_fn, w, batches, inner_learning_rate=alpha, hessian_mode=mode)
      return meta_gradients.sgd_step(w, g, beta)
    return step

  steps = {'fedavg': fedavg_step}
  for mode in HessianMode:
    steps[mode.value] = per_fedavg_step(mode)
  # tf.nest.flatten(...)[0].numpy() waits for the result.
  return {
      name: _median_seconds(
          lambda s=step: tf.nest.flatten(s(weights))[0].numpy(), repeats)
      for name, step in steps.items()
  }


def time_rounds(config, dataset, model_fn, repeats: int) -> Dict[str, float]:
  clients = client_datasets.sample_clients(
      dataset.client_ids, config.clients_per_round, 0, seed=0)
  results = {}
  for name in VARIANTS:
    variant = (config.replace(algorithm='fedavg') if name == 'fedavg' else
               config.replace(algorithm='per_fedavg',
                              hessian_mode=HessianMode(name)))
    process = registry.get(variant.algorithm).build_process(
        model_fn, variant.algorithm_params())
    data = client_datasets.training_datasets(
        dataset.train, clients, batch_sizes=variant.batch_sizes(),
        local_steps=variant.local_steps, round_num=0, seed=0)
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


def main() -> None:
  config = run_flags.config_from_flags()
  dataset = experiment.load_dataset(config)
  task = tasks.get(config.dataset)
  model_fn = lambda: task.build_model(0)
  client = dataset.client_ids[0]
  batches = tuple(client_datasets.cycled_batches(
      dataset.train.create_tf_dataset_for_client(client),
      batch_sizes=config.replace(algorithm='per_fedavg').batch_sizes(),
      num_batches=3, seed=0))
  step = time_local_steps(model_fn(), batches, alpha=config.alpha,
                          beta=config.beta, repeats=_STEP_REPEATS.value)
  rounds = time_rounds(config, dataset, model_fn, _ROUND_REPEATS.value)
  print(f'{config.dataset}: {config.clients_per_round} clients x '
        f'{config.local_steps} local steps, batch {config.batch_size}')
  print(format_report(step, rounds))
  if _OUTPUT_JSON.value:
    with open(_OUTPUT_JSON.value, 'w') as f:
      json.dump({'step_seconds': step, 'round_seconds': rounds}, f, indent=2)


if __name__ == '__main__':
  app.run(run_flags.main_wrapper(main, interrupted_message='interrupted.'),
          flags_parser=run_flags.parse_flags)
