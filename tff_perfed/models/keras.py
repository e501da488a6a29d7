"""Users' Keras classifiers as functional models with tff_perfed's metrics.

Every algorithm and the personalization evaluation accept any
`tff.learning.models.FunctionalModel`, including one made directly by
`tff.learning.models.functional_model_from_keras`. `from_keras` is the
shortcut for a Keras model that emits logits over classes: it builds the
functional model with TFF's converter (nested `tf.GradientTape`s see through
the cloned Keras graph, so all three Hessian modes work) and gives it the
same loss and metrics as the built-in models (`loss`, `accuracy`,
`num_examples`, padding optionally masked), so that its results are named
and computed exactly like theirs.

The converter's limits apply: no batch normalization, no non-trainable
variables updated in training, and the model is only usable inside TFF or
`tf.function` computations (not eagerly).
"""

from typing import Any, Callable, Mapping, Union

import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.models import functional


def from_keras(keras_model: Union[tf.keras.Model, Callable[[], tf.keras.Model]],
               *,
               input_spec: Mapping[str, Any],
               mask_padding: bool = False
              ) -> tff.learning.models.FunctionalModel:
  """A Keras logits classifier as a `FunctionalModel`.

  Args:
    keras_model: An uncompiled `tf.keras.Model` (its current weights are the
      initial weights), or a no-argument callable building one.
    input_spec: `OrderedDict(x=tf.TensorSpec, y=tf.TensorSpec)` of a batch,
      with integer labels `y`.
    mask_padding: Leave labels equal to `functional.PAD_TOKEN` out of the
      loss and metrics (for sequence models with padding).

  Returns:
    A `FunctionalModel` whose loss is the softmax cross-entropy of the Keras
    model's logits and whose metrics are `loss`, `accuracy`, `num_examples`.
  """
  converted = tff.learning.models.functional_model_from_keras(
      keras_model,
      loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      input_spec=input_spec)

  # Not `converted.predict_on_batch` itself: a bound `tf.function` method only
  # holds a weak reference to its instance, and `converted` would be garbage
  # collected on return (the method then fails with `self` None). The closure
  # keeps it alive.
  @tf.function
  def predict_on_batch(model_weights, x, training=True):
    return converted.predict_on_batch(model_weights, x, training)

  return tff.learning.models.FunctionalModel(
      initial_weights=converted.initial_weights,
      predict_on_batch_fn=predict_on_batch,
      loss_fn=functional.classification_loss_fn(mask_padding),
      metrics_fns=functional.classification_metrics_fns(mask_padding),
      input_spec=input_spec)
