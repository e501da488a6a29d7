"""TFF's EMNIST baseline CNN (McMahan et al. 2017), without dropout.

TFF's `create_original_fedavg_cnn_model`: two 5x5 conv + max-pool, dense 512.
`build_emnist_cnn_split` cuts it for AFML after the second convolution
(`tff_perfed.models.split`).
"""

import tensorflow_federated as tff

from tff_perfed.models import conv_net
from tff_perfed.models import split

_ARCHITECTURE = dict(image_shape=(28, 28, 1), kernel_size=5, dense_units=512)


def build_emnist_cnn(*, num_classes: int,
                     seed: int) -> tff.learning.models.FunctionalModel:
  """TFF's EMNIST baseline CNN (McMahan et al. 2017), without dropout.

  conv 5x5x32 (same, ReLU) -> max-pool 2 -> conv 5x5x64 (same, ReLU) ->
  max-pool 2 -> dense 512 (ReLU) -> dense num_classes
  (`conv_net.build_conv_net`).

  Args:
    num_classes: 10 for EMNIST digits, 62 for all characters.
    seed: Seed of the Glorot-uniform initialization.

  Returns:
    A `FunctionalModel` on `x` [batch, 28, 28, 1] float32, `y` [batch] int32.
  """
  return conv_net.build_conv_net(num_classes=num_classes, seed=seed,
                                 **_ARCHITECTURE)


def build_emnist_cnn_split(*, num_classes: int, seed: int) -> split.SplitModel:
  """`build_emnist_cnn` cut after its conv trunk, for AFML.

  The encoder is conv 5x5x32 (ReLU, max-pool) and conv 5x5x64
  (pre-activation) emitting z_mean [batch, 14, 14, 64], plus a 1x1 log-scale
  map; the head is ReLU, max-pool, dense 512 and the logits. At the means it
  computes `build_emnist_cnn` with the same seed.
  """
  return conv_net.build_conv_net_split(num_classes=num_classes, seed=seed,
                                       **_ARCHITECTURE)
