"""Ditto against closed forms on least squares and a float64 step by hand.

Full-batch least squares, F_k(w) = 1/(2 n_k) ||X_k w - y_k||^2, full
participation: the global model's fixed point is the minimizer of the mean
of the F_k, and each personal model's that of F_k + lambda/2 ||v - w*||^2
(Li et al. 2021, eq. 1), both in closed form.
"""


import numpy as np
import pytest
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import validation
from tff_perfed.algorithms import ditto
import least_squares

CLIENTS, DIM = least_squares.CLIENTS, least_squares.DIM
least_squares_model = least_squares.least_squares_model
client_arrays = least_squares.client_arrays
full_batch = least_squares.full_batch


def closed_forms(arrays, regularization):
  a = [x.T @ x / len(x) for x, _ in arrays]
  b = [x.T @ y / len(x) for x, y in arrays]
  w_star = np.linalg.solve(sum(a), sum(b))
  v_star = [np.linalg.solve(a_k + regularization * np.eye(DIM),
                            b_k + regularization * w_star)
            for a_k, b_k in zip(a, b)]
  return w_star, v_star


def run(process, arrays, rounds):
  datasets = [full_batch(x, y) for x, y in arrays]
  state = process.initialize()
  first = process.initial_client_state(process.get_model_weights(state))
  client_states = [first] * CLIENTS
  for _ in range(rounds):
    state, client_states, metrics = process.next(state, datasets,
                                                 client_states)
  return state, client_states, metrics


@pytest.mark.parametrize('regularization', [0.0, 2.0])
def test_fixed_points_are_the_closed_forms_of_eq_1(regularization):
  arrays = client_arrays()
  w_star, v_star = closed_forms(arrays, regularization)
  # Steps of 1 / (largest curvature) converge in a few dozen rounds.
  largest = max(np.linalg.eigvalsh(x.T @ x / len(x)).max()
                for x, _ in arrays)
  mean_largest = np.linalg.eigvalsh(
      sum(x.T @ x / len(x) for x, _ in arrays) / CLIENTS).max()
  process = tff_perfed.build_ditto(
      least_squares_model, client_learning_rate=1 / mean_largest,
      personal_learning_rate=1 / (largest + regularization),
      regularization=regularization, local_steps=1, personal_steps=10)
  state, client_states, _ = run(process, arrays, rounds=40)
  np.testing.assert_allclose(
      process.get_model_weights(state).trainable[0], w_star, atol=1e-4)
  for k in range(CLIENTS):
    personal = process.personalized_weights(state, client_states[k])
    np.testing.assert_allclose(personal.trainable[0], v_star[k], atol=1e-4)


def test_one_round_is_fedavg_and_the_personal_steps_computed_by_hand():
  arrays = client_arrays(1)
  lr, plr, lam, tau, steps = 0.1, 0.05, 0.7, 2, 3
  process = tff_perfed.build_ditto(
      least_squares_model, client_learning_rate=lr,
      personal_learning_rate=plr, regularization=lam, local_steps=tau,
      personal_steps=steps)
  rng = np.random.default_rng(2)
  start = [rng.normal(size=(DIM, 1)) for _ in range(CLIENTS)]
  datasets = [full_batch(x, y) for x, y in arrays]
  next_state, client_states, _ = process.next(
      process.initialize(), datasets,
      [(v.astype(np.float32),) for v in start])
  grad = lambda w, x, y: x.T @ (x @ w - y) / len(x)
  w0 = np.zeros((DIM, 1))
  trained = []
  for k, (x, y) in enumerate(arrays):
    w = w0
    for _ in range(tau):
      w = w - lr * grad(w, x, y)
    trained.append(w)
    v = start[k]
    for _ in range(steps):
      v = v - plr * (grad(v, x, y) + lam * (v - w0))
    np.testing.assert_allclose(client_states[k][0], v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(process.get_model_weights(next_state).trainable[0],
                             np.mean(trained, axis=0), rtol=1e-5, atol=1e-6)


def test_zero_personal_steps_leave_each_client_state_as_it_was():
  arrays = client_arrays(3)
  process = tff_perfed.build_ditto(
      least_squares_model, client_learning_rate=0.1,
      personal_learning_rate=0.1, regularization=1.0, personal_steps=0)
  start = [(np.full((DIM, 1), k, np.float32),) for k in range(CLIENTS)]
  output = process.next(process.initialize(),
                        [full_batch(x, y) for x, y in arrays], start)
  for got, want in zip(output.client_states, start):
    np.testing.assert_array_equal(got[0], want[0])


def test_a_newcomer_starts_from_the_global_model():
  process = tff_perfed.build_ditto(
      least_squares_model, client_learning_rate=0.1,
      personal_learning_rate=0.1, regularization=1.0)
  weights = tff.learning.models.ModelWeights(
      trainable=(np.ones((DIM, 1), np.float32),), non_trainable=())
  np.testing.assert_array_equal(process.initial_client_state(weights)[0],
                                np.ones((DIM, 1)))
  assert process.client_state_type.is_assignable_from(
      process.next.type_signature.result[1].member)


@pytest.mark.parametrize('name, value', [
    ('client_learning_rate', 0.0), ('personal_learning_rate', -1.0),
    ('regularization', -0.1), ('local_steps', 0), ('personal_steps', -1),
])
def test_bad_hyperparameters_are_refused_naming_the_argument(name, value):
  settings = dict(client_learning_rate=0.1, personal_learning_rate=0.1,
                  regularization=1.0)
  settings[name] = value
  with pytest.raises(validation.ArgumentError, match=name):
    ditto.DittoParams(**settings)


def test_a_round_on_in_process_gives_the_cpp_numbers(restore_default_context):
  del restore_default_context
  arrays = client_arrays(5)
  process = tff_perfed.build_ditto(
      least_squares_model, client_learning_rate=0.1,
      personal_learning_rate=0.1, regularization=1.0, local_steps=2,
      personal_steps=2)
  results = []
  for name in ('cpp', 'in_process'):
    tff_perfed.runtime.set_execution_context(name, handle_sigterm=False)
    _, client_states, _ = run(process, arrays, rounds=2)
    results.append([s[0] for s in client_states])
  for got, want in zip(results[1], results[0]):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
