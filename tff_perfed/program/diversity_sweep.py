"""The AFML paper's comparison over the diversity scenario (section 5).

For every zeta in a list and every seed, the data is re-partitioned as the
diversity scenario (`data_utils.diversity`, seeded by the run's partition
seed) and each algorithm of the comparison set is trained with the same
budget (rounds, clients per round, local steps, batch size; a local step
reads one batch for FedAvg, (D, D', D'') for Per-FedAvg, (D, D') for AFML):

* FedAvg-FT (`fedavg`), fine-tuned at evaluation (Jiang et al. 2019);
* FedPer-Meta (`per_fedavg`, first order; Fallah et al. 2020);
* FedMAML (`per_fedavg --hessian_mode=exact`: the full MAML meta-gradient).
  The paper cites Deng et al. (2020), "Adaptive personalized federated
  learning", for FedMAML, which is APFL, not a MAML method; we read the name
  as federated MAML, i.e. Per-FedAvg with the exact Hessian term;
* AFML (`afml`);
* on request (`FAMILY_ARMS`): Ditto, pFedMe, APFL, FedRep and FedPer, with
  the run's settings of each.

Every client is evaluated. For each run the sweep records:

* `personalized_accuracy@1`, `@5` (Pers.1, Pers.5): mean over clients of
  the test accuracy after 1 and 5 personalization steps of the final model
  (every algorithm adapts what it was trained to adapt: all weights for the
  baselines, the head for AFML);
* `rounds_to_target`: the first evaluated round whose Pers.3 accuracy
  reaches `target_accuracy` (Fig. 3c/d), empty if never;
* bytes: `bytes_down_per_client_round` / `bytes_up_per_client_round` from
  the TFF type signatures of the compiled round
  (`tff_perfed.evaluation.costs.communication_bytes`), `bytes_total` for the
  whole run and `bytes_to_target` up to `rounds_to_target` (Fig. 4a);
* `flops_per_client_round`: TF's profiler on one local step (the algorithm
  registry's `local_step`) times `local_steps`; what the profiler counts is
  in `costs.flops`;
* `fairness`: the fraction of clients whose Pers.5 accuracy beats a model
  trained from the same initial weights on their own data only, with plain
  SGD (step `beta`) for `local_model_steps` steps (default: rounds times
  local steps, as many steps as the global model took), and
  `local_accuracy`, those local models' mean (Fig. 4b, 5).

Per-client numbers go to `clients.json` for the distribution plots.
"""

import csv
import dataclasses
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow_federated as tff

from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import tasks
from tff_perfed import validation
from tff_perfed.algorithms import registry
from tff_perfed.evaluation import costs
from tff_perfed.evaluation import local_models
from tff_perfed.evaluation import personalization
from tff_perfed.program import experiment
from tff_perfed.program import outputs
from tff_perfed.program import run_config as run_config_lib

HessianMode = run_config_lib.HessianMode
SeedKind = run_config_lib.SeedKind

SWEEP_FILE = 'sweep.csv'
CLIENTS_FILE = 'clients.json'
TARGET_METRIC = personalization.metric_name('accuracy', 3)  # Pers.3.
FAIRNESS_METRIC = personalization.metric_name('accuracy', 5)  # Pers.5.
COLUMNS = ('algorithm', 'zeta', 'seed', 'personalized_accuracy@1',
           'personalized_accuracy@5', 'rounds_to_target',
           'bytes_down_per_client_round', 'bytes_up_per_client_round',
           'bytes_total', 'bytes_to_target', 'flops_per_client_round',
           'fairness', 'local_accuracy', 'rounds')


@dataclasses.dataclass(frozen=True)
class SweepArm:
  """One algorithm of the comparison set.

  Attributes:
    name: Its name in `sweep.csv`'s `algorithm` column and in directories.
    label: The paper's name, for plots.
    algorithm: The registered algorithm.
    settings: Run settings it overrides (e.g. `per_fedavg.hessian_mode`).
  """
  name: str
  label: str
  algorithm: str
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


COMPARISON_SET = (
    SweepArm('fedavg_ft', 'FedAvg-FT', 'fedavg'),
    SweepArm('fedper_meta', 'FedPer-Meta', 'per_fedavg',
             {'per_fedavg.hessian_mode': HessianMode.FIRST_ORDER}),
    SweepArm('fedmaml', 'FedMAML', 'per_fedavg',
             {'per_fedavg.hessian_mode': HessianMode.EXACT}),
    SweepArm('afml', 'AFML', 'afml'),
)

# The wider family (README "Clients with state, and the wider family"), on
# request (`arms=`, the binary's --sweep_arms); their settings come from the
# run's (sweep.flags). Clients that keep state (in all but pFedMe) start
# the evaluation's adaptation from their personalized weights, newcomers
# from what the algorithm gives one (`experiment.personalized_evaluation`).
FAMILY_ARMS = tuple(
    SweepArm(name, registry.get(name).label, name)
    for name in ('ditto', 'pfedme', 'apfl', 'fedrep', 'fedper'))

