"""Bytes, FLOPs, rounds to a target and fairness, against hand counts."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed.algorithms import learning_utils
from tff_perfed.algorithms import meta_gradients
from tff_perfed.evaluation import costs

DIM, HIDDEN, CLASSES = 4, 5, 3
# Dense 4x5 + bias 5, dense 5x3 + bias 3.
NUM_PARAMETERS = DIM * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES
FLOAT32_BYTES = INT32_BYTES = 4


def _model_fn():
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0,
                          hidden_units=(HIDDEN,))


@pytest.fixture(scope='module')
def fedavg_cost():
  return costs.communication_bytes(
      tff_perfed.build_fedavg(_model_fn, client_learning_rate=0.1))


def test_fedavg_broadcasts_the_model_weights_and_nothing_else(fedavg_cost):
  # prepare() sends global_model_weights only: the server optimizer's
  # learning rate and the (empty) distributor/aggregator states stay on the
  # server, and the MLP has no non-trainable weights.
  assert fedavg_cost.down_bytes_per_client == NUM_PARAMETERS * FLOAT32_BYTES


def test_fedavg_uploads_the_update_its_weight_and_the_metric_sums(
    fedavg_cost):
  update = NUM_PARAMETERS * FLOAT32_BYTES
  update_weight = FLOAT32_BYTES
  # The unfinalized metric state summed over clients: loss_sum, num_correct,
  # num_examples, each a float32 scalar. No secure-sum parts.
  metric_sums = 3 * FLOAT32_BYTES
  assert fedavg_cost.up_bytes_per_client == (
      update + update_weight + metric_sums)


def test_per_fedavg_sends_fedavgs_bytes_plus_its_non_finite_flag(
    fedavg_cost):
  per_fedavg = costs.communication_bytes(
      tff_perfed.build_per_fedavg(_model_fn, inner_learning_rate=0.1,
                                  outer_learning_rate=0.1))
  assert per_fedavg.down_bytes_per_client == fedavg_cost.down_bytes_per_client
  # The same weights cross; Per-FedAvg's client work also sums an int32
  # num_non_finite_updates, which TFF's FedAvg does not report.
  assert per_fedavg.up_bytes_per_client == (
      fedavg_cost.up_bytes_per_client + INT32_BYTES)


def test_total_bytes_scale_with_rounds_and_clients():
  cost = costs.CommunicationCost(down_bytes_per_client=10,
                                 up_bytes_per_client=3)
  assert cost.bytes_per_client == 13
  assert cost.total_bytes(rounds=7, clients_per_round=5) == 7 * 5 * 13
  assert cost.total_bytes(rounds=0, clients_per_round=5) == 0
  with pytest.raises(ValueError, match='clients_per_round'):
    cost.total_bytes(rounds=1, clients_per_round=0)


def test_type_bytes_sums_tensor_sizes_through_structures_and_placements():
  struct = tff.StructType([
      ('w', tff.TensorType(np.float32, [3, 2])),
      ('n', tff.TensorType(np.int64)),
      ('mask', tff.TensorType(np.bool_, [5])),
  ])
  assert costs.type_bytes(struct) == 6 * 4 + 8 + 5
  assert costs.type_bytes(tff.FederatedType(struct, tff.CLIENTS)) == 37
  assert costs.type_bytes(tff.StructType([])) == 0


@pytest.mark.parametrize('type_spec', [
    tff.TensorType(np.float32, [None, 4]),
    tff.TensorType(np.float32, None),
    tff.TensorType(np.str_),
    tff.SequenceType(tff.TensorType(np.float32)),
])
def test_type_bytes_rejects_types_without_a_fixed_size(type_spec):
  with pytest.raises(ValueError, match='type_bytes'):
    costs.type_bytes(type_spec)


def test_a_process_that_is_not_one_map_reduce_round_is_a_one_line_error():

  @tff.federated_computation
  def initialize():
    return tff.federated_value(0.0, tff.SERVER)

  add = tff.tensorflow.computation(lambda a, b: a + b, np.float32, np.float32)

  @tff.federated_computation(tff.FederatedType(np.float32, tff.SERVER),
                             tff.FederatedType(np.float32, tff.CLIENTS))
  def next_fn(state, data):
    # The second broadcast depends on the first aggregate: two rounds.
    first = tff.federated_sum(
        tff.federated_map(add, (tff.federated_broadcast(state), data)))
    second = tff.federated_sum(
        tff.federated_map(add, (tff.federated_broadcast(first), data)))
    return second, first

  process = tff.templates.IterativeProcess(initialize, next_fn)
  with pytest.raises(ValueError, match='cannot be compiled to MapReduceForm'
                    ) as error:
    costs.communication_bytes(process)
  assert '\n' not in str(error.value)


def test_communication_bytes_rejects_a_non_process():
  with pytest.raises(TypeError, match='process'):
    costs.communication_bytes(lambda: None)


def test_matmul_counts_two_flops_per_multiply_add():
  a, b, c = 2, 3, 5
  count = costs.flops(tf.matmul, tf.zeros([a, b]), tf.zeros([b, c]))
  assert count == 2 * a * b * c


def _matmul_loss_gradient(x, w):
  with tf.GradientTape() as tape:
    tape.watch(w)
    loss = tf.reduce_sum(tf.matmul(x, w))
  return tape.gradient(loss, w)


def test_gradient_of_a_matmul_loss_counts_forward_and_backward_matmuls():
  a, b, c = 2, 3, 5
  count = costs.flops(_matmul_loss_gradient, tf.zeros([a, b]),
                      tf.zeros([b, c]))
  forward = 2 * a * b * c  # x @ w.
  # d loss / d w = x^T @ ones([a, c]) is a [b, a] x [a, c] MatMul. The
  # gradient for x (ones @ w^T) is not built, since x is not watched.
  backward = 2 * b * a * c
  reduce_sum = a * c - 1  # Sum over a*c elements: a*c - 1 additions.
  assert count == forward + backward + reduce_sum


def test_nested_tf_functions_are_inlined_and_counted():
  a, b, c = 2, 3, 5
  inner = tf.function(_matmul_loss_gradient)
  x, w = tf.zeros([a, b]), tf.zeros([b, c])
  assert costs.flops(lambda x, w: inner(x, w), x, w) == costs.flops(
      _matmul_loss_gradient, x, w)


def test_conv2d_gradient_counts_both_backprop_convolutions():
  image, kernel = tf.zeros([1, 8, 8, 2]), tf.zeros([3, 3, 2, 4])

  def gradient(image, kernel):
    with tf.GradientTape() as tape:
      tape.watch([image, kernel])
      loss = tf.reduce_sum(tf.nn.conv2d(image, kernel, 1, 'SAME'))
    return tape.gradient(loss, [image, kernel])

  # 'SAME' keeps the 8x8 output: 2 flops per multiply-add of a 3x3x2 window,
  # for each of 8*8*4 outputs.
  conv = 2 * (8 * 8 * 4) * (3 * 3 * 2)
  reduce_sum = 8 * 8 * 4 - 1
  # Conv2DBackpropInput and Conv2DBackpropFilter each cost a convolution.
  assert costs.flops(gradient, image, kernel) == 3 * conv + reduce_sum


def test_a_functional_models_loss_gradient_counts_its_matmuls():
  # FunctionalModel's predict_on_batch and loss are tf.functions: without
  # inlining the profiler would count none of this.
  model = models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0,
                           hidden_units=())
  n = 7
  weights = tuple(tf.constant(w) for w in model.initial_weights[0])
  batch = dict(x=tf.zeros([n, DIM]), y=tf.zeros([n], tf.int32))
  loss_fn = learning_utils.batch_loss_fn(model)
  count = costs.flops(meta_gradients.loss_gradient, loss_fn, weights, batch)
  forward, backward = 2 * n * DIM * CLASSES, 2 * DIM * n * CLASSES
  # The rest is element-wise (bias add, its gradient's Sum, the mean): below
  # 10 flops per logit.
  assert forward + backward < count < forward + backward + 10 * n * CLASSES


def test_element_wise_ops_without_statistics_count_zero():
  # Exp, Elu and the cross-entropy have no registered flops statistic.
  x = tf.zeros([4, 3])
  assert costs.flops(tf.exp, x) == 0
  assert costs.flops(tf.nn.elu, x) == 0
  assert costs.flops(lambda x: x * x, x) == 12


def test_control_flow_is_rejected_unless_explicitly_ignored():
  """The profiler does not count control-flow bodies (here a while loop)."""

  def three_matmuls(x, w):
    total = tf.zeros([2, 5])
    for _ in tf.range(3):
      total += tf.matmul(x, w)
    return total

  x, w = tf.zeros([2, 3]), tf.zeros([3, 5])
  with pytest.raises(ValueError, match='control flow'):
    costs.flops(three_matmuls, x, w)
  # The lower bound leaves all three matmuls out.
  assert costs.flops(three_matmuls, x, w, ignore_control_flow=True) < 60


def test_unknown_shapes_are_rejected_rather_than_counted_as_zero():
  with pytest.raises(ValueError, match='unknown shapes'):
    costs.flops(tf.matmul, tf.TensorSpec([None, 3]), tf.zeros([3, 5]))


def test_rounds_to_target_is_the_first_evaluated_round_reaching_it():
  rounds = [0, 10, 20, 30]
  values = [0.2, 0.55, 0.5, 0.7]
  assert costs.rounds_to_target(rounds, values, 0.5) == 10
  assert costs.rounds_to_target(rounds, values, 0.55) == 10  # >=, not >.
  assert costs.rounds_to_target(rounds, values, 0.6) == 30
  assert costs.rounds_to_target(rounds, values, 0.9) is None
  assert costs.rounds_to_target([], [], 0.5) is None


def test_nan_never_reaches_the_target():
  assert costs.rounds_to_target([1, 2], [math.nan, 0.4], 0.3) == 2
  assert costs.rounds_to_target([1], [math.nan], -1.0) is None


@pytest.mark.parametrize('rounds,values,target,name', [
    ([1, 2], [0.1], 0.5, 'values'),
    ([2, 1], [0.1, 0.2], 0.5, 'rounds'),
    ([1, 1], [0.1, 0.2], 0.5, 'rounds'),
    ([1], [0.1], math.nan, 'target'),
])
def test_rounds_to_target_rejects_bad_input_naming_it(rounds, values, target,
                                                      name):
  with pytest.raises(ValueError, match=name):
    costs.rounds_to_target(rounds, values, target)


def test_fairness_is_the_fraction_strictly_beating_the_local_model():
  personalized = [0.9, 0.5, 0.7, 0.4]
  local = [0.8, 0.5, 0.6, 0.6]
  # Clients 0 and 2 are better; the tie is not.
  assert costs.fairness(personalized, local) == 2 / 4
  assert costs.fairness(np.float32([0.3]), np.float32([0.2])) == 1.0


def test_fairness_leaves_out_clients_without_two_finite_accuracies():
  # Clients 1 and 3 have no accuracy to compare (no test examples, NaN data).
  personalized = [0.9, math.nan, 0.7, 0.6, 0.4]
  local = [0.8, math.nan, 0.6, math.inf, 0.6]
  assert costs.fairness(personalized, local) == 2 / 3
  assert math.isnan(costs.fairness([math.nan], [0.5]))


@pytest.mark.parametrize('personalized,local,name', [
    ([], [], 'personalized'),
    ([0.5, 0.6], [0.5], 'local'),
])
def test_fairness_rejects_empty_or_unequal_lengths(personalized, local, name):
  with pytest.raises(ValueError, match=name):
    costs.fairness(personalized, local)


@pytest.mark.parametrize('build', [
    lambda: tff_perfed.build_ditto(_model_fn, client_learning_rate=0.1,
                                   personal_learning_rate=0.1,
                                   regularization=0.1),
    lambda: tff_perfed.build_apfl(_model_fn, learning_rate=0.1,
                                  mixing_weight=0.25),
    lambda: tff_perfed.build_pfedme(_model_fn, personal_learning_rate=0.1,
                                    regularization=1.0, inner_steps=2,
                                    local_learning_rate=0.1, local_steps=1,
                                    server_learning_rate=1.0),
], ids=['ditto', 'apfl', 'pfedme'])
def test_personal_models_stay_on_the_clients_and_cost_no_bytes(
    fedavg_cost, build):
  # What crosses is FedAvg's (the global model down, its update, weight and
  # metric sums up) plus the int32 non-finite flag: a client's personal
  # model (and APFL's mixing weight) never leaves it.
  cost = costs.communication_bytes(build())
  assert cost.down_bytes_per_client == fedavg_cost.down_bytes_per_client
  assert cost.up_bytes_per_client == (
      fedavg_cost.up_bytes_per_client + INT32_BYTES)
