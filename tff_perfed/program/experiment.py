"""One training run from a `RunConfig`: data, process, loop and outputs.

`run_experiment(config)` loads the dataset from the task registry, builds the
algorithm from the algorithm registry and the personalized evaluation, then
runs `training_loop.run_training_loop` with TFF's checkpointing and release
managers, and writes the run's files to `config.output_dir`:

* `metrics.csv`, `tensorboard/`: each round's training metrics and, when
  evaluated, the personalized summary (`tff.program` release managers);
* `checkpoints/`: the program state (`tff.program.FileProgramStateManager`);
  rerunning with the same `output_dir` resumes from the last one;
* `flags.json`: the settings; a rerun whose settings differ in anything but
  `RunConfig.RESUMABLE_SETTINGS` is refused;
* `clients.csv`, `summary.json`, `accuracy.png`: the last evaluation, per
  client and summarized, and the accuracy curves (written atomically);
* `partition.json`: with `diversity_zeta`, how the scenario made the
  clients (`data_utils.diversity`).

Everything that can be checked before training is checked before
`output_dir` is touched, so bad input never damages earlier results.
"""

import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

import tensorflow_federated as tff

from data_utils import client_datasets
from data_utils import diversity
from data_utils import federated_dataset
from data_utils import tasks
from tff_perfed.algorithms import registry
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import run_config as run_config_lib
from tff_perfed.program import training_loop

RunConfig = run_config_lib.RunConfig
SeedKind = run_config_lib.SeedKind

# Shown next to the progress bar.
_PROGRESS_METRICS = ('train/loss', 'train/accuracy',
                     'personalized_accuracy@0', 'personalized_accuracy@1')


