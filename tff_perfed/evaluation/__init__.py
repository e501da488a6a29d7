"""Personalized evaluation and its summaries.

* `personalization`: `build_personalization_eval`, the federated computation
  scoring each client's adapted model after k = 0..K steps.
* `summaries`: over clients (mean, 10th percentile, worst) and over seeds
  (spread, paired difference with a confidence interval).
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import
