"""One training run's settings, typed and validated in one place.

`RunConfig`'s fields are the settings the binaries expose as flags, with the
same names. Constructing one validates everything that can be checked
without data: the run's own settings here, the algorithm's hyperparameters
by its own dataclass (`Algorithm.params_from_run`), and the personalized
evaluation's by `PersonalizationParams`; errors are
`tff_perfed.validation.ArgumentError`s naming the setting (e.g. `alpha`),
what was expected and what was given.

Randomness: every kind has its own seed. By default each is derived from
`seed` (so one number reproduces a run and different kinds never share a
stream); any of them can be pinned, e.g. `partition_seed` to keep the data
split fixed while varying the training randomness.
"""

import dataclasses
import enum
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import diversity
from tff_perfed.data_utils import tasks
from tff_perfed.data_utils import tfds_source
from tff_perfed import validation
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms import registry
from tff_perfed.evaluation import personalization

HessianMode = meta_gradients.HessianMode

# How the run settings reach the personalized evaluation's parameters.
PERSONALIZATION_SETTINGS = {
    'personalization_steps': 'personalization_steps',
    'learning_rate': 'alpha',
    'adaptation_draws': 'adaptation_draws',
}


# How the run settings reach the diversity scenario's parameters.
DIVERSITY_SETTINGS = {
    'zeta': 'diversity_zeta',
    'concentration': 'dirichlet_concentration',
}


