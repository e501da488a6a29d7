"""AFML's public entry point: `tff_perfed.afml.afml_gradients` and friends.

The implementation lives in `tff_perfed.algorithms.afml_objective` (the math
of eq. (4) and Algorithm 1 as pure TF functions) and
`tff_perfed.algorithms.afml` (the `LearningProcess`); this module gathers
the names users call, so that `import tff_perfed.afml` works as well as
`tff_perfed.afml.afml_gradients(...)`.
"""

# pylint: disable=unused-import
from tff_perfed.algorithms.afml import AfmlParams
from tff_perfed.algorithms.afml import build_afml
from tff_perfed.algorithms.afml_objective import afml_client_gradients
from tff_perfed.algorithms.afml_objective import afml_gradients
from tff_perfed.algorithms.afml_objective import complexity_loss
from tff_perfed.algorithms.afml_objective import consistency_loss
from tff_perfed.algorithms.afml_objective import encoder_gradients_from_sampled
from tff_perfed.algorithms.afml_objective import sample_encoder_weights
from tff_perfed.models.split import evaluation_model
from tff_perfed.models.split import GaussianEncoder
from tff_perfed.models.split import SplitModel
