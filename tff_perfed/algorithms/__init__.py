"""Federated learning algorithms, each a `tff.learning` `LearningProcess`.

* `per_fedavg`: Per-FedAvg (Fallah et al. 2020), `build_per_fedavg` and
  `PerFedAvgParams`; its meta-gradient (eq. 9) is in `meta_gradients`.
* `fedavg`: the FedAvg baseline, `build_fedavg` and `FedAvgParams`.
* `learning_utils`: helpers every builder shares.
* `registry`: the algorithms a run can name.
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import
