"""A small CNN for CIFAR-100 (Krizhevsky 2009) that trains on two CPU cores.

Not TFF's CIFAR baseline (Reddi et al. 2020 train a ResNet-18 with group
norm, far too slow for second-order meta-learning on a laptop): two 3x3
conv + max-pool blocks and a dense layer of 128, 556,708 parameters for 100
classes. No dropout and no batch norm, so prediction is a pure function of
the weights like the other built-in models (`functional`).
`build_cifar_cnn_split` cuts it for AFML after the second convolution
(`tff_perfed.models.split`).
"""

import tensorflow_federated as tff

from tff_perfed.models import conv_net
from tff_perfed.models import split

IMAGE_SHAPE = (32, 32, 3)
_ARCHITECTURE = dict(image_shape=IMAGE_SHAPE, kernel_size=3, dense_units=128)


def build_cifar_cnn(*, num_classes: int = 100,
                    seed: int) -> tff.learning.models.FunctionalModel:
  """A small CIFAR CNN, pure TF on its weights.

  conv 3x3x32 (same, ReLU) -> max-pool 2 -> conv 3x3x64 (same, ReLU) ->
  max-pool 2 -> dense 128 (ReLU) -> dense num_classes
  (`conv_net.build_conv_net`). Parameters: 896 + 18,496 + 524,416 +
  129 * num_classes (556,708 for 100 classes).

  Args:
    num_classes: 100 for CIFAR-100's fine labels.
    seed: Seed of the Glorot-uniform initialization (biases are zero).

  Returns:
    A `FunctionalModel` on `x` [batch, 32, 32, 3] float32 in [0, 1] and `y`
    [batch] int32.
  """
  return conv_net.build_conv_net(num_classes=num_classes, seed=seed,
                                 **_ARCHITECTURE)


def build_cifar_cnn_split(*, num_classes: int = 100,
                          seed: int) -> split.SplitModel:
  """`build_cifar_cnn` cut after its conv trunk, for AFML.

  The encoder is conv 3x3x32 (ReLU, max-pool) and conv 3x3x64
  (pre-activation) emitting z_mean [batch, 16, 16, 64], plus a 1x1 log-scale
  map; the head is ReLU, max-pool, dense 128 and the logits. At the means it
  computes `build_cifar_cnn` with the same seed.
  """
  return conv_net.build_conv_net_split(num_classes=num_classes, seed=seed,
                                       **_ARCHITECTURE)
