"""The in_process runtime computes what TFF's C++ worker computes.

Every algorithm is trained and evaluated end to end (`run_experiment`: the
learning process, the per-client evaluation whose results stay at CLIENTS,
checkpoints) once on `cpp` and once on `in_process`, and every number of
`metrics.csv` is compared. Client placement over several devices is observed
on two logical CPUs in a subprocess (TF's devices are fixed when it starts).
"""

import collections
import csv
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
from tff_perfed import runtime
from tff_perfed import validation
from tff_perfed.algorithms.meta_gradients import HessianMode
from tff_perfed.program import RunConfig
from tff_perfed.program import run_experiment
from tff_perfed.runtime import in_process
from tff_perfed.runtime import tensorflow_graphs

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def _metrics(output_dir):
  with open(os.path.join(output_dir, 'metrics.csv')) as f:
    return [{name: float(value) for name, value in row.items()
             if value and not name.endswith('seconds')}
            for row in csv.DictReader(f)]


def _run(runtime_name, output_dir, **settings):
  runtime.set_execution_context(runtime_name, handle_sigterm=False)
  settings = dict(
      dict(dataset='digits', rounds=2, eval_every=1, clients_per_round=4,
           local_steps=2, num_eval_clients=4, personalization_steps=2,
           adaptation_draws=2), **settings)
  config = RunConfig.from_settings(dict(settings, output_dir=str(output_dir)))
  return run_experiment(config, show_progress=False)


@pytest.mark.parametrize('algorithm, hessian_mode', [
    ('per_fedavg', HessianMode.FIRST_ORDER),
    ('per_fedavg', HessianMode.HESSIAN_FREE),
    ('per_fedavg', HessianMode.EXACT),
    ('fedavg', HessianMode.FIRST_ORDER),
    ('afml', HessianMode.FIRST_ORDER),
    # Clients with state: a whole personal model, and a personal head.
    ('ditto', HessianMode.FIRST_ORDER),
    ('fedper', HessianMode.FIRST_ORDER),
])
def test_every_algorithm_trains_and_evaluates_to_the_cpp_numbers(
    tmp_path, restore_default_context, algorithm, hessian_mode):
  del restore_default_context
  settings = {'algorithm': algorithm, 'per_fedavg.hessian_mode': hessian_mode}
  cpp = _run('cpp', tmp_path / 'cpp', **settings)
  local = _run('in_process', tmp_path / 'in_process', **settings)
  cpp_rows, local_rows = _metrics(tmp_path / 'cpp'), _metrics(
      tmp_path / 'in_process')
  assert [sorted(r) for r in cpp_rows] == [sorted(r) for r in local_rows]
  for cpp_row, local_row in zip(cpp_rows, local_rows):
    for name, value in cpp_row.items():
      np.testing.assert_allclose(local_row[name], value, rtol=1e-5,
                                 atol=1e-6, err_msg=name)
  assert cpp.client_ids == local.client_ids
  for name, value in cpp.summary.items():
    np.testing.assert_allclose(local.summary[name], value, rtol=1e-5,
                               atol=1e-6, err_msg=name)


def test_a_run_checkpointed_on_cpp_resumes_on_in_process_to_the_same_end(
    tmp_path, restore_default_context):
  del restore_default_context
  straight = _run('cpp', tmp_path / 'straight', rounds=3)
  _run('cpp', tmp_path / 'switched', rounds=2)
  switched = _run('in_process', tmp_path / 'switched', rounds=3)
  for name, value in straight.summary.items():
    np.testing.assert_allclose(switched.summary[name], value, rtol=1e-5,
                               atol=1e-6, err_msg=name)


def _shuffled(seed=3):
  return tf.data.Dataset.range(20).shuffle(20, seed=seed).repeat(2).batch(8)


def test_fresh_copy_iterates_as_the_never_iterated_dataset():
  expected = [b.numpy().tolist() for b in _shuffled()]
  dataset = _shuffled()
  first = [b.numpy().tolist() for b in dataset]
  second = [b.numpy().tolist() for b in dataset]
  assert first == expected and second != expected  # TF reshuffles.
  for _ in range(2):
    copy = in_process.fresh_copy(dataset)
    assert [b.numpy().tolist() for b in copy] == expected


