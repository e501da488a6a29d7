r"""Trains FedAvg or Per-FedAvg and evaluates per-client personalization.

  python -m binaries.train --algorithm=per_fedavg --dataset=digits \
      --rounds=100 --output_dir=runs/digits_per_fedavg

Writes to --output_dir: metrics.csv and tensorboard/ (per-round metrics,
through tff.program release managers), checkpoints/ (program state; a rerun
with the same --output_dir resumes from the last round), clients.csv (the
last evaluation, per client), accuracy.png, and summary.json (final metric
name -> number). Bad input prints one line to stderr and exits with 2
before anything in --output_dir is touched.
"""

import asyncio
import csv
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags
from absl import logging

from binaries import common  # Sets TF's log level before TF is imported.
from data_utils import client_datasets
from data_utils import federated_data
import numpy as np
import tensorflow_federated as tff
import tqdm
import tff_perfed
from tff_perfed import personalization
from tff_perfed import runtime

_ALGORITHM = flags.DEFINE_string(
    'algorithm', 'per_fedavg',
    f'One of {", ".join(a.value for a in common.Algorithm)}.')
_HESSIAN_MODE = flags.DEFINE_string(
    'hessian_mode', 'first_order', 'Per-FedAvg meta-gradient: one of '
    f'{", ".join(m.value for m in tff_perfed.HessianMode)}.')
_DATASET = flags.DEFINE_string(
    'dataset', 'digits', f'One of {", ".join(federated_data.DATASET_NAMES)}.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Directory with TFF\'s emnist_all.sqlite / '
    'shakespeare.sqlite (not needed for digits or synthetic data).')
_USE_SYNTHETIC_DATA = flags.DEFINE_bool(
    'use_synthetic_data', False, 'Random data of the dataset\'s structure.')
_ROUNDS = flags.DEFINE_integer('rounds', 100, 'Total training rounds.')
_CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', 10,
                                          'Clients sampled per round.')
_LOCAL_STEPS = flags.DEFINE_integer('local_steps', 4,
                                    'tau: local steps per round.')
_ALPHA = flags.DEFINE_float(
    'alpha', 0.02, 'Inner (adaptation) step: Per-FedAvg\'s alpha, and the '
    'step of the personalization SGD at evaluation for every algorithm.')
_BETA = flags.DEFINE_float(
    'beta', 0.05, 'Local step: Per-FedAvg\'s beta (eq. 8), FedAvg\'s client '
    'SGD learning rate.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 10, 'Size of D.')
_BATCH_SIZE_PRIME = flags.DEFINE_integer('batch_size_prime', None,
                                         "Size of D'; default --batch_size.")
_BATCH_SIZE_DOUBLE_PRIME = flags.DEFINE_integer(
    'batch_size_double_prime', None, "Size of D''; default --batch_size.")
_HESSIAN_FREE_DELTA = flags.DEFINE_float(
    'hessian_free_delta', 1e-3, 'd of the Hessian-free central difference.')
_PERSONALIZATION_STEPS = flags.DEFINE_integer(
    'personalization_steps', 5, 'K: evaluate after k = 0..K adaptation steps.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 10,
                                   'Evaluate every this many rounds.')
_NUM_EVAL_CLIENTS = flags.DEFINE_integer(
    'num_eval_clients', 0, 'Clients evaluated (a fixed seeded sample); '
    '0 evaluates every client.')
_SEED = flags.DEFINE_integer(
    'seed', 0, 'Seeds the model init, data split, client sampling and '
    'shuffling, each through its own derived seed.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/train',
                                  'Where results and checkpoints go.')

# Flags that may change when a run is resumed; any other change is refused,
# since it would silently mix two experiments in one output directory.
_RESUMABLE_FLAGS = ('rounds', 'eval_every', 'output_dir', 'data_dir')
_CONFIG_FILE = 'flags.json'


class UsageError(Exception):
  """Bad input; the message is the one line the user sees."""


def _flag_values() -> Dict[str, Any]:
  names = ('algorithm', 'hessian_mode', 'dataset', 'data_dir',
           'use_synthetic_data', 'rounds', 'clients_per_round', 'local_steps',
           'alpha', 'beta', 'batch_size', 'batch_size_prime',
           'batch_size_double_prime', 'hessian_free_delta',
           'personalization_steps', 'eval_every', 'num_eval_clients', 'seed',
           'output_dir')
  values = {name: flags.FLAGS[name].value for name in names}
  for name in ('batch_size_prime', 'batch_size_double_prime'):
    if values[name] is None:
      values[name] = values['batch_size']
  return values


def _validate(config: Dict[str, Any]) -> None:
  """Checks every flag that does not need the data; raises UsageError."""

  def one_of(name, choices):
    if config[name] not in choices:
      raise UsageError(f'--{name}={config[name]!r} is not supported; expected '
                       f'one of {", ".join(choices)}.')

  one_of('algorithm', [a.value for a in common.Algorithm])
  one_of('hessian_mode', [m.value for m in tff_perfed.HessianMode])
  one_of('dataset', list(federated_data.DATASET_NAMES))
  for name in ('rounds', 'clients_per_round', 'local_steps', 'batch_size',
               'batch_size_prime', 'batch_size_double_prime', 'eval_every'):
    if config[name] <= 0:
      raise UsageError(f'--{name} must be a positive integer, got '
                       f'{config[name]}.')
  for name in ('alpha', 'beta', 'hessian_free_delta'):
    if not (math.isfinite(config[name]) and config[name] > 0):
      raise UsageError(f'--{name} must be a positive number, got '
                       f'{config[name]}.')
  for name in ('personalization_steps', 'num_eval_clients'):
    if config[name] < 0:
      raise UsageError(f'--{name} must be >= 0, got {config[name]}.')
  if not config['output_dir']:
    raise UsageError('--output_dir must name a directory.')


def _prepare_output_dir(config: Dict[str, Any]) -> bool:
  """Creates/validates --output_dir; returns True if it holds a run."""
  output_dir = config['output_dir']
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir):
      pass
  except OSError as e:
    raise UsageError(f'--output_dir={output_dir!r} is not a writable '
                     f'directory ({e.strerror}).') from e
  config_path = os.path.join(output_dir, _CONFIG_FILE)
  if not os.path.exists(config_path):
    return False
  try:
    with open(config_path) as f:
      previous = json.load(f)
  except (OSError, ValueError) as e:
    raise UsageError(f'{config_path} is unreadable ({e}); use a new '
                     '--output_dir.') from e
  changed = sorted(
      name for name in config
      if name not in _RESUMABLE_FLAGS and previous.get(name) != config[name])
  if changed:
    detail = ', '.join(f'--{n}={previous.get(n)!r}' for n in changed)
    raise UsageError(f'--output_dir={output_dir!r} holds a run with {detail}; '
                     'resume it with the same flags or use a new --output_dir.')
  return True


