"""Models cut into a Gaussian encoder f and a classification head h (AFML).

AFML (`tff_perfed.algorithms.afml`; paper: ../shared/seeds, section 3.5)
splits the global model into an encoding network f, whose weights are
Gaussian, theta ~ N(theta_u, softplus(rho)^2), and a classification network
h that the inner loop adapts. The encoder outputs a Gaussian over the
representation z (the variational information bottleneck of Alemi et al.
2016 that L_CONS regularizes): `encode(theta, x) -> (z_mean, z_log_scale)`.

How the built-in models are cut (one rule for all of them): the encoder is
the model's trunk up to and including the layer that becomes z; its output
is z_mean, and z_log_scale is a per-position linear map of z_mean (a 1x1
convolution for feature maps), initialized to the constant
`INITIAL_LOG_SCALE` so that at initialization the split model computes the
unsplit one up to small noise. The head is the rest, starting with that
layer's activation:

* digits MLP: f = the first dense layer (pre-activation), h = ELU, 60, 10;
* EMNIST/CIFAR CNNs: f = the conv trunk (second conv, pre-activation),
  h = ReLU, pooling, dense layers;
* character LSTM: f = embedding and LSTMs, h = the dense logits.

`evaluation_model` turns a split model into one `FunctionalModel` whose
trainable weights are the head and whose non-trainable weights are the
encoder's (theta_u, rho): personalization adapts what AFML's inner loop
adapts, with the encoder at its mean.
"""

import collections
import dataclasses
from typing import Callable, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional

Weights = Tuple[tf.Tensor, ...]
# log-scale of z at initialization: exp(-3) ~ 0.05.
INITIAL_LOG_SCALE = -3.0


@dataclasses.dataclass(frozen=True)
class GaussianEncoder:
  """The encoding network f of a split model.

  Attributes:
    initial_weights: Initial mean weights theta_u (a tuple of arrays).
    encode: `encode(theta, x) -> (z_mean, z_log_scale)`, pure TF on a tuple
      of weight tensors and a batch of inputs.
    input_spec: Spec of a batch of inputs x.
  """
  initial_weights: Tuple[np.ndarray, ...]
  encode: Callable[[Weights, tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]
  input_spec: tf.TensorSpec


@dataclasses.dataclass(frozen=True)
class SplitModel:
  """A model as encoder f and head h.

  Attributes:
    encoder: The `GaussianEncoder`.
    head: A `tff.learning.models.FunctionalModel` on batches
      `OrderedDict(x=z, y=labels)`: its loss is h's loss on representations.
  """
  encoder: GaussianEncoder
  head: tff.learning.models.FunctionalModel


def log_scale_weights(representation_size: int) -> Tuple[np.ndarray, ...]:
  """Kernel (zeros) and bias (`INITIAL_LOG_SCALE`) of the log-scale map."""
  return (np.zeros([representation_size, representation_size], np.float32),
          np.full([representation_size], INITIAL_LOG_SCALE, np.float32))


def gaussian_output(z_mean: tf.Tensor, kernel: tf.Tensor,
                    bias: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """`(z_mean, z_mean . kernel + bias)` along the last axis."""
  return z_mean, tf.tensordot(z_mean, kernel, axes=[[-1], [0]]) + bias


def head_model(weights: Tuple[np.ndarray, ...],
               predict: Callable[[Weights, tf.Tensor], tf.Tensor],
               z_spec: tf.TensorSpec,
               y_spec: tf.TensorSpec,
               mask_padding: bool = False
              ) -> tff.learning.models.FunctionalModel:
  """A head: the built-in classifier loss and metrics on representations."""
  return functional.functional_model(weights, predict, z_spec, y_spec,
                                     mask_padding=mask_padding)


def evaluation_model(model: SplitModel) -> tff.learning.models.FunctionalModel:
  """One `FunctionalModel`: head trainable, encoder (theta_u, rho) not.

  Its weights are `((head...), (theta_u..., rho...))`, the layout of AFML's
  `LearningProcess` state, so `process.get_model_weights(state)` can be
  evaluated as is. Prediction uses the encoder at its mean theta_u and z at
  its mean: no sampling at evaluation. Loss and metrics are the head's.
  """
  encoder, head = model.encoder, model.head
  num_encoder = len(encoder.initial_weights)
  head_weights, _ = head.initial_weights
  # Only the structure matters here: AFML's state holds the real rho.
  initial_rho = tuple(np.zeros_like(w) for w in encoder.initial_weights)

  @tf.function
  def predict_on_batch(model_weights, x, training=True):
    trainable, non_trainable = model_weights
    theta_u = tuple(non_trainable)[:num_encoder]
    z_mean, _ = encoder.encode(theta_u, x)
    return head.predict_on_batch((tuple(trainable), ()), z_mean,
                                 training=training)

  return tff.learning.models.FunctionalModel(
      initial_weights=(tuple(head_weights),
                       tuple(encoder.initial_weights) + initial_rho),
      predict_on_batch_fn=predict_on_batch,
      loss_fn=head.loss,
      metrics_fns=(head.initialize_metrics_state, head.update_metrics_state,
                   head.finalize_metrics),
      input_spec=collections.OrderedDict(x=encoder.input_spec,
                                         y=head.input_spec['y']))