def test_a_dataset_passed_to_several_calls_is_read_fresh_by_each(
    restore_default_context):
  del restore_default_context

  @tff.tensorflow.computation(tff.SequenceType(tff.TensorType(np.int64,
                                                              [None])))
  def first_batch(batches):
    return batches.take(1).get_single_element()

  dataset = _shuffled()
  runtime.set_execution_context('cpp', handle_sigterm=False)
  expected = first_batch(dataset)
  runtime.set_execution_context('in_process', handle_sigterm=False)
  for _ in range(3):
    np.testing.assert_array_equal(first_batch(dataset), expected)


def test_results_keep_tff_containers_and_client_lists(restore_default_context):
  del restore_default_context
  model = models.build_mlp(input_dim=4, num_classes=3, seed=0)
  evaluate = tff_perfed.build_personalization_eval(
      model, personalization_steps=1, learning_rate=0.1)
  rng = np.random.default_rng(0)

  def client(n):
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.normal(size=(n, 4)).astype(np.float32),
        y=rng.integers(0, 3, n).astype(np.int32))).batch(2)

  weights = tff.learning.models.ModelWeights(
      trainable=tuple(model.initial_weights[0]), non_trainable=())
  train, test = [client(4) for _ in range(3)], [client(5) for _ in range(3)]
  runtime.set_execution_context('cpp', handle_sigterm=False)
  expected = evaluate(weights, train, test)
  runtime.set_execution_context('in_process', handle_sigterm=False)
  results = evaluate(weights, train, test)
  assert isinstance(results, list) and len(results) == 3
  for result, want in zip(results, expected):
    assert type(result) is type(want) and list(result) == list(want)
    for name in want:
      np.testing.assert_allclose(result[name], want[name], rtol=1e-6)


def _proto(computation):
  return computation.get_proto(computation)


def test_only_pure_element_wise_additions_are_folded_without_tensorflow():
  pair = tff.StructType([tff.TensorType(np.float32, [2]),
                         tff.TensorType(np.int32)])

  @tff.tensorflow.computation(pair, pair)
  def add(a, b):
    return a[0] + b[0], a[1] + b[1]

  @tff.tensorflow.computation(pair, pair)
  def subtract(a, b):
    return a[0] - b[0], a[1] - b[1]

  @tff.tensorflow.computation(pair, pair)
  def crossed(a, b):
    return a[0] + a[0], a[1] + b[1]

  imported = tensorflow_graphs.import_tensorflow_computation(_proto(add))
  assert imported.is_addition
  for other in (subtract, crossed):
    assert not tensorflow_graphs.import_tensorflow_computation(
        _proto(other)).is_addition
  out = imported.call([np.float32([1, 2]), np.int32(3),
                       np.float32([10, 20]), np.int32(4)])
  np.testing.assert_array_equal(out[0], [11, 22])
  assert int(out[1]) == 7


def test_an_unknown_runtime_is_refused_naming_the_known_ones():
  with pytest.raises(validation.ArgumentValueError) as error:
    runtime.set_execution_context('gpu_cluster')
  for name in runtime.names():
    assert name in str(error.value)


