"""One training run's settings, typed and validated in one place.

`RunConfig`'s fields are the settings every algorithm shares (rounds,
clients, local steps, batch sizes, seeds, the evaluation's K and step), which
the binaries expose as flags with the same names. Each algorithm's own
settings are the fields of its params dataclass, named
`<algorithm>.<field>` (`per_fedavg.inner_learning_rate`,
`ditto.regularization`; `tff_perfed.algorithms.registry`) and held in
`algorithm_settings`; a run saves those of its own algorithm. Constructing a
config validates everything that can be checked without data: the shared
settings here, each algorithm's by its own dataclass, and the personalized
evaluation's by `PersonalizationParams`; errors are
`tff_perfed.validation.ArgumentError`s naming the setting (e.g.
`ditto.regularization`), what was expected and what was given.

Settings saved or written before the algorithms owned their settings
(`alpha`, `beta`, `hessian_mode`, `afml_alpha`, ...) still load:
`upgrade_settings` renames them as `LEGACY_SETTINGS` says.

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
    'learning_rate': 'personalization_learning_rate',
    'adaptation_draws': 'adaptation_draws',
}

# Settings of tff_perfed 0.1's runs and flags, which were shared by all
# algorithms, and the settings that now hold each one's meaning (`alpha` was
# Per-FedAvg's and AFML's inner step and the evaluation's step at once).
LEGACY_SETTINGS: Mapping[str, Tuple[str, ...]] = {
    'alpha': ('per_fedavg.inner_learning_rate', 'afml.inner_learning_rate',
              'personalization_learning_rate'),
    'beta': ('per_fedavg.outer_learning_rate', 'fedavg.client_learning_rate'),
    'hessian_mode': ('per_fedavg.hessian_mode',),
    'hessian_free_delta': ('per_fedavg.hessian_free_delta',),
    'afml_alpha': ('afml.alpha',),
    'afml_beta': ('afml.beta',),
    'head_learning_rate': ('afml.head_learning_rate',),
    'encoder_learning_rate': ('afml.encoder_learning_rate',),
    'initial_encoder_scale': ('afml.initial_encoder_scale',),
}


def upgrade_settings(settings: Mapping[str, Any]) -> Dict[str, Any]:
  """`settings` with each legacy name replaced by its new ones.

  A new name given beside the legacy one that sets it keeps its own value.
  """
  upgraded = {k: v for k, v in settings.items() if k not in LEGACY_SETTINGS}
  for old, new_names in LEGACY_SETTINGS.items():
    if old in settings:
      for name in new_names:
        upgraded.setdefault(name, settings[old])
  return upgraded


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
    local_steps: tau, local steps per round, given to every algorithm
      whose dataclass has `local_steps`.
    algorithm_settings: `{'<algorithm>.<field>': value}`, any registered
      algorithm's settings (enums as members or values); unset ones have
      their dataclass defaults. Only the run's own algorithm's are saved.
    personalization_learning_rate: The evaluation's SGD step (every
      algorithm's), also FedAvg-FT's fine-tuning step.
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
  algorithm_settings: Mapping[str, Any] = dataclasses.field(
      default_factory=dict)
  personalization_learning_rate: float = 0.02
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
    object.__setattr__(self, 'algorithm_settings',
                       self._checked_algorithm_settings())
    # The algorithms', the evaluation's and the scenario's own dataclasses
    # validate the rest.
    named = {setting.split('.')[0] for setting in self.algorithm_settings}
    for name in [self.algorithm] + [n for n in registry.names()
                                    if n in named and n != self.algorithm]:
      self.params_for(name)
    self.personalization_params()
    self.diversity_scenario()

  def _checked_algorithm_settings(self) -> Dict[str, Any]:
    """`algorithm_settings` with known names only, enums as members."""
    if not isinstance(self.algorithm_settings, Mapping):
      raise validation.ArgumentTypeError(
          'algorithm_settings', 'a mapping of <algorithm>.<field> to values',
          self.algorithm_settings)
    known = algorithm_settings()
    for name in self.algorithm_settings:
      if name not in known:
        raise _unknown_setting(name)
    return {name: known[name].from_json(value)
            for name, value in self.algorithm_settings.items()}

  @classmethod
  def from_settings(cls, settings: Mapping[str, Any]) -> 'RunConfig':
    """A config from `{setting: value}`, as flags or `to_json` name them.

    Shared settings by name, algorithms' as `<algorithm>.<field>`, and
    legacy names (`LEGACY_SETTINGS`); unknown names are an error.
    """
    return cls().replace(**upgrade_settings(settings))

  def replace(self, **changes) -> 'RunConfig':
    """A validated copy with `changes` (`<algorithm>.<field>` names too)."""
    fields = {f.name for f in dataclasses.fields(self)}
    for name in changes:
      if (name not in fields and name not in algorithm_settings() and
          name not in LEGACY_SETTINGS):
        raise _unknown_setting(name)
    changes = upgrade_settings(changes)
    merged = dict(self.algorithm_settings,
                  **changes.pop('algorithm_settings', {}))
    merged.update({k: v for k, v in changes.items() if k not in fields})
    shared = {k: v for k, v in changes.items() if k in fields}
    return dataclasses.replace(self, algorithm_settings=merged, **shared)

  def params_for(self, algorithm: str) -> Any:
    """`algorithm`'s validated hyperparameters under this run's settings."""
    entry = registry.get(algorithm)
    prefix = f'{algorithm}.'
    values = {name[len(prefix):]: value
              for name, value in self.algorithm_settings.items()
              if name.startswith(prefix)}
    return entry.params(values, {
        'local_steps': self.local_steps,
        'noise_seed': self.seed_for(SeedKind.NOISE),
    })

  def algorithm_params(self) -> Any:
    """The run's algorithm's validated hyperparameter dataclass."""
    return self.params_for(self.algorithm)

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
    """The shared settings and the run's algorithm's, as JSON values.

    Flat: `{'rounds': 100, ..., 'per_fedavg.inner_learning_rate': 0.02}`;
    enums by value. Other algorithms' settings, which do not change the
    run, are left out.
    """
    shared = {
        f.name: _json_value(getattr(self, f.name))
        for f in dataclasses.fields(self) if f.name != 'algorithm_settings'
    }
    params = self.algorithm_params()
    own = {s.name: s.to_json(getattr(params, s.field))
           for s in registry.get(self.algorithm).settings()}
    return dict(shared, **own)

  def changed_settings(self, previous: Mapping[str, Any]) -> Sequence[str]:
    """Settings whose JSON value differs from `previous`, except resumable.

    `previous` is a saved `to_json()`, perhaps with legacy names.
    """
    previous = upgrade_settings(previous)
    current = self.to_json()
    # A setting added after `previous` was written had its default then.
    defaults = {f.name: _json_value(f.default) for f in dataclasses.fields(self)
                if f.default is not dataclasses.MISSING}
    defaults.update({name: s.to_json(s.default)
                     for name, s in algorithm_settings().items()})
    return sorted(name for name in current
                  if name not in self.RESUMABLE_SETTINGS and
                  previous.get(name, defaults.get(name)) != current[name])


def _unknown_setting(name: Any) -> validation.ArgumentValueError:
  """The error for a setting no run has, listing the ones it could mean."""
  algorithm = str(name).split('.')[0]
  if '.' in str(name) and algorithm in registry.names():
    expected = f"one of {algorithm}'s settings: " + ', '.join(
        s.name for s in registry.get(algorithm).settings())
  else:
    shared = sorted(f.name for f in dataclasses.fields(RunConfig)
                    if f.name != 'algorithm_settings')
    expected = ('a shared setting (' + ', '.join(shared) + ') or '
                '<algorithm>.<field> for an algorithm among ' +
                ', '.join(registry.names()))
  return validation.ArgumentValueError('setting', expected, name)


def _json_value(value: Any) -> Any:
  return value.value if isinstance(value, enum.Enum) else value


def algorithm_settings() -> Dict[str, Any]:
  """`{'<algorithm>.<field>': Setting}` of every registered algorithm."""
  return {s.name: s for name in registry.names()
          for s in registry.get(name).settings()}
