"""Models as `tff.learning.models.FunctionalModel`s.

* `build_mlp`: the Per-FedAvg paper's MLP (80 and 60 ELU units).
* `build_emnist_cnn`: TFF's EMNIST baseline CNN.
* `build_cifar_cnn`: a small CNN for CIFAR-100 (two conv blocks, dense 128).
* `build_char_lstm`: TFF's Shakespeare character LSTM, padding masked.
* `build_*_split`: the same models cut into a Gaussian encoder and a head
  for AFML (`split.SplitModel`; `split.evaluation_model`).
* `from_keras`: a user's Keras classifier, with the built-ins' loss/metrics.
* `functional`: the shared loss, metrics and `functional_model` wrapper.
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import

from tff_perfed.models import functional
from tff_perfed.models import split
from tff_perfed.models.char_lstm import build_char_lstm
from tff_perfed.models.char_lstm import build_char_lstm_split
from tff_perfed.models.cifar_cnn import build_cifar_cnn
from tff_perfed.models.cifar_cnn import build_cifar_cnn_split
from tff_perfed.models.emnist_cnn import build_emnist_cnn
from tff_perfed.models.emnist_cnn import build_emnist_cnn_split
from tff_perfed.models.keras import from_keras
from tff_perfed.models.mlp import build_mlp
from tff_perfed.models.mlp import build_mlp_split
from tff_perfed.models.split import evaluation_model
from tff_perfed.models.split import GaussianEncoder
from tff_perfed.models.split import SplitModel

PAD_TOKEN = functional.PAD_TOKEN