_PLACEMENT_SCRIPT = r'''
import collections, json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tensorflow_federated as tff
import tff_perfed
from tff_perfed import models, runtime
from tff_perfed.runtime import in_process

# Observe where each TF call's outputs were produced.
seen = collections.Counter()
call = in_process._TensorFlowFunction.__call__
def recording_call(self, arg=None):
  result = call(self, arg)
  for tensor in tf.nest.flatten(result):
    if isinstance(tensor, tf.Tensor) and tensor.shape.rank == 2:
      seen[tensor.device] += 1
  return result
in_process._TensorFlowFunction.__call__ = recording_call

rng = np.random.default_rng(0)
data = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
    x=rng.normal(size=(12, 8)).astype(np.float32),
    y=rng.integers(0, 3, 12).astype(np.int32))).batch(2) for _ in range(5)]
process = tff_perfed.build_per_fedavg(
    lambda: models.build_mlp(input_dim=8, num_classes=3, seed=0),
    inner_learning_rate=0.1, outer_learning_rate=0.1, local_steps=2,
    hessian_mode=tff_perfed.HessianMode.EXACT)
weights = {}
for name, options in (('cpp', {}), ('in_process', {}),
                      ('in_process', dict(devices=['/CPU:0', '/CPU:1'],
                                          parallelism=2))):
  context = runtime.set_execution_context(name, handle_sigterm=False,
                                          **options)
  if options:
    seen_by_default = dict(seen)
    seen.clear()
    name = 'explicit'
    parallel = context.in_process_runtime.parallelism
  state, _ = process.next(process.initialize(), data)
  weights[name] = [w.tolist() for w in process.get_model_weights(
      state).trainable]
json.dump(dict(devices=runtime.local_devices(), seen=dict(seen),
               weights=weights, parallel=parallel,
               seen_by_default=seen_by_default), sys.stdout)
'''


def test_client_work_runs_on_every_local_device_with_the_cpp_numbers():
  result = subprocess.run(
      [sys.executable, '-c', _PLACEMENT_SCRIPT], cwd=ROOT, check=True,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3'))
  import json  # pylint: disable=g-import-not-at-top
  report = json.loads(result.stdout)
  assert len(report['devices']) == 2
  for seen in (report['seen_by_default'], report['seen']):
    used = {device.rsplit('/', 1)[-1] for device in seen}
    assert used == {'device:CPU:0', 'device:CPU:1'}, seen
  assert report['parallel'] == 2
  for other in ('in_process', 'explicit'):
    for cpp, local in zip(report['weights']['cpp'],
                          report['weights'][other]):
      np.testing.assert_allclose(local, cpp, rtol=1e-5, atol=1e-7)


def test_a_round_with_another_number_of_clients_builds_nothing_new(
    restore_default_context):
  del restore_default_context
  rng = np.random.default_rng(1)

  def clients(n):
    return [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.normal(size=(6, 4)).astype(np.float32),
        y=rng.integers(0, 3, 6).astype(np.int32))).batch(2)
            for _ in range(n)]

  process = tff_perfed.build_per_fedavg(
      lambda: models.build_mlp(input_dim=4, num_classes=3, seed=0),
      inner_learning_rate=0.1, outer_learning_rate=0.1)
  context = runtime.set_execution_context('in_process', handle_sigterm=False)
  state = process.initialize()
  state, _ = process.next(state, clients(3))
  built = dict(context.in_process_runtime.stats)
  five, seven = clients(5), clients(7)
  after_five, _ = process.next(state, five)
  after_seven, _ = process.next(state, seven)
  assert dict(context.in_process_runtime.stats) == built
  runtime.set_execution_context('cpp', handle_sigterm=False)
  for got, data in ((after_five, five), (after_seven, seven)):
    want, _ = process.next(state, data)
    for g, w in zip(process.get_model_weights(got).trainable,
                    process.get_model_weights(want).trainable):
      np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_a_sequence_reduce_at_clients_gives_the_cpp_result(
    restore_default_context):
  del restore_default_context

  @tff.tensorflow.computation(np.int64, np.int64)
  def add(a, b):
    return a + b

  @tff.tensorflow.computation
  def zero():
    return tf.constant(0, tf.int64)

  @tff.federated_computation(tff.SequenceType(np.int64))
  def reduce(dataset):
    return tff.sequence_reduce(dataset, zero(), add)

  @tff.federated_computation(
      tff.FederatedType(tff.SequenceType(np.int64), tff.CLIENTS))
  def totals(datasets):
    return tff.federated_map(reduce, datasets)

  data = [tf.data.Dataset.range(5), tf.data.Dataset.range(3)]
  runtime.set_execution_context('in_process', handle_sigterm=False)
  assert totals(data) == [10, 3]


