"""pFedMe against its closed-form fixed point and a float64 round by hand.

The least-squares clients of `least_squares`: full batch, full participation.
"""

import numpy as np
import pytest

import tff_perfed
from tff_perfed import validation
from tff_perfed.algorithms import pfedme
import least_squares

CLIENTS, DIM = least_squares.CLIENTS, least_squares.DIM


def moreau_fixed_point(arrays, regularization):
  """w* with sum_i (w - theta_i(w)) = 0, theta_i solved exactly."""
  m = [np.linalg.inv(x.T @ x / len(x) + regularization * np.eye(DIM))
       for x, _ in arrays]
  b = [x.T @ y / len(x) for x, y in arrays]
  lhs = sum(np.eye(DIM) - regularization * m_i for m_i in m)
  return np.linalg.solve(lhs, sum(m_i @ b_i for m_i, b_i in zip(m, b)))


def test_the_fixed_point_is_that_of_the_mean_moreau_envelope():
  arrays = least_squares.client_arrays()
  lam = 1.0
  largest = max(np.linalg.eigvalsh(x.T @ x / len(x)).max()
                for x, _ in arrays)
  process = tff_perfed.build_pfedme(
      least_squares.least_squares_model,
      personal_learning_rate=1 / (largest + lam), regularization=lam,
      inner_steps=40, local_learning_rate=1.0, local_steps=1,
      server_learning_rate=1.0)
  datasets = [least_squares.full_batch(x, y) for x, y in arrays]
  state = process.initialize()
  for _ in range(40):
    state = process.next(state, datasets).state
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             moreau_fixed_point(arrays, lam), atol=1e-4)


@pytest.mark.parametrize('beta', [1.0, 0.5])
def test_one_round_matches_algorithm_1_computed_by_hand(beta):
  arrays = least_squares.client_arrays(4)
  plr, lam, k_steps, eta, r_steps = 0.05, 2.0, 3, 0.1, 2
  process = tff_perfed.build_pfedme(
      least_squares.least_squares_model, personal_learning_rate=plr,
      regularization=lam, inner_steps=k_steps, local_learning_rate=eta,
      local_steps=r_steps, server_learning_rate=beta)
  state = process.next(process.initialize(), [
      least_squares.full_batch(x, y) for x, y in arrays]).state
  grad = lambda w, x, y: x.T @ (x @ w - y) / len(x)
  w0 = np.zeros((DIM, 1))
  local_models = []
  for x, y in arrays:
    w = w0
    for _ in range(r_steps):
      theta = w
      for _ in range(k_steps):
        theta = theta - plr * (grad(theta, x, y) + lam * (theta - w))
      w = w - eta * lam * (w - theta)
    local_models.append(w)
  want = (1 - beta) * w0 + beta * np.mean(local_models, axis=0)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name, value', [
    ('personal_learning_rate', 0.0), ('regularization', 0.0),
    ('inner_steps', 0), ('local_learning_rate', -1.0), ('local_steps', 0),
    ('server_learning_rate', 0.0),
])
def test_bad_hyperparameters_are_refused_naming_the_argument(name, value):
  settings = dict(personal_learning_rate=0.1, regularization=1.0,
                  inner_steps=2, local_learning_rate=0.1)
  settings[name] = value
  with pytest.raises(validation.ArgumentError, match=name):
    pfedme.PFedMeParams(**settings)