class SeedKind(enum.Enum):
  """The kinds of randomness in a run, each with its own seed."""
  MODEL = 'model'  # Initial weights.
  PARTITION = 'partition'  # Data split and synthetic data.
  SAMPLING = 'sampling'  # Clients sampled each round.
  SHUFFLE = 'shuffle'  # Training batches (per round and client).
  EVALUATION = 'evaluation'  # Evaluated clients and adaptation batches.
  NOISE = 'noise'  # AFML's encoder-weight and representation noise.


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Settings of one training run; see the README's flag table.

  Attributes:
    algorithm: A name in `tff_perfed.algorithms.registry`.
    dataset: A name in `data_utils.tasks`, or `tfds:NAME` (a TFDS dataset,
      `data_utils.tfds_source`).
    data_dir: Directory with the dataset's file, if it needs one (for
      `tfds:NAME`, the TFDS data directory); None: the dataset's default
      place (TFF's or Keras's cache, this package's, TFDS's).
    use_synthetic_data: Random data of the dataset's structure.
    rounds: Total training rounds (a rerun with more rounds resumes).
    clients_per_round: Clients sampled per round, without replacement.
    local_steps: tau, local steps per round.
    alpha: The inner (adaptation) step: Per-FedAvg's alpha, AFML's eta on
      the head, and the personalization step of every algorithm's
      evaluation.
    beta: Per-FedAvg's outer step; FedAvg's client learning rate.
    afml_alpha: AFML's weight of L_ENC and L_CONS (eq. 4).
    afml_beta: AFML's weight of L_CMPX (eq. 4).
    head_learning_rate: AFML's server step eta_1 on the head.
    encoder_learning_rate: AFML's server step eta_2 on the encoder's tau.
    initial_encoder_scale: AFML's sigma of every encoder weight at start.
    hessian_mode: Per-FedAvg's meta-gradient (`HessianMode`).
    hessian_free_delta: d of the Hessian-free central difference.
    batch_size: Size of D (and of every FedAvg batch).
    batch_size_prime: Size of D'; None means `batch_size`.
    batch_size_double_prime: Size of D''; None means `batch_size`.
    personalization_steps: K, evaluated after k = 0..K adaptation steps.
    adaptation_draws: R, adaptations averaged per client at evaluation.
    diversity_zeta: None keeps the dataset's own split; a value in [0, 1]
      re-partitions it as the AFML paper's diversity scenario
      (`data_utils.diversity`), with 1 - zeta of the clients relabelled and
      augmented.
    dirichlet_concentration: The scenario's Dirichlet parameter.
    eval_every: Rounds between evaluations (round 0 and the last round are
      always evaluated).
    num_eval_clients: A fixed seeded sample of clients to evaluate; 0 = all.
    rounds_per_checkpoint: Rounds between checkpoints (the last round is
      always checkpointed).
    seed: The seed every kind of randomness derives its own from.
    model_seed, partition_seed, sampling_seed, shuffle_seed,
      evaluation_seed, noise_seed: Pin one kind's seed (None: derived from
      `seed`).
    output_dir: Where results and checkpoints go.
    strict_data: A client whose examples fail the data checks
      (`data_utils.client_checks`) stops the run before training; by
      default it is dropped with a warning and listed in the output
      directory.
  """
  algorithm: str = 'per_fedavg'
  dataset: str = 'digits'
  data_dir: Optional[str] = None
  use_synthetic_data: bool = False
  rounds: int = 100
  clients_per_round: int = 10
  local_steps: int = 4
  alpha: float = 0.02
  beta: float = 0.05
  hessian_mode: HessianMode = HessianMode.FIRST_ORDER
  hessian_free_delta: float = 1e-3
  afml_alpha: float = 1e-3
  afml_beta: float = 1e-6
  head_learning_rate: float = 0.1
  encoder_learning_rate: float = 0.1
  initial_encoder_scale: float = 1e-3
  batch_size: int = 10
  batch_size_prime: Optional[int] = None
  batch_size_double_prime: Optional[int] = None
  personalization_steps: int = 5
  adaptation_draws: int = 1
  diversity_zeta: Optional[float] = None
  dirichlet_concentration: float = 0.5
  eval_every: int = 10
  num_eval_clients: int = 0
  rounds_per_checkpoint: int = 1
  seed: int = 0
  model_seed: Optional[int] = None
  partition_seed: Optional[int] = None
  sampling_seed: Optional[int] = None
  shuffle_seed: Optional[int] = None
  evaluation_seed: Optional[int] = None
  noise_seed: Optional[int] = None
  output_dir: str = 'runs/train'
  strict_data: bool = False

  # Settings a resumed run may change: they do not alter what was computed.
  # `strict_data` only decides whether bad clients stop the run: a run that
  # goes on trains the same clients either way.
  RESUMABLE_SETTINGS = ('rounds', 'eval_every', 'rounds_per_checkpoint',
                        'output_dir', 'data_dir', 'strict_data')

  def __post_init__(self):
    validation.require_choice('algorithm', self.algorithm, registry.names())
    tasks.require_known(self.dataset)
    # A TFDS dataset's task is only read when the run loads it; every one has
    # a split model.
    if (registry.get(self.algorithm).uses_split_model and
        not tfds_source.is_tfds_name(self.dataset) and
        tasks.get(self.dataset).build_split_model is None):
      split_tasks = [name for name in tasks.names()
                     if tasks.get(name).build_split_model is not None]
      raise validation.ArgumentValueError(
          'dataset', f'one of {", ".join(split_tasks)} (the datasets whose '
          f'model is split for {self.algorithm})', self.dataset)
    for name in ('batch_size_prime', 'batch_size_double_prime'):
      if getattr(self, name) is None:
        object.__setattr__(self, name, self.batch_size)
    for name in ('rounds', 'clients_per_round', 'local_steps', 'batch_size',
                 'batch_size_prime', 'batch_size_double_prime',
                 'adaptation_draws', 'eval_every', 'rounds_per_checkpoint'):
      validation.require_int(name, getattr(self, name), minimum=1)
    for name in ('personalization_steps', 'num_eval_clients', 'seed'):
      validation.require_int(name, getattr(self, name), minimum=0)
    for kind in SeedKind:
      value = getattr(self, f'{kind.value}_seed')
      if value is not None:
        validation.require_int(f'{kind.value}_seed', value, minimum=0)
    if not isinstance(self.output_dir, str) or not self.output_dir:
      raise validation.ArgumentValueError('output_dir', 'a directory path',
                                          self.output_dir)
    if not isinstance(self.strict_data, bool):
      raise validation.ArgumentTypeError('strict_data', 'a bool',
                                         self.strict_data)
    if self.data_dir is not None and not isinstance(self.data_dir, str):
      raise validation.ArgumentTypeError('data_dir', 'a directory path',
                                         self.data_dir)
    # The algorithm's, the evaluation's and the scenario's own dataclasses
    # validate the rest.
    self.algorithm_params()
    self.personalization_params()
    self.diversity_scenario()

  @classmethod
  def from_settings(cls, settings: Mapping[str, Any]) -> 'RunConfig':
    """A config from `{setting: value}`; unknown names are an error."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - fields)
    if unknown:
      raise validation.ArgumentValueError(
          'settings', f'names among {", ".join(sorted(fields))}',
          ', '.join(unknown))
    return cls(**settings)

  def replace(self, **changes) -> 'RunConfig':
    """A validated copy with `changes`."""
    return dataclasses.replace(self, **changes)

  def algorithm_params(self) -> Any:
    """The algorithm's validated hyperparameter dataclass."""
    return registry.get(self.algorithm).params_from_run(self)

  def personalization_params(self) -> personalization.PersonalizationParams:
    """The evaluation's validated parameters."""
    return validation.params_from_settings(
        personalization.PersonalizationParams, PERSONALIZATION_SETTINGS, self,
        'personalized evaluation')

  def diversity_scenario(self) -> Optional[diversity.DiversityScenario]:
    """The validated diversity scenario, or None for the dataset's split."""
    if self.diversity_zeta is None:
      return None
    return validation.params_from_settings(
        diversity.DiversityScenario, DIVERSITY_SETTINGS, self,
        'diversity scenario')

  @property
  def noise_seed_value(self) -> int:
    """The seed of AFML's noise (`seed_for(SeedKind.NOISE)`)."""
    return self.seed_for(SeedKind.NOISE)

  def batch_sizes(self) -> Tuple[int, ...]:
    """Sizes of the batches one local step of the algorithm reads."""
    return tuple(registry.get(self.algorithm).batch_sizes(self))

  def seed_for(self, kind: SeedKind) -> int:
    """The seed of one kind of randomness (pinned, or derived from `seed`)."""
    pinned = getattr(self, f'{kind.value}_seed')
    if pinned is not None:
      return pinned
    return client_datasets.derive_seed(self.seed, kind.value)

  def to_json(self) -> Dict[str, Any]:
    """The settings as JSON values (enums by value)."""
    return {
        name: value.value if isinstance(value, enum.Enum) else value
        for name, value in dataclasses.asdict(self).items()
    }

  def changed_settings(self, previous: Mapping[str, Any]) -> Sequence[str]:
    """Settings whose JSON value differs from `previous`, except resumable."""
    current = self.to_json()
    # A setting added after `previous` was written had its default then.
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    defaults = {name: value.value if isinstance(value, enum.Enum) else value
                for name, value in defaults.items()}
    return sorted(name for name in current
                  if name not in self.RESUMABLE_SETTINGS and
                  previous.get(name, defaults[name]) != current[name])
