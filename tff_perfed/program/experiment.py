"""One training run from a `RunConfig`: data, process, loop and outputs.

`run_experiment(config)` loads the dataset from the task registry, builds the
algorithm from the algorithm registry and the personalized evaluation, then
runs `training_loop.run_training_loop` with TFF's checkpointing and release
managers, and writes the run's files to `config.output_dir`:

* `metrics.csv`, `tensorboard/`: each round's training metrics and, when
  evaluated, the personalized summary (`tff.program` release managers);
* `checkpoints/`: the program state (`checkpoints.CheckpointManager`, TFF's
  `FileProgramStateManager` that skips a damaged checkpoint); rerunning with
  the same `output_dir` resumes from the newest intact one;
* `flags.json`: the settings; a rerun whose settings differ in anything but
  `RunConfig.RESUMABLE_SETTINGS` is refused;
* `clients.csv`, `summary.json`, `accuracy.png`: the last evaluation, per
  client and summarized, and the accuracy curves (written atomically);
* `dropped_clients.json`: `{client_id: reason}` of the clients left out
  for unusable data (`data_utils.client_checks`), when there are any;
* `partition.json`: with `diversity_zeta`, how the scenario made the
  clients (`data_utils.diversity`);
* `data_source.json`: which source the data was read from (the file, its
  digest or size, the package and recipe versions: `FederatedDataset.
  origin`), for datasets read from a file.

Everything that can be checked before training is checked before
`output_dir` is touched (beyond taking its lock), so bad input never damages
earlier results.

One run at a time holds `output_dir` (`run_lock`, the file `.run.lock`); a
second one is refused with `run_lock.OutputDirLockedError`. Under the lock,
temporary files and checkpoint directories of writes that an interruption
cut short are removed. A failed write raises `outputs.OutputWriteError`
naming the file, and a diverged round `training_loop.TrainingDivergedError`;
in both cases the checkpoints hold the last complete, finite state and the
next start resumes from it, ending as an uninterrupted run would.
"""

import csv
import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import diversity
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tasks
from tff_perfed.algorithms import registry
from tff_perfed.evaluation import costs
from tff_perfed.evaluation import personalization
from tff_perfed.evaluation import summaries
from tff_perfed.program import checkpoints
from tff_perfed.program import client_states
from tff_perfed.program import outputs
from tff_perfed.program import plots
from tff_perfed.program import run_config as run_config_lib
from tff_perfed.program import run_lock
from tff_perfed.program import training_loop
from tff_perfed.templates import client_state_process

RunConfig = run_config_lib.RunConfig
SeedKind = run_config_lib.SeedKind

# Clients per call of the personalized evaluation (see `_run_locked`).
EVAL_CLIENTS_PER_CALL = 200
# Summary prefixes of the clients that kept state and those that never
# trained, for algorithms whose clients keep state.
WITH_STATE_PREFIX = 'with_state/'
NEWCOMERS_PREFIX = 'newcomers/'

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


def _create_output_dir(output_dir: str) -> None:
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir):
      pass
  except OSError as e:
    raise RunDirectoryError(f'output_dir {output_dir!r} is not a writable '
                            f'directory ({e.strerror}).') from e