def _write_atomically(path: str, write_fn) -> None:
  directory = os.path.dirname(path)
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  try:
    with os.fdopen(fd, 'w', newline='') as f:
      write_fn(f)
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def _flatten(prefix: str, value, out: Dict[str, float]) -> None:
  if isinstance(value, dict):
    for key, item in value.items():
      _flatten(f'{prefix}/{key}' if prefix else str(key), item, out)
  elif np.ndim(value) == 0:
    out[prefix] = float(value)


def _plot(csv_path: str, png_path: str, personalization_steps: int,
          title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  with open(csv_path, newline='') as f:
    rows = list(csv.DictReader(f))
  figure, axis = plt.subplots(figsize=(6, 4))
  for k in sorted({0, 1, personalization_steps}):
    name = personalization.ACCURACY.format(k)
    points = [(int(r['round_num']), float(r[name]))
              for r in rows if r.get(name) not in (None, '')]
    if points:
      axis.plot(*zip(*points), marker='o', label=f'after {k} step(s)')
  axis.set_xlabel('round')
  axis.set_ylabel('mean personalized test accuracy')
  axis.set_title(title)
  axis.grid(alpha=0.3)
  axis.legend()
  figure.tight_layout()
  figure.savefig(png_path + '.tmp.png', dpi=100)
  plt.close(figure)
  os.replace(png_path + '.tmp.png', png_path)


def run(config: Dict[str, Any]) -> Dict[str, float]:
  """Trains and evaluates per `config` (the flag values); returns summary."""
  _validate(config)
  try:
    dataset = federated_data.load_federated_dataset(
        config['dataset'],
        data_dir=config['data_dir'],
        use_synthetic_data=config['use_synthetic_data'],
        seed=client_datasets.derive_seed(config['seed'], 'partition'))
  except federated_data.DatasetError as e:
    raise UsageError(str(e)) from e
  client_ids = dataset.client_ids
  if config['clients_per_round'] > len(client_ids):
    raise UsageError(f'--clients_per_round={config["clients_per_round"]} '
                     f'exceeds the {len(client_ids)} clients of '
                     f'{config["dataset"]}.')
  resuming = _prepare_output_dir(config)
  output_dir = config['output_dir']
  if not resuming:
    _write_atomically(os.path.join(output_dir, _CONFIG_FILE),
                      lambda f: json.dump(config, f, indent=2, sort_keys=True))

  algorithm = common.Algorithm(config['algorithm'])
  model_fn = common.model_fn_for(
      dataset, client_datasets.derive_seed(config['seed'], 'model'))
  process = common.build_process(
      algorithm,
      model_fn,
      alpha=config['alpha'],
      beta=config['beta'],
      hessian_mode=tff_perfed.HessianMode(config['hessian_mode']),
      local_steps=config['local_steps'],
      hessian_free_delta=config['hessian_free_delta'])
  evaluate = tff_perfed.build_personalization_eval(
      model_fn(),
      personalization_steps=config['personalization_steps'],
      learning_rate=config['alpha'])
  eval_ids = client_ids
  if 0 < config['num_eval_clients'] < len(client_ids):
    eval_ids = client_datasets.sample_clients(
        client_ids, config['num_eval_clients'], round_num=0,
        seed=client_datasets.derive_seed(config['seed'], 'eval_clients'))
  eval_train, eval_test = common.evaluation_datasets(
      dataset,
      eval_ids,
      batch_size=config['batch_size'],
      personalization_steps=config['personalization_steps'],
      seed=config['seed'])

  state_manager = tff.program.FileProgramStateManager(
      os.path.join(output_dir, 'checkpoints'), keep_total=2, keep_first=False)
  csv_path = os.path.join(output_dir, 'metrics.csv')
  release_managers = [
      tff.program.CSVFileReleaseManager(csv_path, key_fieldname='round_num'),
      tff.program.TensorBoardReleaseManager(
          os.path.join(output_dir, 'tensorboard')),
  ]
  state = process.initialize()
  start_round = 0
  if resuming:
    loaded, version = asyncio.run(state_manager.load_latest(state))
    if loaded is not None:
      state, start_round = loaded, version
      logging.info('Resuming %s from round %d.', output_dir, start_round)

  batch_sizes = [config['batch_size'], config['batch_size_prime'],
                 config['batch_size_double_prime']]
  rows: List[Dict[str, float]] = []
  summary: Dict[str, float] = {}
  progress = tqdm.tqdm(
      total=config['rounds'], initial=start_round, desc=config['algorithm'],
      unit='round', file=sys.stderr, disable=None)
  for round_num in range(start_round + 1, config['rounds'] + 1):
    started = time.monotonic()
    sampled = client_datasets.sample_clients(
        client_ids, config['clients_per_round'], round_num,
        client_datasets.derive_seed(config['seed'], 'sampling'))
    output = process.next(
        state,
        common.training_datasets(
            dataset,
            sampled,
            algorithm=algorithm,
            batch_sizes=batch_sizes,
            local_steps=config['local_steps'],
            round_num=round_num,
            seed=config['seed']))
    state = output.state
    metrics: Dict[str, float] = {}
    _flatten('', output.metrics['client_work'], metrics)
    metrics['round_seconds'] = time.monotonic() - started
    if round_num % config['eval_every'] == 0 or round_num == config['rounds']:
      rows = personalization.per_client_metrics(
          evaluate(process.get_model_weights(state), eval_train, eval_test))
      summary = personalization.summarize(rows)
      metrics.update(summary)
    for manager in release_managers:
      asyncio.run(manager.release(metrics, key=round_num))
    asyncio.run(state_manager.save(state, round_num))
    progress.set_postfix(
        {k: f'{v:.3f}' for k, v in metrics.items()
         if k in ('train/loss', 'train/accuracy', 'personalized_accuracy@0',
                  'personalized_accuracy@1')})
    progress.update(1)
  progress.close()

  if not rows:  # Resumed after the last round: evaluate the final model.
    rows = personalization.per_client_metrics(
        evaluate(process.get_model_weights(state), eval_train, eval_test))
    summary = personalization.summarize(rows)

  def write_clients(f):
    writer = csv.DictWriter(f, fieldnames=['client_id', *rows[0]])
    writer.writeheader()
    for client_id, row in zip(eval_ids, rows):
      writer.writerow({'client_id': client_id, **row})

  _write_atomically(os.path.join(output_dir, 'clients.csv'), write_clients)
  _plot(csv_path, os.path.join(output_dir, 'accuracy.png'),
        config['personalization_steps'],
        f'{config["algorithm"]} on {config["dataset"]}')
  _write_atomically(
      os.path.join(output_dir, 'summary.json'),
      lambda f: json.dump(summary, f, indent=2, sort_keys=True))
  return summary


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    print(f'error: unexpected arguments {" ".join(argv[1:])!r}; all options '
          'are --flags.', file=sys.stderr)
    sys.exit(2)
  common.quiet_logging()
  runtime.set_local_execution_context()
  try:
    summary = run(_flag_values())
  except UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print('interrupted; the last completed round is checkpointed.',
          file=sys.stderr)
    runtime.exit_now(130)
  finally:
    runtime.shutdown_workers()
  for name in sorted(summary):
    if '/' not in name:
      print(f'{name}: {summary[name]:.4f}')


if __name__ == '__main__':
  app.run(main)
