"""The algorithms a run can name, each owning its settings.

An algorithm's hyperparameter dataclass is the one place its settings are
written (`tff_perfed.settings`): every field becomes the run setting and
flag `<algorithm>.<field>` (`--per_fedavg.inner_learning_rate`), with the
field's default, validation and docstring line, except the fields in
`RUN_FIELDS`, which the run gives every algorithm that has them. Each entry
here adds how to build the algorithm's process, which batches one local step
reads, and whether it trains a whole model or one split into an encoder and
a head (AFML), and so which model the evaluation adapts. Adding an algorithm
is its module under `tff_perfed/algorithms/` plus one entry in `ALGORITHMS`.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow_federated as tff

from tff_perfed import settings as settings_lib
from tff_perfed import validation
from tff_perfed.algorithms import afml
from tff_perfed.algorithms import apfl
from tff_perfed.algorithms import ditto
from tff_perfed.algorithms import fedavg
from tff_perfed.algorithms import per_fedavg
from tff_perfed.algorithms import personal_heads
from tff_perfed.algorithms import pfedme
from tff_perfed.models import split

# Fields a run gives every algorithm whose dataclass has them, rather than
# settings of the algorithm's own: the shared budget of local steps (so that
# a comparison's arms get the same), and AFML's noise seed, which the run
# derives from its seed like every kind of randomness.
RUN_FIELDS = ('local_steps', 'noise_seed')


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """One registered algorithm.

  Attributes:
    name: The name runs use (`--algorithm`).
    label: Its paper's name, for tables and figures.
    summary: One line for help texts.
    params_type: The frozen hyperparameter dataclass; it validates itself,
      and every field has a default and a line in its docstring.
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
    round_steps: `round_steps(model, params) -> [(step, weights, count)]`,
      a client round's steps when they are not `local_steps` of
      `local_step` (Ditto's personal steps, FedRep's head and body steps).
    whole_split_model: For a split model, the evaluation adapts body and
      head together (`personal_heads.body_and_head_model`, the layout of
      FedRep's and FedPer's personalized weights) rather than AFML's head
      on the encoder's mean.
  """
  name: str
  label: str
  summary: str
  params_type: type
  build: Callable[..., tff.learning.templates.LearningProcess]
  batch_sizes: Callable[[Any], Tuple[int, ...]]
  local_step: Callable[[Any, Any], Tuple[Callable[..., Any], Any]]
  uses_split_model: bool = False
  round_steps: Optional[Callable[[Any, Any], List[Tuple[Any, Any, int]]]] = (
      None)
  whole_split_model: bool = False

  def settings(self) -> List[settings_lib.Setting]:
    """The algorithm's run settings, `<name>.<field>`, in field order."""
    return settings_lib.settings_of(self.params_type, self.name,
                                    exclude=RUN_FIELDS)

  def params(self, values: Mapping[str, Any],
             run_fields: Mapping[str, Any]) -> Any:
    """The validated hyperparameters.

    Args:
      values: `{field: value}` for fields that are settings; others keep
        their defaults.
      run_fields: `{field: value}` of the `RUN_FIELDS` the run gives; those
        the dataclass lacks are ignored.

    Raises:
      tff_perfed.validation.ArgumentError: Naming `<name>.<field>`, or the
        run's own setting (e.g. `local_steps`).
    """
    names = {f.name for f in dataclasses.fields(self.params_type)}
    return settings_lib.build_params(
        self.params_type, self.name, values,
        {k: v for k, v in run_fields.items() if k in names})

  def build_process(self, model_fn: Callable[[], Any],
                    params: Any) -> tff.learning.templates.LearningProcess:
    """The process; `model_fn` returns the model kind the entry trains."""
    return self.build(model_fn, **dataclasses.asdict(params))

  def evaluation_model(self, model: Any) -> tff.learning.models.FunctionalModel:
    """The model personalization adapts, on `get_model_weights(state)`.

    A whole model as is; for a split model, the head with the encoder at its
    mean (`split.evaluation_model`), which is what AFML's inner loop adapts,
    or with `whole_split_model` body and head as one model.
    """
    if not self.uses_split_model:
      return model
    if self.whole_split_model:
      return personal_heads.body_and_head_model(model.encoder, model.head)
    return split.evaluation_model(model)

  def client_round_steps(self, model: Any, params: Any,
                         local_steps: int) -> List[Tuple[Any, Any, int]]:
    """`[(step, weights, count)]`: the pure-TF steps of one client round."""
    if self.round_steps is not None:
      return self.round_steps(model, params)
    step, weights = self.local_step(model, params)
    return [(step, weights, local_steps)]


