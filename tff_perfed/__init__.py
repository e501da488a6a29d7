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
  * `build_personalization_eval`: per-client scores after k = 0..K steps.
  * `models`: built-in models and `models.from_keras` for Keras models.
  * `runtime`: where computations run; `runtime.set_execution_context(name)`
    with `cpp` (TFF's C++ worker), `in_process` (this process's TensorFlow,
    GPUs included) or `remote` (TFF workers on other machines).

Sub-packages: `algorithms` (one module per algorithm and their registry),
`models`, `evaluation`, `program` (the training loop and run outputs) and
`runtime`.

Importing the package replaces TFF's import-time default context: by
`in_process` when TensorFlow sees a GPU, otherwise by an equivalent C++
context whose worker never outlives the program (see
`tff_perfed.runtime.default_context`).
"""

from tff_perfed import runtime

runtime.own_default_context()

# pylint: disable=g-import-not-at-top,wrong-import-position
from tff_perfed import afml
from tff_perfed import models
from tff_perfed import validation
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms.afml import AfmlParams
from tff_perfed.algorithms.afml import build_afml
from tff_perfed.algorithms.fedavg import build_fedavg
from tff_perfed.algorithms.fedavg import FedAvgParams
from tff_perfed.algorithms.meta_gradients import HessianMode
from tff_perfed.algorithms.meta_gradients import per_fedavg_meta_gradient
from tff_perfed.algorithms.per_fedavg import build_per_fedavg
from tff_perfed.algorithms.per_fedavg import PerFedAvgParams
from tff_perfed.evaluation.personalization import build_personalization_eval