def test_an_op_that_waits_on_a_parameter_still_receives_it(
    restore_default_context):
  # TF adds such control edges when a weight is passed on unused (AFML with
  # its regularizers switched off); import_graph_def's input_map does not
  # replace them.
  del restore_default_context

  @tff.tensorflow.computation(np.float32, np.float32)
  def doubled_after(x, unused):
    with tf.control_dependencies([unused]):
      return x * 2.0

  runtime.set_execution_context('in_process', handle_sigterm=False)
  assert doubled_after(1.5, 7.0) == 3.0


def test_secure_sums_are_plain_sums_in_simulation(
    restore_default_context):
  del restore_default_context
  client_ints = tff.FederatedType(np.int32, tff.CLIENTS)

  @tff.federated_computation(client_ints)
  def sums(values):
    return (tff.federated_secure_sum_bitwidth(values, 8),
            tff.federated_secure_sum(values, 100))

  runtime.set_execution_context('in_process', handle_sigterm=False)
  assert [int(x) for x in sums([3, 5, 9])] == [17, 17]


def _blocks_left_per_call(call, calls: int) -> float:
  """CPython memory blocks still allocated after each call, on average."""
  import gc  # pylint: disable=g-import-not-at-top
  for _ in range(5):
    call()
  gc.collect()
  before = sys.getallocatedblocks()
  for _ in range(calls):
    call()
  gc.collect()
  return (sys.getallocatedblocks() - before) / calls


def test_a_broadcast_value_becomes_tensors_once_for_all_clients(
    restore_default_context):
  # With TF 2.14 on Python 3.11 every EagerTensor leaves one CPython block
  # behind when it is freed (TF issue #62551): a broadcast value converted
  # anew in each client's call grew a run's memory by one block per leaf,
  # client and round.
  del restore_default_context
  num_leaves, num_clients = 20, 10
  weights_type = tff.StructType([tff.TensorType(np.float32, [3])] *
                                num_leaves)

  @tff.tensorflow.computation(weights_type, np.float32)
  def client_total(weights, offset):
    return tf.add_n([tf.reduce_sum(w) for w in weights]) + offset

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(np.float32, tff.CLIENTS))
  def totals(weights, offsets):
    return tff.federated_map(client_total, tff.federated_zip(
        (tff.federated_broadcast(weights), offsets)))

  runtime.set_execution_context('in_process', handle_sigterm=False)
  weights = [np.full([3], i, np.float32) for i in range(num_leaves)]
  offsets = [np.float32(c) for c in range(num_clients)]
  got = totals(weights, offsets)
  np.testing.assert_allclose(
      got, [3 * sum(range(num_leaves)) + c for c in range(num_clients)])
  left = _blocks_left_per_call(lambda: totals(weights, offsets), calls=100)
  # Expected: one tensor per leaf, one per client's offset and one per
  # client's result; a conversion per client would add
  # (num_clients - 1) * num_leaves = 180 more.
  expected = num_leaves + 2 * num_clients
  assert left < expected + 30, left


def test_the_context_caps_malloc_arenas_unless_told_otherwise(
    monkeypatch, restore_default_context):
  # Many glibc arenas each keep the pages freed in them: a 2,000-round
  # digits run ended 17-30 MiB lower with 2 arenas than with glibc's default.
  del restore_default_context
  asked = []
  monkeypatch.setattr(in_process, 'limit_malloc_arenas', asked.append)
  runtime.set_execution_context('in_process', handle_sigterm=False)
  in_process.create_in_process_execution_context(malloc_arenas=None)
  in_process.create_in_process_execution_context(malloc_arenas=4)
  assert asked == [in_process.DEFAULT_MALLOC_ARENAS, 4]
  with pytest.raises(validation.ArgumentError, match='malloc_arenas'):
    in_process.create_in_process_execution_context(malloc_arenas=0)


def test_a_malloc_arena_max_in_the_environment_wins(monkeypatch):
  monkeypatch.setenv('MALLOC_ARENA_MAX', '8')
  assert not in_process.limit_malloc_arenas(2)
  monkeypatch.delenv('MALLOC_ARENA_MAX')
  # glibc (this package's platforms) accepts the cap.
  assert in_process.limit_malloc_arenas(in_process.DEFAULT_MALLOC_ARENAS)