class RunDirectoryError(ValueError):
  """`output_dir` cannot hold this run; the message is one line."""


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What a finished run reports (also written to its `output_dir`).

  Attributes:
    summary: The last evaluation summarized over clients
      (`summaries.summarize`), as in `summary.json`.
    client_ids: The evaluated clients.
    client_rows: Their metrics, as in `clients.csv`.
  """
  summary: Dict[str, float]
  client_ids: List[str]
  client_rows: List[Dict[str, float]]


def prepare_output_dir(config: RunConfig) -> bool:
  """Creates `output_dir` if needed; returns whether it holds this run.

  Raises:
    RunDirectoryError: If the directory cannot be written, its settings file
      is unreadable, or it holds a run with different settings.
  """
  output_dir = config.output_dir
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir):
      pass
  except OSError as e:
    raise RunDirectoryError(f'output_dir {output_dir!r} is not a writable '
                            f'directory ({e.strerror}).') from e
  config_path = os.path.join(output_dir, outputs.CONFIG_FILE)
  if not os.path.exists(config_path):
    return False
  try:
    with open(config_path) as f:
      previous = json.load(f)
  except (OSError, ValueError) as e:
    raise RunDirectoryError(f'{config_path} is unreadable ({e}); use a new '
                            'output_dir.') from e
  changed = config.changed_settings(previous)
  if changed:
    current = config.to_json()
    detail = ', '.join(f'{name}={previous.get(name)!r} there, '
                       f'{current[name]!r} now' for name in changed)
    raise RunDirectoryError(
        f'output_dir {output_dir!r} holds a run with other settings '
        f'({detail}); resume it with the same settings or use a new '
        'output_dir.')
  return True


def load_dataset(config: RunConfig) -> federated_dataset.FederatedDataset:
  """The run's dataset, checked against `clients_per_round`.

  With `diversity_zeta` set, the task's data re-partitioned as the
  diversity scenario, its description in the dataset's `partition`.

  Raises:
    DatasetError: If the data cannot be loaded or has too few clients.
  """
  task = tasks.get(config.dataset)
  partition_seed = config.seed_for(SeedKind.PARTITION)
  dataset = task.load(
      data_dir=config.data_dir,
      use_synthetic_data=config.use_synthetic_data,
      seed=partition_seed)
  scenario = config.diversity_scenario()
  if scenario is not None:
    dataset, description = diversity.build_diversity_dataset(
        dataset, task, scenario, seed=partition_seed)
    dataset = dataclasses.replace(dataset, partition=description)
  if config.clients_per_round > len(dataset.client_ids):
    raise federated_dataset.DatasetError(
        f'clients_per_round={config.clients_per_round} exceeds the '
        f'{len(dataset.client_ids)} clients of {config.dataset}.')
  return dataset


def model_builder(config: RunConfig) -> Callable[[], Any]:
  """The no-argument model function the run's algorithm trains.

  A whole `FunctionalModel`, or for an algorithm that trains a split model
  (AFML) the task's `build_split_model` (`RunConfig` checks that the task
  has one); both seeded by the model seed.
  """
  task = tasks.get(config.dataset)
  model_seed = config.seed_for(SeedKind.MODEL)
  if registry.get(config.algorithm).uses_split_model:
    return lambda: task.build_split_model(model_seed)
  return lambda: task.build_model(model_seed)


def run_experiment(config: RunConfig, *,
                   dataset: Optional[federated_dataset.FederatedDataset] = None,
                   show_progress: bool = True) -> RunResult:
  """Trains and evaluates per `config`, resuming from its `output_dir`.

  Args:
    config: The run's settings (validated when constructed).
    dataset: The run's dataset if already loaded (`load_dataset(config)`);
      runs that share a dataset (e.g. two algorithms on one seed) load it
      once.
    show_progress: Show a progress bar on stderr (when it is a terminal).

  Returns:
    A `RunResult`.

  Raises:
    DatasetError: If the data cannot be loaded.
    RunDirectoryError: If `output_dir` cannot hold the run.
  """
  if dataset is None:
    dataset = load_dataset(config)
  resuming = prepare_output_dir(config)
  output_dir = config.output_dir
  if not resuming:
    outputs.write_json(os.path.join(output_dir, outputs.CONFIG_FILE),
                       config.to_json())

  if dataset.partition is not None:
    outputs.write_json(os.path.join(output_dir, outputs.PARTITION_FILE),
                       dataset.partition)

  task = tasks.get(config.dataset)
  algorithm = registry.get(config.algorithm)
  model_fn = model_builder(config)
  process = algorithm.build_process(model_fn, config.algorithm_params())
  evaluation_params = config.personalization_params()
  evaluate = personalization.build_personalization_eval(
      algorithm.evaluation_model(model_fn()),
      personalization_steps=evaluation_params.personalization_steps,
      learning_rate=evaluation_params.learning_rate,
      adaptation_draws=evaluation_params.adaptation_draws)

  client_ids = dataset.client_ids
  evaluation_seed = config.seed_for(SeedKind.EVALUATION)
  eval_ids = client_ids
  if 0 < config.num_eval_clients < len(client_ids):
    eval_ids = client_datasets.sample_clients(
        client_ids, config.num_eval_clients, round_num=0, seed=evaluation_seed)
  eval_train, eval_test = client_datasets.personalization_datasets(
      dataset.train,
      dataset.test,
      eval_ids,
      batch_size=config.batch_size,
      num_adaptation_batches=(config.personalization_steps *
                              config.adaptation_draws),
      test_batch_size=task.eval_batch_size,
      seed=evaluation_seed)

  sampling_seed = config.seed_for(SeedKind.SAMPLING)
  shuffle_seed = config.seed_for(SeedKind.SHUFFLE)
  batch_sizes = config.batch_sizes()

  def training_data_fn(round_num):
    sampled = client_datasets.sample_clients(
        client_ids, config.clients_per_round, round_num, sampling_seed)
    return client_datasets.training_datasets(
        dataset.train, sampled, batch_sizes=batch_sizes,
        local_steps=config.local_steps, round_num=round_num,
        seed=shuffle_seed)

  last_evaluation = {}

  def evaluate_fn(model_weights, round_num):
    rows = personalization.per_client_metrics(
        evaluate(model_weights, eval_train, eval_test))
    summary = summaries.summarize(rows)
    last_evaluation.update(round=round_num, rows=rows, summary=summary)
    return summary

  metrics_path = os.path.join(output_dir, outputs.METRICS_FILE)
  release_managers = [
      tff.program.CSVFileReleaseManager(metrics_path,
                                        key_fieldname='round_num'),
      tff.program.TensorBoardReleaseManager(
          os.path.join(output_dir, outputs.TENSORBOARD_DIR)),
  ]
  progress = None
  if show_progress:
    progress = training_loop.ProgressReleaseManager(
        config.rounds, description=config.algorithm,
        shown_metrics=_PROGRESS_METRICS)
    release_managers.append(progress)
  state_manager = tff.program.FileProgramStateManager(
      os.path.join(output_dir, outputs.CHECKPOINTS_DIR), keep_total=2,
      keep_first=False)
  try:
    state = training_loop.run_training_loop(
        process,
        training_data_fn=training_data_fn,
        total_rounds=config.rounds,
        evaluate_fn=evaluate_fn,
        eval_every=config.eval_every,
        state_manager=state_manager,
        rounds_per_checkpoint=config.rounds_per_checkpoint,
        release_managers=release_managers)
  finally:
    if progress is not None:
      progress.close()

  if last_evaluation.get('round') != config.rounds:
    # Resumed after the last round: score the final model again.
    evaluate_fn(process.get_model_weights(state), config.rounds)
  rows, summary = last_evaluation['rows'], last_evaluation['summary']
  outputs.write_clients_csv(
      os.path.join(output_dir, outputs.CLIENTS_FILE), eval_ids, rows)
  plots.plot_run_accuracy(
      metrics_path, os.path.join(output_dir, outputs.ACCURACY_PLOT_FILE),
      config.personalization_steps, f'{config.algorithm} on {config.dataset}')
  outputs.write_json(os.path.join(output_dir, outputs.SUMMARY_FILE), summary)
  return RunResult(summary=summary, client_ids=list(eval_ids),
                   client_rows=rows)