def _on_split_model(builder):
  """`builder(encoder_fn, head_fn, **params)` as `build(model_fn, **params)`."""

  def build(model_fn: Callable[[], split.SplitModel], **params):
    model = model_fn()  # Built once for both halves.
    return builder(lambda: model.encoder, lambda: model.head, **params)

  return build


def _split_round_steps(parts):
  """FedRep's and FedPer's `round_steps` from `parts(params)`."""
  return lambda model, params: personal_heads.round_steps(
      model, params.learning_rate, parts(params))


def _registry(*algorithms: Algorithm) -> Dict[str, Algorithm]:
  return {algorithm.name: algorithm for algorithm in algorithms}


ALGORITHMS: Mapping[str, Algorithm] = _registry(
    Algorithm(
        name='fedavg',
        label='FedAvg',
        summary='FedAvg: client SGD, server mean (TFF\'s '
        'build_weighted_fed_avg).',
        params_type=fedavg.FedAvgParams,
        build=fedavg.build_fedavg,
        batch_sizes=lambda run: (run.batch_size,),
        local_step=fedavg.local_step),
    Algorithm(
        name='per_fedavg',
        label='Per-FedAvg',
        summary='Per-FedAvg (Fallah et al. 2020): local meta-steps of '
        'eq. (8), inner step alpha, outer step beta.',
        params_type=per_fedavg.PerFedAvgParams,
        build=per_fedavg.build_per_fedavg,
        batch_sizes=lambda run: (run.batch_size, run.batch_size_prime,
                                 run.batch_size_double_prime),
        local_step=per_fedavg.local_step),
    Algorithm(
        name='afml',
        label='AFML',
        summary='AFML: a Gaussian encoder and a head adapted by one inner '
        'step; eq. (4)\'s regularizers; server steps on head and encoder.',
        params_type=afml.AfmlParams,
        build=_on_split_model(afml.build_afml),
        # A support batch D, then a query batch D'.
        batch_sizes=lambda run: (run.batch_size, run.batch_size_prime),
        local_step=afml.local_step,
        uses_split_model=True),
    Algorithm(
        name='pfedme',
        label='pFedMe',
        summary='pFedMe (Dinh et al. 2020): each local step solves the '
        'Moreau envelope for theta and moves w toward it; server mixing '
        'beta.',
        params_type=pfedme.PFedMeParams,
        build=pfedme.build_pfedme,
        batch_sizes=lambda run: (run.batch_size,),
        local_step=pfedme.local_step),
    Algorithm(
        name='ditto',
        label='Ditto',
        summary='Ditto (Li et al. 2021): FedAvg for w; each client keeps a '
        'personal model v trained on F_k(v) + lambda/2 ||v - w||^2.',
        params_type=ditto.DittoParams,
        build=ditto.build_ditto,
        batch_sizes=lambda run: (run.batch_size,),
        local_step=lambda model, params: ditto.round_steps(model, params)[0][:2],
        round_steps=ditto.round_steps),
    Algorithm(
        name='apfl',
        label='APFL',
        summary='APFL (Deng et al. 2020): each client keeps v and mixes it '
        'with w by its mixing weight alpha, learnt or fixed.',
        params_type=apfl.ApflParams,
        build=apfl.build_apfl,
        batch_sizes=lambda run: (run.batch_size,),
        local_step=apfl.local_step),
    Algorithm(
        name='fedrep',
        label='FedRep',
        summary='FedRep (Collins et al. 2021): personal heads trained with '
        'the body fixed, then the body; only the body is averaged.',
        params_type=personal_heads.FedRepParams,
        build=_on_split_model(personal_heads.build_fedrep),
        batch_sizes=lambda run: (run.batch_size,),
        local_step=lambda model, params: personal_heads.round_steps(
            model, params.learning_rate, [('head', 1)])[0][:2],
        uses_split_model=True,
        round_steps=_split_round_steps(
            lambda p: [('head', p.head_steps), ('body', p.body_steps)]),
        whole_split_model=True),
    Algorithm(
        name='fedper',
        label='FedPer',
        summary='FedPer (Arivazhagan et al. 2019): body and personal head '
        'trained together; only the body is averaged.',
        params_type=personal_heads.FedPerParams,
        build=_on_split_model(personal_heads.build_fedper),
        batch_sizes=lambda run: (run.batch_size,),
        local_step=lambda model, params: personal_heads.round_steps(
            model, params.learning_rate, [('both', 1)])[0][:2],
        uses_split_model=True,
        round_steps=_split_round_steps(
            lambda p: [('both', p.local_steps)]),
        whole_split_model=True),
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
