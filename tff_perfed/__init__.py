"""tff_perfed: personalized federated learning on TensorFlow Federated.

Public API:
  * `build_per_fedavg`, `PerFedAvgParams`, `HessianMode`: Per-FedAvg
    (Fallah et al. 2020) as a `tff.learning.templates.LearningProcess`.
  * `per_fedavg_meta_gradient`: its meta-gradient (eq. 9), a pure TF
    function.
  * `build_fedavg`, `FedAvgParams`: the FedAvg baseline (TFF's
    `build_weighted_fed_avg`).
  * `build_afml`, `AfmlParams`: AFML (adaptive federated meta-learning) on
    models split into a Gaussian encoder and a head (`models.SplitModel`);
    `afml.afml_gradients`: its gradients (eq. 4, Algorithm 1), a pure TF
    function.
  * `build_ditto`, `DittoParams`: Ditto (Li et al. 2021), whose clients
    keep personal models across rounds, as a
    `templates.ClientStateLearningProcess`.
  * `build_pfedme`, `PFedMeParams`: pFedMe (Dinh et al. 2020), Moreau
    envelopes, as a `LearningProcess`.
  * `build_apfl`, `ApflParams`: APFL (Deng et al. 2020), a personal model
    mixed with the global one, as a `templates.ClientStateLearningProcess`.
  * `build_fedrep`, `build_fedper`: FedRep (Collins et al. 2021) and FedPer
    (Arivazhagan et al. 2019), a shared body and personal heads, on split
    models.
  * `build_personalization_eval`: per-client scores after k = 0..K steps.
  * `models`: built-in models and `models.from_keras` for Keras models.
  * `runtime`: where computations run; `runtime.set_execution_context(name)`
    with `cpp` (TFF's C++ worker), `in_process` (this process's TensorFlow,
    GPUs included) or `remote` (TFF workers on other machines).

Sub-packages: `algorithms` (one module per algorithm and their registry),
`models`, `evaluation`, `program` (the training loop and run outputs),
`runtime`, `data_utils` (the datasets; the repository's `data_utils/`) and
`binaries` (the programs; the repository's `binaries/`, installed as
sub-packages so that a user's own modules of those names cannot shadow
them).

Importing any part of the package that uses TFF (`tff_perfed.runtime`, which
every sub-package imports first, or a name below) replaces TFF's
import-time default context: by `in_process` when TensorFlow sees a GPU,
otherwise by an equivalent C++ context whose worker never outlives the
program (see `tff_perfed.runtime.default_context`).

The names below load on first use (PEP 562), so that `import
tff_perfed.binaries.exits`, every binary's first statement, loads no
TensorFlow: an interrupt during TensorFlow's import must already find the
binary's signal handlers (`tff_perfed.binaries.exits`).
"""

import importlib
from typing import Any, List

# Public name -> the module that defines it, or that is it (a module's own
# last name).
_PUBLIC = {
    'afml': 'tff_perfed.afml',
    'models': 'tff_perfed.models',
    'runtime': 'tff_perfed.runtime',
    'validation': 'tff_perfed.validation',
    'meta_gradients': 'tff_perfed.algorithms.meta_gradients',
    'AfmlParams': 'tff_perfed.algorithms.afml',
    'build_afml': 'tff_perfed.algorithms.afml',
    'build_ditto': 'tff_perfed.algorithms.ditto',
    'DittoParams': 'tff_perfed.algorithms.ditto',
    'build_pfedme': 'tff_perfed.algorithms.pfedme',
    'PFedMeParams': 'tff_perfed.algorithms.pfedme',
    'build_apfl': 'tff_perfed.algorithms.apfl',
    'ApflParams': 'tff_perfed.algorithms.apfl',
    'build_fedrep': 'tff_perfed.algorithms.personal_heads',
    'build_fedper': 'tff_perfed.algorithms.personal_heads',
    'build_fedavg': 'tff_perfed.algorithms.fedavg',
    'FedAvgParams': 'tff_perfed.algorithms.fedavg',
    'HessianMode': 'tff_perfed.algorithms.meta_gradients',
    'per_fedavg_meta_gradient': 'tff_perfed.algorithms.meta_gradients',
    'build_per_fedavg': 'tff_perfed.algorithms.per_fedavg',
    'PerFedAvgParams': 'tff_perfed.algorithms.per_fedavg',
    'build_personalization_eval': 'tff_perfed.evaluation.personalization',
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
  if name not in _PUBLIC:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(_PUBLIC[name])
  value = module if module.__name__.endswith('.' + name) else getattr(
      module, name)
  globals()[name] = value  # Later lookups skip __getattr__.
  return value


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(_PUBLIC))