# Every arm a sweep can name, by name.
ARMS = {arm.name: arm for arm in COMPARISON_SET + FAMILY_ARMS}


def select_arms(names: Sequence[str],
                argument: str = 'arms') -> Tuple[SweepArm, ...]:
  """The arms of `ARMS` called `names`, in that order.

  Raises:
    tff_perfed.validation.ArgumentValueError: Naming `argument`, on no
      names, an unknown name (the message lists the known ones) or a repeat.
  """
  names = [name.strip() for name in names]
  expected = f'a comma-separated list of arms from {", ".join(ARMS)}'
  if not names:
    raise validation.ArgumentValueError(argument, expected, '')
  for name in names:
    if name not in ARMS:
      raise validation.ArgumentValueError(argument, expected, name)
  if len(set(names)) < len(names):
    raise validation.ArgumentValueError(argument, expected + ', no repeats',
                                        ','.join(names))
  return tuple(ARMS[name] for name in names)


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """What a sweep measured.

  Attributes:
    rows: One dict per (arm, zeta, seed) with `COLUMNS`.
    clients: `{arm name: {zeta: {'personalized': [...], 'local': [...]}}}`,
      per-client Pers.5 and local accuracies pooled over seeds.
  """
  rows: List[Dict[str, Any]]
  clients: Dict[str, Dict[str, Dict[str, List[float]]]]


def build_local_model_eval(config: run_config_lib.RunConfig, steps: int):
  """The local models' computation for the run's dataset (built once)."""
  # Weights are an input.
  model = tasks.get(config.dataset, config.data_dir).build_model(0)
  return local_models.build_local_model_eval(
      model, steps=steps, learning_rate=local_learning_rate(config))


def local_learning_rate(config: run_config_lib.RunConfig) -> float:
  """The local models' SGD step: FedAvg's client step in `config`."""
  return config.params_for('fedavg').client_learning_rate


def local_model_accuracies(config: run_config_lib.RunConfig, dataset,
                           client_ids: Sequence[str], steps: int,
                           evaluate) -> List[float]:
  """Each client's model trained only on its own data, scored on its test.

  From the run's initial weights (the whole model), `steps` SGD steps with
  learning rate `beta` on batches of `batch_size` of the client's train
  split, cycled; `evaluate` is `build_local_model_eval(config, steps)`.
  """
  task = tasks.get(config.dataset, config.data_dir)
  model = task.build_model(config.seed_for(SeedKind.MODEL))
  seed = client_datasets.derive_seed(config.seed_for(SeedKind.SHUFFLE),
                                     'local_models')
  train = [
      client_datasets.cycled_batches(
          dataset.train.create_tf_dataset_for_client(client_id),
          batch_sizes=[config.batch_size], num_batches=steps,
          seed=client_datasets.derive_seed(seed, client_id))
      for client_id in client_ids
  ]
  test = [
      dataset.test.create_tf_dataset_for_client(client_id).batch(
          task.eval_batch_size) for client_id in client_ids
  ]
  trainable, non_trainable = model.initial_weights
  weights = tff.learning.models.ModelWeights(
      trainable=tuple(trainable), non_trainable=tuple(non_trainable))
  rows = local_models.local_model_rows(evaluate(weights, train, test))
  return [row[local_models.local_metric_name('accuracy')] for row in rows]


def _rounds_to_target(metrics_path: str, target: float) -> Optional[int]:
  rounds, values = [], []
  for row in outputs.read_csv_rows(metrics_path):
    if row.get(TARGET_METRIC):
      rounds.append(int(row['round_num']))
      values.append(float(row[TARGET_METRIC]))
  return costs.rounds_to_target(rounds, values, target)


def _format(value: Any) -> Any:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return ''
  return value


def _finite_mean(values: Sequence[float]) -> Optional[float]:
  """Mean over finite values (a client without test examples is NaN)."""
  finite = [v for v in values if math.isfinite(v)]
  return float(np.mean(finite)) if finite else None


def write_sweep_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  """`sweep.csv`: one row per (algorithm, zeta, seed), atomically."""

  def write(f):
    writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
    writer.writeheader()
    for row in rows:
      writer.writerow({name: _format(row.get(name)) for name in COLUMNS})

  outputs.write_atomically(path, write)


