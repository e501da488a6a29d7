"""tff_perfed: personalized federated learning on TensorFlow Federated.

Public API:
  * `HessianMode`, `per_fedavg_meta_gradient`: the Per-FedAvg meta-gradient
    (Fallah et al. 2020, eq. 9) as a pure TF function.
  * `build_per_fedavg`: Per-FedAvg as a `tff.learning.templates.LearningProcess`.
  * `build_fedavg`: the FedAvg baseline (TFF's `build_weighted_fed_avg`).
  * `build_personalization_eval`: per-client accuracy/loss after k steps.
  * `runtime.set_local_execution_context`: local TFF context whose worker
    never outlives the program.
"""

from tff_perfed import meta_gradients
from tff_perfed import models
from tff_perfed.meta_gradients import HessianMode
from tff_perfed.meta_gradients import per_fedavg_meta_gradient
from tff_perfed.per_fedavg import build_per_fedavg
from tff_perfed.fedavg import build_fedavg
from tff_perfed.personalization import build_personalization_eval
