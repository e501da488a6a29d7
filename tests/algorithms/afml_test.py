"""AFML learning process: a round against the pure reference, noise, checks.

The reference round is computed client by client with
`afml_objective.afml_gradients` (itself checked against float64 finite
differences), averaged and applied with SGD, as Algorithm 1 lines 7-10
write it; the process instead splits the work between clients and server.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed import validation
from tff_perfed.algorithms import afml
from tff_perfed.algorithms import afml_objective

DIM, CLASSES, BATCH = 4, 3, 5
SETTINGS = dict(inner_learning_rate=0.3, alpha=0.2, beta=0.01,
                head_learning_rate=0.5, encoder_learning_rate=0.4)


def split_model():
  return models.build_mlp_split(input_dim=DIM, num_classes=CLASSES, seed=7,
                                hidden_units=(6, 5))


def build(**changes):
  settings = dict(SETTINGS, initial_encoder_scale=0.05,
                  sample_representation=False)
  settings.update(changes)
  return afml.build_afml(lambda: split_model().encoder,
                         lambda: split_model().head, **settings)


def random_batches(rng, count):
  return [collections.OrderedDict(
      x=rng.normal(size=(BATCH, DIM)).astype(np.float32),
      y=rng.integers(0, CLASSES, size=BATCH).astype(np.int32))
          for _ in range(count)]


def as_dataset(batches):
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=np.stack([b['x'] for b in batches]),
      y=np.stack([b['y'] for b in batches])))


def weights_of(process, state):
  weights = process.get_model_weights(state)
  return ([np.asarray(w) for w in weights.trainable],
          [np.asarray(w) for w in weights.non_trainable])


def head_loss_fn(head):
  def loss(weights, z, y):
    return head.loss(head.predict_on_batch((tuple(weights), ()), z), y)
  return loss


@pytest.mark.parametrize('local_steps,alpha,beta', [
    (1, SETTINGS['alpha'], SETTINGS['beta']),
    (2, SETTINGS['alpha'], SETTINGS['beta']),
    # alpha = beta = 0 must switch the regularizers off in the process too.
    (1, 0.0, 0.0)])
def test_round_equals_mean_of_reference_client_gradients_applied_by_sgd(
    local_steps, alpha, beta):
  process = build(local_steps=local_steps, alpha=alpha, beta=beta)
  state = process.initialize()
  head, non_trainable = weights_of(process, state)
  num_encoder = len(non_trainable) // 2
  mean, rho = non_trainable[:num_encoder], non_trainable[num_encoder:]
  rng = np.random.default_rng(0)
  clients = [random_batches(rng, 2 * local_steps) for _ in range(3)]
  output = process.next(state, [as_dataset(c) for c in clients])

  model = split_model()
  noise = afml.encoder_noise(afml.round_key(0, 0),
                             tuple(tf.constant(m) for m in mean))
  per_client = []
  for batches in clients:
    sums = None
    for step in range(local_steps):
      gradients = afml_objective.afml_gradients(
          model.encoder.encode, head_loss_fn(model.head), mean, rho, head,
          batches[2 * step], batches[2 * step + 1], noise,
          inner_learning_rate=SETTINGS['inner_learning_rate'], alpha=alpha,
          beta=beta)
      flat = [g.numpy() for part in gradients[:3] for g in part]
      sums = flat if sums is None else [a + b for a, b in zip(sums, flat)]
    per_client.append([s / local_steps for s in sums])
  mean_gradient = [np.mean(g, axis=0) for g in zip(*per_client)]
  num_head = len(head)
  expected_head = [w - SETTINGS['head_learning_rate'] * g
                   for w, g in zip(head, mean_gradient[:num_head])]
  expected_encoder = [w - SETTINGS['encoder_learning_rate'] * g
                      for w, g in zip(mean + rho, mean_gradient[num_head:])]
  new_head, new_encoder = weights_of(process, output.state)
  for got, expected in zip(new_head + new_encoder,
                           expected_head + expected_encoder):
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)

  metrics = output.metrics
  cmpx = afml_objective.complexity_loss(mean, rho).numpy()  # Even at beta 0.
  np.testing.assert_allclose(metrics['finalizer']['complexity_loss'], cmpx,
                             rtol=1e-5)
  np.testing.assert_allclose(metrics['finalizer']['encoder_scale'], 0.05,
                             rtol=1e-5)
  assert set(metrics['client_work']['train']) == {
      'loss', 'encoding_loss', 'consistency_loss'}


def test_noise_is_a_function_of_seed_and_round_so_a_resumed_run_draws_the_same():
  process = build(sample_representation=True)
  rng = np.random.default_rng(1)
  data = [as_dataset(random_batches(rng, 2)) for _ in range(2)]
  state = process.initialize()
  after_one = process.next(state, data).state
  # A resumed run continues from the saved state: the same round again.
  first = weights_of(process, process.next(after_one, data).state)
  again = weights_of(process, process.next(after_one, data).state)
  for a, b in zip(first[0] + first[1], again[0] + again[1]):
    np.testing.assert_array_equal(a, b)
  other_seed = build(sample_representation=True, noise_seed=5)
  other = weights_of(other_seed,
                     other_seed.next(other_seed.initialize(), data).state)
  same_seed = weights_of(process, after_one)
  assert not np.allclose(other[1][0], same_seed[1][0])


def test_encoder_noise_differs_between_rounds_and_is_standard_normal():
  mean = (tf.zeros([200, 50]),)
  first = afml.encoder_noise(afml.round_key(3, 0), mean)[0].numpy()
  second = afml.encoder_noise(afml.round_key(3, 1), mean)[0].numpy()
  assert not np.allclose(first, second)
  assert abs(first.mean()) < 0.02 and abs(first.std() - 1) < 0.02


def test_terms_switched_off_are_still_reported_for_ablations():
  process = build(alpha=0.0, beta=0.0)
  rng = np.random.default_rng(2)
  output = process.next(process.initialize(),
                        [as_dataset(random_batches(rng, 2))])
  # The terms are still reported (for ablations) but no longer trained on.
  train = output.metrics['client_work']['train']
  assert train['consistency_loss'] > 0 and train['encoding_loss'] > 0


def test_client_without_a_full_pair_does_not_count():
  process = build()
  rng = np.random.default_rng(3)
  full = as_dataset(random_batches(rng, 2))
  lonely = as_dataset(random_batches(rng, 1))
  state = process.initialize()
  alone = weights_of(process, process.next(state, [full]).state)
  with_lonely = weights_of(process, process.next(state, [full, lonely]).state)
  for a, b in zip(alone[0] + alone[1], with_lonely[0] + with_lonely[1]):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_evaluation_model_scores_the_state_weights_with_the_encoder_mean():
  process = build()
  state = process.initialize()
  evaluation_model = models.evaluation_model(split_model())
  weights = process.get_model_weights(state)
  x = np.random.default_rng(4).normal(size=(3, DIM)).astype(np.float32)
  got = evaluation_model.predict_on_batch(
      (tuple(weights.trainable), tuple(weights.non_trainable)), x)
  whole = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=7,
                           hidden_units=(6, 5))
  np.testing.assert_allclose(got, whole.predict_on_batch(
      whole.initial_weights, x), rtol=1e-6)


def test_server_optimizers_can_be_plugged_in():
  process = build(head_optimizer_fn=tff.learning.optimizers.build_adam,
                  encoder_optimizer_fn=tff.learning.optimizers.build_adam)
  rng = np.random.default_rng(5)
  state = process.initialize()
  before = weights_of(process, state)
  after = weights_of(process, process.next(
      state, [as_dataset(random_batches(rng, 2))]).state)
  # Adam's first step moves every weight with a non-zero gradient by
  # about its learning rate.
  step = np.abs(after[0][-1] - before[0][-1])
  np.testing.assert_allclose(step, SETTINGS['head_learning_rate'], rtol=1e-3)


@pytest.mark.parametrize('argument,value,message', [
    ('alpha', -1.0, '`alpha` must be a non-negative finite number'),
    ('beta', float('nan'), '`beta` must be a non-negative finite number'),
    ('head_learning_rate', 0.0, '`head_learning_rate` must be a positive'),
    ('local_steps', 0, '`local_steps` must be'),
    ('initial_encoder_scale', -1e-3, '`initial_encoder_scale` must be'),
])
def test_invalid_settings_name_the_argument(argument, value, message):
  with pytest.raises(validation.ArgumentError, match=message) as error:
    build(**{argument: value})
  assert error.value.argument == argument


def test_wrong_model_functions_name_the_argument():
  with pytest.raises(validation.ArgumentTypeError, match='encoder_fn'):
    afml.build_afml(lambda: split_model().head, lambda: split_model().head,
                    **SETTINGS)
  with pytest.raises(validation.ArgumentTypeError, match='head_fn'):
    afml.build_afml(lambda: split_model().encoder, 'head', **SETTINGS)


def test_degenerate_settings_warn():
  params = afml.AfmlParams(**dict(SETTINGS, inner_learning_rate=0.0,
                                  initial_encoder_scale=0.5))
  warnings = params.degenerate_settings()
  assert len(warnings) == 2
  assert 'inner_learning_rate=0' in warnings[0]


def test_public_entry_point():
  assert tff_perfed.afml.afml_gradients is afml_objective.afml_gradients
  assert tff_perfed.build_afml is afml.build_afml