def check_sweep_settings(config: run_config_lib.RunConfig,
                         zetas: Sequence[float], seeds: Sequence[int],
                         target_accuracy: float,
                         local_model_steps: Optional[int]) -> None:
  """Validates what a sweep needs beyond each run's own settings.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the setting.
  """
  if config.personalization_steps < 5:
    raise validation.ArgumentValueError(
        'personalization_steps', 'at least 5 (the sweep reports Pers.1, '
        'Pers.3 and Pers.5)', config.personalization_steps)
  if not zetas:
    raise validation.ArgumentValueError('sweep_zetas', 'at least one zeta',
                                        zetas)
  for zeta in zetas:
    try:
      config.replace(diversity_zeta=zeta)
    except validation.ArgumentError as e:
      raise type(e)('sweep_zetas', e.expected, e.got) from e
  if not seeds:
    raise validation.ArgumentValueError('sweep_seeds', 'at least one seed',
                                        seeds)
  for seed in seeds:
    validation.require_int('sweep_seeds', seed, minimum=0)
  validation.require_real('target_accuracy', target_accuracy)
  if target_accuracy > 1:
    raise validation.ArgumentValueError('target_accuracy',
                                        'an accuracy in [0, 1]',
                                        target_accuracy)
  if local_model_steps is not None:
    validation.require_int('local_model_steps', local_model_steps, minimum=1)


def run_diversity_sweep(base_config: run_config_lib.RunConfig, *,
                        zetas: Sequence[float],
                        seeds: Sequence[int],
                        output_dir: str,
                        target_accuracy: float,
                        arms: Sequence[SweepArm] = COMPARISON_SET,
                        local_model_steps: Optional[int] = None,
                        show_progress: bool = True) -> SweepResult:
  """Trains every arm for every zeta and seed; writes `sweep.csv`.

  Runs go to `<output_dir>/zeta_<z>/seed_<s>/<arm>` and resume like any
  run; `sweep.csv` and `clients.json` are rewritten after every run.

  Args:
    base_config: The settings every run shares (its `algorithm`, `seed`,
      `diversity_zeta` and `output_dir` are replaced).
    zetas: The diversity values, each in [0, 1].
    seeds: Seeds; the runs of one (zeta, seed) share data, initial weights
      and sampled clients.
    output_dir: Parent of the runs and the sweep's files.
    target_accuracy: The Pers.3 accuracy `rounds_to_target` waits for.
    arms: The comparison set (default `COMPARISON_SET`; `select_arms`
      names any of `ARMS`).
    local_model_steps: Steps of the local models (default rounds times
      local steps).
    show_progress: Progress bars on stderr.

  Returns:
    A `SweepResult`.
  """
  check_sweep_settings(base_config, zetas, seeds, target_accuracy,
                       local_model_steps)
  if local_model_steps is None:
    local_model_steps = base_config.rounds * base_config.local_steps
  os.makedirs(output_dir, exist_ok=True)
  rows = []
  clients = {}  # {arm: {zeta: {'personalized': [...], 'local': [...]}}}
  evaluate_local = build_local_model_eval(base_config, local_model_steps)
  for zeta in zetas:
    for seed in seeds:
      scenario_config = base_config.replace(diversity_zeta=zeta, seed=seed)
      dataset = experiment.load_dataset(scenario_config)
      client_ids = dataset.client_ids
      local = local_model_accuracies(scenario_config, dataset, client_ids,
                                     local_model_steps, evaluate_local)
      for arm in arms:
        config = scenario_config.replace(
            algorithm=arm.algorithm,
            output_dir=os.path.join(output_dir, f'zeta_{zeta:g}',
                                    f'seed_{seed}', arm.name),
            **arm.settings)
        result = experiment.run_experiment(config, dataset=dataset,
                                           show_progress=show_progress)
        # Every run's summary carries its costs (`experiment.client_costs`).
        cost = {name: result.summary.get(name) for name in (
            'bytes_down_per_client_round', 'bytes_up_per_client_round',
            'flops_per_client_round')}
        rounds_to_target = _rounds_to_target(
            os.path.join(config.output_dir, outputs.METRICS_FILE),
            target_accuracy)
        per_round = (cost['bytes_down_per_client_round'] +
                     cost['bytes_up_per_client_round']) * (
                         config.clients_per_round)
        by_client = dict(zip(result.client_ids, result.client_rows))
        personalized = [by_client[c][FAIRNESS_METRIC] for c in client_ids]
        rows.append(dict(
            algorithm=arm.name,
            zeta=zeta,
            seed=seed,
            rounds=config.rounds,
            rounds_to_target=rounds_to_target,
            bytes_total=per_round * config.rounds,
            bytes_to_target=(None if rounds_to_target is None else
                             per_round * rounds_to_target),
            fairness=costs.fairness(personalized, local),
            local_accuracy=_finite_mean(local),
            # Absent when no evaluated client could be scored.
            **{name: result.summary.get(name)
               for name in ('personalized_accuracy@1',
                            'personalized_accuracy@5')},
            **cost))
        entry = clients.setdefault(arm.name, {}).setdefault(
            f'{zeta:g}', {'personalized': [], 'local': []})
        entry['personalized'] += personalized
        entry['local'] += local
        write_sweep_csv(os.path.join(output_dir, SWEEP_FILE), rows)
        outputs.write_json(os.path.join(output_dir, CLIENTS_FILE), clients)
  return SweepResult(rows=rows, clients=clients)
