"""Shared builder helpers."""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed import models
from tff_perfed import validation
from tff_perfed.algorithms import learning_utils


def test_non_finite_update_is_zeroed_and_flagged():
  update, flag = learning_utils.zero_if_non_finite(
      (tf.constant([1.0, np.nan]), tf.constant([[2.0]])))
  assert int(flag) == 1
  assert all(np.all(u.numpy() == 0) for u in update)


def test_finite_update_is_kept():
  values = (tf.constant([1.0, -2.0]), tf.constant([[3.0]]))
  update, flag = learning_utils.zero_if_non_finite(values)
  assert int(flag) == 0
  for got, want in zip(update, values):
    np.testing.assert_array_equal(got, want)


def test_model_fn_must_return_a_functional_model():
  with pytest.raises(validation.ArgumentTypeError, match='model_fn'):
    learning_utils.build_model(lambda: object())
  with pytest.raises(validation.ArgumentTypeError, match='model_fn'):
    learning_utils.build_model('not callable')


def test_weights_type_matches_the_initial_weights():
  model = models.build_mlp(input_dim=3, num_classes=2, seed=0,
                           hidden_units=(4,))
  weights_type = learning_utils.model_weights_type(model)
  assert [t.shape for t in weights_type.trainable] == [
      (3, 4), (4,), (4, 2), (2,)]