def _checkpoint_names(output_dir: str) -> List[str]:
  directory = os.path.join(output_dir, outputs.CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(name for name in os.listdir(directory)
                if name.startswith(checkpoints.PREFIX))


def prepare_output_dir(config: RunConfig) -> bool:
  """Creates `output_dir` if needed; returns whether it holds this run.

  Raises:
    RunDirectoryError: If the directory cannot be written, its settings file
      is unreadable or missing beside checkpoints (which could then not be
      checked against this run's settings), or it holds a run with
      different settings.
  """
  output_dir = config.output_dir
  _create_output_dir(output_dir)
  config_path = os.path.join(output_dir, outputs.CONFIG_FILE)
  if not os.path.exists(config_path):
    saved = _checkpoint_names(output_dir)
    if saved:
      raise RunDirectoryError(
          f'output_dir {output_dir!r} holds checkpoints ({", ".join(saved)}) '
          f'but no {outputs.CONFIG_FILE}, the settings they were made with, '
          f'so it cannot be resumed; put {config_path} back, or use a new '
          'output_dir.')
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
  """The run's dataset: checked client by client, and against the run.

  Every client's examples are checked (`data_utils.client_checks`); a client
  with unusable data is dropped with a warning and listed in the dataset's
  `dropped`, or with `strict_data` stops the run here, before `output_dir`
  is touched. With `diversity_zeta` set, the good clients' data
  re-partitioned as the diversity scenario, its description in the
  dataset's `partition`.

  Raises:
    DatasetError: If the data cannot be loaded, a client is unusable under
      `strict_data`, or too few clients are left.
  """
  task = tasks.get(config.dataset, config.data_dir)
  partition_seed = config.seed_for(SeedKind.PARTITION)
  dataset = task.load(
      data_dir=config.data_dir,
      use_synthetic_data=config.use_synthetic_data,
      seed=partition_seed)
  # Before the diversity scenario, which pools every client's examples.
  dataset = client_checks.check_clients(
      dataset, task, strict=config.strict_data).dataset
  scenario = config.diversity_scenario()
  if scenario is not None:
    dropped, origin = dataset.dropped, dataset.origin
    dataset, description = diversity.build_diversity_dataset(
        dataset, task, scenario, seed=partition_seed)
    dataset = dataclasses.replace(dataset, partition=description,
                                  dropped=dropped, origin=origin)
  if config.clients_per_round > len(dataset.client_ids):
    dropped = (f' ({len(dataset.dropped)} more were dropped for unusable '
               'data)' if dataset.dropped else '')
    raise federated_dataset.DatasetError(
        f'clients_per_round={config.clients_per_round} exceeds the '
        f'{len(dataset.client_ids)} usable clients of {config.dataset}'
        f'{dropped}.')
  return dataset


def model_builder(config: RunConfig) -> Callable[[], Any]:
  """The no-argument model function the run's algorithm trains.

  A whole `FunctionalModel`, or for an algorithm that trains a split model
  (AFML) the task's `build_split_model` (`RunConfig` checks that the task
  has one); both seeded by the model seed.
  """
  task = tasks.get(config.dataset, config.data_dir)
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
    tff_perfed.errors.RunError: If the run stops for a reason that is not
      bad input: `run_lock.OutputDirLockedError` (another run holds
      `output_dir`), `outputs.OutputWriteError` (a write failed),
      `training_loop.TrainingDivergedError`,
      `checkpoints.CheckpointsUnusableError` (no checkpoint loads).
  """
  # Refused at once, before the data is loaded and checked (which can take
  # a while on a large file), if another run holds the directory.
  run_lock.check_free(config.output_dir)
  if dataset is None:
    dataset = load_dataset(config)
  _create_output_dir(config.output_dir)
  # The directory was just written to: a failure here is the disk's.
  with outputs.write_errors_named(run_lock.lock_path(config.output_dir)):
    lock = run_lock.RunLock(config.output_dir)
  with lock:
    return _run_locked(config, dataset, show_progress)


def _metrics_release_manager(
    metrics_path: str) -> tff.program.CSVFileReleaseManager:
  """TFF's CSV release manager of `metrics.csv`, past a damaged file.

  WRITE mode rewrites the file to a temporary one and renames it: an append
  cut short by a full disk would leave half a row. A `metrics.csv` TFF
  cannot read (empty or garbage after a crash) is set aside as
  `damaged_metrics.csv` with one warning; the rounds trained from the
  checkpoint on are written again, the earlier ones are lost from the file.
  """
  def open_manager():
    return tff.program.CSVFileReleaseManager(
        metrics_path, save_mode=tff.program.CSVSaveMode.WRITE,
        key_fieldname='round_num')

  try:
    return open_manager()
  except (ValueError, KeyError, csv.Error,
          tff.program.CSVKeyFieldnameNotFoundError) as e:
    aside = os.path.join(os.path.dirname(metrics_path),
                         'damaged_' + os.path.basename(metrics_path))
    os.replace(metrics_path, aside)
    logging.warning('%s cannot be read (%s); set aside as %s, a new one is '
                    'started.', metrics_path,
                    ' '.join(str(e).split()) or type(e).__name__, aside)
    return open_manager()


def client_costs(config: RunConfig,
                 dataset: federated_dataset.FederatedDataset,
                 process: Optional[Any] = None) -> Dict[str, float]:
  """Bytes per client and round, and FLOPs of a client's round if counted.

  FLOPs: the profiler's count of one local step on a client's batches, times
  `local_steps`. A model with loops (the character LSTM's `tf.scan`) is
  counted outside its loop bodies only, with a warning: a lower bound.
  Bytes: from the TFF type signatures of the round (`process`, built from
  `config` if not given), as `costs.communication_bytes` counts them.
  """
  algorithm = registry.get(config.algorithm)
  model_fn = model_builder(config)
  params = config.algorithm_params()
  if process is None:
    process = algorithm.build_process(model_fn, params)
  communication = costs.communication_bytes(process)
  batches = client_datasets.one_step_batches(
      dataset.train, dataset.client_ids[0], config.batch_sizes())
  result = dict(
      bytes_down_per_client_round=communication.down_bytes_per_client,
      bytes_up_per_client_round=communication.up_bytes_per_client)
  total = 0
  for step, weights, count in algorithm.client_round_steps(
      model_fn(), params, config.local_steps):
    weights = tf.nest.map_structure(tf.convert_to_tensor, weights)
    try:
      step_flops = costs.flops(step, weights, batches)
    except ValueError as e:
      logging.warning('FLOPs of %s on %s counted outside loops only (a '
                      'lower bound): %s', config.algorithm, config.dataset, e)
      try:
        step_flops = costs.flops(step, weights, batches,
                                 ignore_control_flow=True)
      except ValueError as e_again:
        # E.g. AFML's second-order step through the LSTM calls functions
        # the profiler does not see into: no count rather than a wrong one.
        logging.warning('FLOPs of %s on %s not counted: %s',
                        config.algorithm, config.dataset, e_again)
        return result
    total += step_flops * count
  result['flops_per_client_round'] = total
  return result


def sampled_clients(config: RunConfig,
                    dataset: federated_dataset.FederatedDataset
                   ) -> Callable[[int], List[str]]:
  """`round_num -> ids` of the clients sampled for that round."""
  sampling_seed = config.seed_for(SeedKind.SAMPLING)
  return lambda round_num: list(client_datasets.sample_clients(
      dataset.client_ids, config.clients_per_round, round_num, sampling_seed))


def training_data(config: RunConfig,
                  dataset: federated_dataset.FederatedDataset
                 ) -> Callable[[int], List[Any]]:
  """`round_num -> datasets` of the clients sampled for that round."""
  shuffle_seed = config.seed_for(SeedKind.SHUFFLE)
  batch_sizes = config.batch_sizes()
  client_ids_fn = sampled_clients(config, dataset)

  def training_data_fn(round_num):
    return client_datasets.training_datasets(
        dataset.train, client_ids_fn(round_num), batch_sizes=batch_sizes,
        local_steps=config.local_steps, round_num=round_num,
        seed=shuffle_seed)

  return training_data_fn


def has_client_states(process: Any) -> bool:
  """Whether `process`'s clients keep state across rounds."""
  return isinstance(process, client_state_process.ClientStateLearningProcess)


def client_state_store(process: Any, output_dir: str
                      ) -> Optional[client_states.ClientStateStore]:
  """The run's store of client states, or None if its clients keep none."""
  if not has_client_states(process):
    return None
  structure = process.initial_client_state(
      process.get_model_weights(process.initialize()))
  return client_states.ClientStateStore(
      os.path.join(output_dir, outputs.CLIENT_STATES_DIR), structure)


def _group_summaries(rows: List[Dict[str, float]],
                     has_state: List[bool]) -> Dict[str, float]:
  """Means of the clients with state and of the newcomers, apart."""
  result = {}
  for prefix, wanted in ((WITH_STATE_PREFIX, True),
                         (NEWCOMERS_PREFIX, False)):
    summary = summaries.summarize(
        [row for row, flag in zip(rows, has_state) if flag == wanted])
    for name, value in summary.items():
      if not name.endswith(('/p10', '/worst')):
        result[prefix + name] = value
  return result


def personalized_evaluation(
    config: RunConfig, dataset: federated_dataset.FederatedDataset,
    process: Any = None,
    store: Optional[client_states.ClientStateStore] = None,
) -> Tuple[List[str], Callable[[Any], List[Dict[str, float]]]]:
  """The run's evaluated clients and `model_weights -> rows`, one per client.

  The rows are `personalization.per_client_metrics`'s, in the order of the
  ids. Clients are evaluated `EVAL_CLIENTS_PER_CALL` at a time, their
  datasets made for the call: one call over all of EMNIST's 3,400 writers
  would hold every client's pipelines and results at once. A single
  chunk's datasets are made once for the whole run. The scores do not
  depend on the chunking (each client's batches derive from its id).

  With a `store` (a `process` whose clients keep state), the function takes
  the server state instead, and each client starts from its own
  `personalized_weights(state, client_state)`; a client that never trained
  has no state and is scored with what the algorithm gives a newcomer, the
  personalized weights of `initial_client_state(global model)`.
  """
  task = tasks.get(config.dataset, config.data_dir)
  algorithm = registry.get(config.algorithm)
  evaluation_params = config.personalization_params()
  evaluate = personalization.build_personalization_eval(
      algorithm.evaluation_model(model_builder(config)()),
      personalization_steps=evaluation_params.personalization_steps,
      learning_rate=evaluation_params.learning_rate,
      adaptation_draws=evaluation_params.adaptation_draws,
      weights_at_clients=store is not None)
  if store is not None:
    personalize = client_state_process.build_personalized_weights_at_clients(
        process)
    rounds = training_loop.ClientStateRounds(process, store, lambda r: [],
                                             lambda: 0)
  evaluation_seed = config.seed_for(SeedKind.EVALUATION)
  eval_ids = list(dataset.client_ids)
  if 0 < config.num_eval_clients < len(eval_ids):
    eval_ids = client_datasets.sample_clients(
        eval_ids, config.num_eval_clients, round_num=0, seed=evaluation_seed)

  def eval_datasets(chunk_ids):
    return client_datasets.personalization_datasets(
        dataset.train, dataset.test, chunk_ids,
        batch_size=config.batch_size,
        num_adaptation_batches=(config.personalization_steps *
                                config.adaptation_draws),
        test_batch_size=task.eval_batch_size, seed=evaluation_seed)

  chunks = [eval_ids[i:i + EVAL_CLIENTS_PER_CALL]
            for i in range(0, len(eval_ids), EVAL_CLIENTS_PER_CALL)]
  kept_datasets = eval_datasets(chunks[0]) if len(chunks) == 1 else None

  def evaluate_clients(weights_or_state):
    results = []
    for chunk_ids in chunks:
      train, test = kept_datasets or eval_datasets(chunk_ids)
      weights = weights_or_state
      if store is not None:
        weights = personalize(weights_or_state,
                              rounds.client_states(weights_or_state,
                                                   chunk_ids))
      results.extend(evaluate(weights, train, test))
    return personalization.per_client_metrics(results)

  return eval_ids, evaluate_clients


def _run_locked(config: RunConfig,
                dataset: federated_dataset.FederatedDataset,
                show_progress: bool) -> RunResult:
  """`run_experiment`'s body, in an `output_dir` this process holds."""
  resuming = prepare_output_dir(config)
  output_dir = config.output_dir
  with outputs.write_errors_named(output_dir):
    removed = outputs.remove_leftover_temporary_files(output_dir)
  if removed:
    logging.warning('removed the temporary files of interrupted writes in '
                    '%s: %s', output_dir, ', '.join(removed))
  if not resuming:
    outputs.write_json(os.path.join(output_dir, outputs.CONFIG_FILE),
                       config.to_json())

  dropped_path = os.path.join(output_dir, outputs.DROPPED_CLIENTS_FILE)
  if dataset.dropped:
    outputs.write_json(dropped_path, dict(dataset.dropped))
  elif os.path.exists(dropped_path):
    # Written by an earlier start whose data had bad clients; none now.
    with outputs.write_errors_named(dropped_path):
      os.remove(dropped_path)
  if dataset.partition is not None:
    outputs.write_json(os.path.join(output_dir, outputs.PARTITION_FILE),
                       dataset.partition)
  if dataset.origin is not None:
    outputs.write_json(os.path.join(output_dir, outputs.DATA_SOURCE_FILE),
                       dataset.origin)

  algorithm = registry.get(config.algorithm)
  model_fn = model_builder(config)
  process = algorithm.build_process(model_fn, config.algorithm_params())
  store = client_state_store(process, output_dir)
  eval_ids, evaluate_clients = personalized_evaluation(config, dataset,
                                                       process, store)
  training_data_fn = training_data(config, dataset)

  last_evaluation = {}

  def evaluate_fn(weights_or_state, round_num):
    rows = evaluate_clients(weights_or_state)
    summary = summaries.summarize(rows)
    if store is not None:
      summary.update(_group_summaries(
          rows, [store.has_state(client_id) for client_id in eval_ids]))
    left_out = summaries.exclusion_message(eval_ids, rows)
    if left_out:
      if not summary.get(summaries.NUM_EVALUATED_CLIENTS):
        left_out = f'no client could be scored: {left_out}'
      logging.warning('evaluation at round %d: %s', round_num, left_out)
    last_evaluation.update(round=round_num, rows=rows, summary=summary)
    return summary

  metrics_path = os.path.join(output_dir, outputs.METRICS_FILE)
  tensorboard_dir = os.path.join(output_dir, outputs.TENSORBOARD_DIR)
  with outputs.write_errors_named(metrics_path):
    csv_manager = _metrics_release_manager(metrics_path)
  with outputs.write_errors_named(tensorboard_dir):
    tensorboard_manager = tff.program.TensorBoardReleaseManager(
        tensorboard_dir)
  run_costs = client_costs(config, dataset, process)
  bytes_per_round = config.clients_per_round * (
      run_costs['bytes_down_per_client_round'] +
      run_costs['bytes_up_per_client_round'])

  def costs_until(round_num):
    # Round 0 is the initial model's evaluation: nothing moved yet.
    return dict(run_costs, bytes_total=round_num * bytes_per_round)

  release_managers = [
      training_loop.WithRoundMetricsReleaseManager([
          training_loop.WriteGuardedReleaseManager(csv_manager, metrics_path),
          training_loop.WriteGuardedReleaseManager(tensorboard_manager,
                                                   tensorboard_dir),
      ], costs_until),
  ]
  progress = None
  if show_progress:
    progress = training_loop.ProgressReleaseManager(
        config.rounds, description=config.algorithm,
        shown_metrics=_PROGRESS_METRICS)
    release_managers.append(progress)
  state_manager = checkpoints.CheckpointManager(
      os.path.join(output_dir, outputs.CHECKPOINTS_DIR), keep_total=2,
      client_states=store)
  if state_manager.removed_interrupted_saves:
    logging.warning('removed the checkpoints of interrupted saves in %s: %s',
                    state_manager.root_dir,
                    ', '.join(state_manager.removed_interrupted_saves))
  try:
    state = training_loop.run_training_loop(
        process,
        training_data_fn=training_data_fn,
        total_rounds=config.rounds,
        evaluate_fn=evaluate_fn,
        eval_every=config.eval_every,
        state_manager=state_manager,
        rounds_per_checkpoint=config.rounds_per_checkpoint,
        release_managers=release_managers,
        client_ids_fn=sampled_clients(config, dataset),
        client_state_store=store)
  finally:
    if progress is not None:
      progress.close()

  # More than `config.rounds` when resumed with fewer rounds than were done
  # (the training loop warns).
  rounds_done = max(config.rounds, state_manager.loaded_version or 0)
  if last_evaluation.get('round') != rounds_done:
    # Resumed after the last round: score the final model again.
    evaluate_fn(state if store is not None else
                process.get_model_weights(state), rounds_done)
  rows, summary = last_evaluation['rows'], last_evaluation['summary']
  outputs.write_clients_csv(
      os.path.join(output_dir, outputs.CLIENTS_FILE), eval_ids, rows)
  plots.plot_run_accuracy(
      metrics_path, os.path.join(output_dir, outputs.ACCURACY_PLOT_FILE),
      config.personalization_steps, f'{config.algorithm} on {config.dataset}')
  summary = dict(summary, **costs_until(rounds_done))
  outputs.write_json(os.path.join(output_dir, outputs.SUMMARY_FILE), summary)
  return RunResult(summary=summary, client_ids=list(eval_ids),
                   client_rows=rows)
