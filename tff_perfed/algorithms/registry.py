"""The algorithms a run can name, and how a run's settings reach each one.

A run (`tff_perfed.program.RunConfig`, or the binaries' flags) has one set of
settings: `alpha`, `beta`, `hessian_mode`, `local_steps`, the batch sizes...
Each entry here says which of them become which field of the algorithm's
hyperparameter dataclass, how to build its `LearningProcess`, which batches
one local step reads, and whether it trains a whole model or one split into
an encoder and a head (AFML), and so which model the evaluation adapts. Adding an algorithm is its module under
`tff_perfed/algorithms/` plus one entry in `ALGORITHMS`.
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import afml
from tff_perfed.algorithms import fedavg
from tff_perfed.algorithms import per_fedavg
from tff_perfed.models import split


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """One registered algorithm.

  Attributes:
    name: The name runs use (`--algorithm`).
    summary: One line for help texts.
    params_type: The frozen hyperparameter dataclass; it validates itself.
    settings: Maps each field of `params_type` that a run sets to the run
      setting it comes from (fields left out keep their defaults).
    build: `build(model_fn, **dataclasses.asdict(params))`, the public
      builder, returning a `tff.learning.templates.LearningProcess`.
    batch_sizes: `batch_sizes(run)`, the sizes of the batches one local step
      reads, in the order it reads them.
    local_step: `local_step(model, params) -> (step, weights)`: one client
      step `step(weights, batches)` as pure TF on the batches of
      `batch_sizes`, with example weights; what cost comparisons count.
    uses_split_model: The builder's `model_fn` returns a
      `tff_perfed.models.SplitModel` (a task's `build_split_model`) instead
      of a `FunctionalModel`.
  """
  name: str
  summary: str
  params_type: type
  settings: Mapping[str, str]
  build: Callable[..., tff.learning.templates.LearningProcess]
  batch_sizes: Callable[[Any], Tuple[int, ...]]
  local_step: Callable[[Any, Any], Tuple[Callable[..., Any], Any]]
  uses_split_model: bool = False

  def params_from_run(self, run: Any) -> Any:
    """The validated hyperparameters a run's settings give.

    Raises:
      tff_perfed.validation.ArgumentError: Naming the run setting (e.g.
        `alpha`) that gave an invalid hyperparameter.
    """
    return validation.params_from_settings(self.params_type, self.settings,
                                           run, self.name)

  def build_process(self, model_fn: Callable[[], Any],
                    params: Any) -> tff.learning.templates.LearningProcess:
    """The process; `model_fn` returns the model kind the entry trains."""
    return self.build(model_fn, **dataclasses.asdict(params))

  def evaluation_model(self, model: Any) -> tff.learning.models.FunctionalModel:
    """The model personalization adapts, on `get_model_weights(state)`.

    A whole model as is; for a split model, the head with the encoder at its
    mean (`split.evaluation_model`), which is what AFML's inner loop adapts.
    """
    return split.evaluation_model(model) if self.uses_split_model else model


def _build_afml(model_fn: Callable[[], split.SplitModel], **params):
  model = model_fn()  # Built once for both halves.
  return afml.build_afml(lambda: model.encoder, lambda: model.head, **params)


def _registry(*algorithms: Algorithm) -> Dict[str, Algorithm]:
  return {algorithm.name: algorithm for algorithm in algorithms}


ALGORITHMS: Mapping[str, Algorithm] = _registry(
    Algorithm(
        name='fedavg',
        summary='FedAvg: client SGD with step beta, server mean '
        '(TFF\'s build_weighted_fed_avg).',
        params_type=fedavg.FedAvgParams,
        settings={'client_learning_rate': 'beta'},
        build=fedavg.build_fedavg,
        batch_sizes=lambda run: (run.batch_size,),
        local_step=fedavg.local_step),
    Algorithm(
        name='per_fedavg',
        summary='Per-FedAvg (Fallah et al. 2020): local meta-steps of '
        'eq. (8) with inner step alpha and outer step beta.',
        params_type=per_fedavg.PerFedAvgParams,
        settings={
            'inner_learning_rate': 'alpha',
            'outer_learning_rate': 'beta',
            'hessian_mode': 'hessian_mode',
            'local_steps': 'local_steps',
            'hessian_free_delta': 'hessian_free_delta',
        },
        build=per_fedavg.build_per_fedavg,
        batch_sizes=lambda run: (run.batch_size, run.batch_size_prime,
                                 run.batch_size_double_prime),
        local_step=per_fedavg.local_step),
    Algorithm(
        name='afml',
        summary='AFML: a Gaussian encoder and a head adapted by one inner '
        'step alpha; eq. (4) regularizers weighted by afml_alpha, afml_beta; '
        'server steps head_learning_rate, encoder_learning_rate.',
        params_type=afml.AfmlParams,
        settings={
            'inner_learning_rate': 'alpha',
            'alpha': 'afml_alpha',
            'beta': 'afml_beta',
            'head_learning_rate': 'head_learning_rate',
            'encoder_learning_rate': 'encoder_learning_rate',
            'local_steps': 'local_steps',
            'initial_encoder_scale': 'initial_encoder_scale',
            'noise_seed': 'noise_seed_value',
        },
        build=_build_afml,
        # A support batch D, then a query batch D'.
        batch_sizes=lambda run: (run.batch_size, run.batch_size_prime),
        local_step=afml.local_step,
        uses_split_model=True),
)


def names() -> Sequence[str]:
  """Registered algorithm names, in registration order."""
  return list(ALGORITHMS)


def get(name: str) -> Algorithm:
  """The registered algorithm `name`.

  Raises:
    tff_perfed.validation.ArgumentValueError: If no algorithm has that name;
      the message lists the known ones.
  """
  validation.require_choice('algorithm', name, ALGORITHMS)
  return ALGORITHMS[name]
