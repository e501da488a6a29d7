"""APFL against a float64 NumPy run of Algorithm 1 and its fixed points.

The least-squares clients of `least_squares` (full batch, full
participation): TFF's rounds match the same rounds in float64, alpha adapted
or not, and that recurrence reaches the closed forms (FedAvg's minimizer for
w, each client's own minimizer for its personalized model).
"""

import numpy as np
import pytest

import tff_perfed
from tff_perfed import validation
from tff_perfed.algorithms import apfl
import least_squares

CLIENTS, DIM = least_squares.CLIENTS, least_squares.DIM


def numpy_rounds(arrays, *, rounds, eta, alpha0, adapt, local_steps,
                 personal=None):
  """Algorithm 1 in float64: (w, [v_i], [alpha_i]) after `rounds`."""
  grad = lambda w, x, y: x.T @ (x @ w - y) / len(x)
  w = np.zeros((DIM, 1))
  vs = [w.copy() for _ in arrays] if personal is None else list(personal)
  alphas = [alpha0] * len(arrays)
  for _ in range(rounds):
    trained = []
    for i, (x, y) in enumerate(arrays):
      w_i, v, a = w, vs[i], alphas[i]
      for _ in range(local_steps):
        g = grad(a * v + (1 - a) * w_i, x, y)
        new_w = w_i - eta * grad(w_i, x, y)
        new_v = v - eta * a * g
        if adapt:
          a = float(np.clip(a - eta * np.sum((v - w_i) * g), 0, 1))
        w_i, v = new_w, new_v
      trained.append(w_i)
      vs[i], alphas[i] = v, a
    w = np.mean(trained, axis=0)
  return w, vs, alphas


def tff_rounds(process, arrays, rounds, personal=None):
  datasets = [least_squares.full_batch(x, y) for x, y in arrays]
  state = process.initialize()
  first = process.initial_client_state(process.get_model_weights(state))
  states = [first] * CLIENTS
  if personal is not None:
    states = [dict(first, personal=(v.astype(np.float32),))
              for v in personal]
  for _ in range(rounds):
    state, states, _ = process.next(state, datasets, states)
  return state, states


@pytest.mark.parametrize('adapt', [False, True])
def test_rounds_match_algorithm_1_in_float64(adapt):
  arrays = least_squares.client_arrays(6)
  rng = np.random.default_rng(7)
  personal = [rng.normal(size=(DIM, 1)) for _ in range(CLIENTS)]
  eta, alpha0, steps, rounds = 0.1, 0.6, 2, 3
  process = tff_perfed.build_apfl(
      least_squares.least_squares_model, learning_rate=eta,
      mixing_weight=alpha0, adapt_mixing_weight=adapt, local_steps=steps)
  state, states = tff_rounds(process, arrays, rounds, personal)
  w, vs, alphas = numpy_rounds(arrays, rounds=rounds, eta=eta,
                               alpha0=alpha0, adapt=adapt,
                               local_steps=steps, personal=personal)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             w, rtol=1e-5, atol=1e-6)
  for i in range(CLIENTS):
    np.testing.assert_allclose(states[i]['personal'][0], vs[i], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(states[i]['mixing_weight'], alphas[i],
                               rtol=1e-5, atol=1e-6)
    mixed = process.personalized_weights(state, states[i]).trainable[0]
    np.testing.assert_allclose(
        mixed, alphas[i] * vs[i] + (1 - alphas[i]) * w, rtol=1e-5, atol=1e-6)
  if adapt:
    assert any(abs(a - alpha0) > 1e-3 for a in alphas)
  else:
    assert alphas == [alpha0] * CLIENTS


def test_with_alpha_fixed_the_recurrence_reaches_the_closed_forms():
  arrays = least_squares.client_arrays(8)
  w, vs, alphas = numpy_rounds(arrays, rounds=3000, eta=0.3, alpha0=0.7,
                               adapt=False, local_steps=1)
  a = [x.T @ x / len(x) for x, _ in arrays]
  b = [x.T @ y / len(x) for x, y in arrays]
  np.testing.assert_allclose(w, np.linalg.solve(sum(a), sum(b)), atol=1e-8)
  for i in range(CLIENTS):
    np.testing.assert_allclose(alphas[i] * vs[i] + (1 - alphas[i]) * w,
                               np.linalg.solve(a[i], b[i]), atol=1e-8)


def test_alpha_zero_is_fedavg_and_a_newcomer_mixes_nothing_in():
  arrays = least_squares.client_arrays(9)
  process = tff_perfed.build_apfl(
      least_squares.least_squares_model, learning_rate=0.1,
      mixing_weight=0.0, adapt_mixing_weight=False, local_steps=2)
  state, states = tff_rounds(process, arrays, 2)
  w, _, _ = numpy_rounds(arrays, rounds=2, eta=0.1, alpha0=0.0, adapt=False,
                         local_steps=2)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      process.personalized_weights(state, states[0]).trainable[0], w,
      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name, value', [
    ('learning_rate', 0.0), ('mixing_weight', 1.5), ('mixing_weight', -0.1),
    ('adapt_mixing_weight', 'yes'), ('local_steps', 0),
])
def test_bad_hyperparameters_are_refused_naming_the_argument(name, value):
  settings = dict(learning_rate=0.1, mixing_weight=0.5)
  settings[name] = value
  with pytest.raises(validation.ArgumentError, match=name):
    apfl.ApflParams(**settings)


def test_a_round_on_in_process_gives_the_cpp_numbers(restore_default_context):
  del restore_default_context
  arrays = least_squares.client_arrays(10)
  process = tff_perfed.build_apfl(
      least_squares.least_squares_model, learning_rate=0.1,
      mixing_weight=0.5, local_steps=2)
  results = []
  for name in ('cpp', 'in_process'):
    tff_perfed.runtime.set_execution_context(name, handle_sigterm=False)
    _, states = tff_rounds(process, arrays, 2)
    results.append([(s['personal'][0], s['mixing_weight']) for s in states])
  for (v, a), (v_cpp, a_cpp) in zip(results[1], results[0]):
    np.testing.assert_allclose(v, v_cpp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a, a_cpp, rtol=1e-6, atol=1e-7)
