"""The remote runtime: clients split across TFF workers, same numbers.

Every algorithm is run on the session's local C++ context (the reference)
and on two local workers reached over gRPC, with an odd number of clients
so that the workers get different numbers of them.
"""

import collections
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import portpicker
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import tff_perfed
from tff_perfed import models
import processes
from tff_perfed import runtime
from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.runtime import default_context
from tff_perfed.runtime import remote

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
DIM, CLASSES, BATCH, NUM_CLIENTS = 64, 10, 4, 5


def _start_workers(n):
  """Starts `n` local workers; returns their addresses and pids."""
  before = set(runtime.running_worker_pids())
  addresses = remote.start_local_workers(n)
  pids = sorted(set(runtime.running_worker_pids()) - before)
  assert len(pids) == n
  return addresses, pids



def _assert_gone(pids, timeout=20):
  processes.assert_gone(pids, timeout)
  # pylint: disable-next=protected-access
  assert not set(pids) & set(default_context._child_workers())


def _stop(pids):
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  runtime.shutdown_workers()  # Reaps them (and the session's worker).
  _assert_gone(pids)


@pytest.fixture(scope='module')
def two_workers():
  addresses, pids = _start_workers(2)
  context = remote.create_remote_execution_context(addresses)
  yield context
  context.close()
  _stop(pids)


def _client_data(seed=0):
  rng = np.random.default_rng(seed)
  datasets = []
  for i in range(NUM_CLIENTS):
    batches = 3 + i  # Clients of different sizes.
    datasets.append(tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.normal(size=(batches, BATCH, DIM)).astype(np.float32),
        y=rng.integers(0, CLASSES, size=(batches, BATCH)).astype(np.int32))))
  return datasets


def _model():
  return models.build_mlp(input_dim=DIM, num_classes=CLASSES, seed=0)


def _rounds(process, rounds, data):
  state = process.initialize()
  for _ in range(rounds):
    output = process.next(state, data)
    state = output.state
  weights = process.get_model_weights(state)
  return ([np.asarray(w) for w in weights.trainable],
          tf.nest.map_structure(np.asarray, output.metrics))


def _on_both(context, fn):
  """`fn()` on the local `cpp` reference, then on `context`."""
  runtime.set_execution_context('cpp', handle_sigterm=False)
  reference = fn()
  tff.framework.set_default_context(context)
  return reference, fn()


def _assert_same_round(reference, result):
  (weights, metrics), (remote_weights, remote_metrics) = reference, result
  assert weights and len(weights) == len(remote_weights)
  # Partial sums merged across workers round differently from one sum;
  # the Hessian-free difference (over 2d = 2e-3) amplifies that to ~5e-7.
  for expected, actual in zip(weights, remote_weights):
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
  tf.nest.map_structure(
      lambda e, a: np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7),
      metrics, remote_metrics)


@pytest.mark.parametrize('hessian_mode', list(tff_perfed.HessianMode))
def test_per_fedavg_rounds_match_the_local_context(two_workers,
                                                   restore_default_context,
                                                   hessian_mode):
  del restore_default_context
  process = tff_perfed.build_per_fedavg(_model, inner_learning_rate=0.1,
                                        outer_learning_rate=0.5,
                                        local_steps=1,
                                        hessian_mode=hessian_mode)
  data = _client_data()
  before = remote.bytes_moved(two_workers)
  reference, result = _on_both(two_workers, lambda: _rounds(process, 2, data))
  _assert_same_round(reference, result)
  # Every client counted once: sizes 3..7 batches of 4, one step of 3.
  assert result[1]['client_work']['train']['num_examples'] == 4 * NUM_CLIENTS
  after = remote.bytes_moved(two_workers)
  # At least the 5 datasets went out and the model's 6 float32 tensors
  # (64*80 + 80 + 80*60 + 60 + 60*10 + 10 of them) came back.
  num_weights = 64 * 80 + 80 + 80 * 60 + 60 + 60 * 10 + 10
  assert after['sent'] - before['sent'] > 4 * DIM * BATCH * 25
  assert after['received'] - before['received'] > 4 * num_weights
  by_worker = two_workers.bytes_moved()
  assert len(by_worker) == 2 and all(w['sent'] > 0 and w['received'] > 0
                                     for w in by_worker.values())


def test_fedavg_round_matches_the_local_context(two_workers,
                                                restore_default_context):
  del restore_default_context
  process = tff_perfed.build_fedavg(_model, client_learning_rate=0.1)
  data = _client_data(seed=1)
  _assert_same_round(*_on_both(two_workers, lambda: _rounds(process, 1,
                                                            data)))


def test_afml_round_matches_the_local_context(two_workers,
                                              restore_default_context):
  del restore_default_context

  def split_model():
    return models.build_mlp_split(input_dim=DIM, num_classes=CLASSES, seed=0)

  process = tff_perfed.build_afml(
      lambda: split_model().encoder, lambda: split_model().head,
      inner_learning_rate=0.3, alpha=0.2, beta=0.01, head_learning_rate=0.5,
      encoder_learning_rate=0.4, initial_encoder_scale=0.05)
  data = _client_data(seed=2)
  reference, result = _on_both(two_workers, lambda: _rounds(process, 1, data))
  _assert_same_round(reference, result)


def test_personalization_eval_per_client_results_match(
    two_workers, restore_default_context):
  del restore_default_context
  model = _model()
  evaluate = tff_perfed.build_personalization_eval(
      model, personalization_steps=2, learning_rate=0.1)
  weights = learning_utils.build_initial_weights_computation(model)()
  train, test = _client_data(seed=3), _client_data(seed=4)
  reference, result = _on_both(two_workers,
                               lambda: evaluate(weights, train, test))
  assert len(result) == len(reference) == NUM_CLIENTS
  # In client order: test sets of 3..7 batches of 4 examples.
  assert [r['num_test_examples'] for r in result] == [12, 16, 20, 24, 28]
  for expected, actual in zip(reference, result):
    assert list(actual) == list(expected)
    for name in expected:
      np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6)


def test_one_worker_and_more_workers_than_clients(two_workers,
                                                  restore_default_context):
  del restore_default_context

  @tff.tensorflow.computation(tff.TensorType(np.int32))
  def add_one(x):
    return x + 1

  @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
  def per_client_and_sum(xs):
    ys = tff.federated_map(add_one, xs)
    return ys, tff.federated_sum(ys)

  tff.framework.set_default_context(two_workers)
  assert add_one(1) == 2
  assert per_client_and_sum([1]) == ([2], 2)  # One client: one worker.
  assert per_client_and_sum([1, 2, 3]) == ([2, 3, 4], 9)
  times = tff.tensorflow.computation(lambda a, b: a * b, np.int32, np.int32)

  @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
  def sum_times_sum(xs):  # Two dependent aggregations: not split.
    total = tff.federated_broadcast(tff.federated_sum(xs))
    return tff.federated_sum(tff.federated_map(times, tff.federated_zip(
        (xs, total))))
  assert sum_times_sum([1, 2, 3]) == 36  # On one worker, with a warning.
  single = remote.create_remote_execution_context(two_workers.addresses[:1])
  tff.framework.set_default_context(single)
  assert per_client_and_sum([1, 2, 3]) == ([2, 3, 4], 9)
  single.close()


@pytest.mark.parametrize('workers', [
    '', [], 'localhost', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:65536',
    '127.0.0.1:80x', ':8000', 'a b:8000', ['127.0.0.1:8000', 'nope'],
    '127.0.0.1:8000,', 'http://127.0.0.1:8000'
])
def test_bad_addresses_name_the_workers_argument(workers):
  with pytest.raises(validation.ArgumentValueError) as raised:
    remote.create_remote_execution_context(workers)
  assert raised.value.argument == 'workers'
  assert 'host:port' in str(raised.value)


def test_good_addresses_are_accepted():
  assert remote.parse_workers('127.0.0.1:8000, worker-1.local:65535') == [
      '127.0.0.1:8000', 'worker-1.local:65535']
  assert remote.parse_workers(['[::1]:1']) == ['[::1]:1']


def test_unreachable_worker_is_named_within_the_timeout():
  address = f'127.0.0.1:{portpicker.pick_unused_port()}'  # Nobody listens.
  start = time.monotonic()
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    remote.create_remote_execution_context(address, timeout_seconds=1.0)
  assert time.monotonic() - start < 10
  assert raised.value.address == address
  message = str(raised.value)
  assert message.startswith(f'TFF worker {address} cannot be reached')
  assert '\n' not in message


def _two_fresh_workers():
  """A default remote context on two new workers (for tests that kill one).

  Returns:
    `(context, second_addresses, first_pids, second_pids)`.
  """
  first, first_pids = _start_workers(1)
  second, second_pids = _start_workers(1)
  context = remote.create_remote_execution_context(first + second)
  tff.framework.set_default_context(context)
  return context, second, first_pids, second_pids


def test_worker_killed_between_rounds_fails_the_next_round_naming_it(
    restore_default_context):
  del restore_default_context
  context, second, first_pids, second_pids = _two_fresh_workers()

  @tff.tensorflow.computation(tff.TensorType(np.float32))
  def double(x):
    return 2.0 * x

  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def round_fn(xs):
    return tff.federated_mean(tff.federated_map(double, xs))

  assert round_fn([1.0, 2.0, 3.0]) == pytest.approx(4.0)
  os.kill(second_pids[0], signal.SIGKILL)
  os.waitpid(second_pids[0], 0)
  start = time.monotonic()
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    round_fn([1.0, 2.0, 3.0])
  assert time.monotonic() - start < 60  # An error, not a hang.
  assert raised.value.address == second[0]
  assert str(raised.value).startswith(f'TFF worker {second[0]} cannot be '
                                      'reached (UNAVAILABLE')
  context.close()
  _stop(first_pids + second_pids)


def test_worker_killed_mid_computation_fails_it_naming_it(
    restore_default_context):
  del restore_default_context
  context, second, first_pids, second_pids = _two_fresh_workers()

  @tff.tensorflow.computation(tff.TensorType(np.float32))
  def slow(x):  # Minutes of work.
    _, x = tf.while_loop(lambda i, _: i < 10**9,
                         lambda i, x: (i + 1, x * 1.0000001), (0, x))
    return x

  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def round_fn(xs):
    return tff.federated_sum(tff.federated_map(slow, xs))

  killer = threading.Timer(1.0, os.kill, (second_pids[0], signal.SIGKILL))
  killer.start()
  start = time.monotonic()
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    round_fn([1.0, 2.0])
  assert time.monotonic() - start < 60
  assert raised.value.address == second[0]
  killer.join()
  context.close()
  _stop(first_pids + second_pids)  # The first one is still computing.



def test_worker_binary_serves_a_driver_and_stops_on_sigterm(
    restore_default_context):
  del restore_default_context
  port = portpicker.pick_unused_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'binaries.worker', f'--port={port}'], cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=dict(os.environ, PYTHONPATH=ROOT))
  try:
    line = process.stdout.readline().decode()  # Once it accepts calls.
    assert f':{port}' in line and 'tensorflow_federated 0.87.0' in line, (
        line, process.stderr.read(2000) if process.poll() is not None else '')
    workers = processes.children_named(process.pid)
    assert len(workers) == 1
    context = remote.set_remote_execution_context([f'127.0.0.1:{port}'],
                                                  timeout_seconds=10)
    add_one = tff.tensorflow.computation(lambda x: x + 1,
                                         tff.TensorType(np.int32))
    assert add_one(41) == 42
    assert remote.bytes_moved(context)['received'] > 0
    context.close()
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - start < 15
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert not stdout and b'Traceback' not in stderr
    _assert_gone(workers)
  finally:
    if process.poll() is None:
      process.kill()
      process.communicate()


def test_worker_binary_bad_flag_is_one_error_line():
  result = subprocess.run(
      [sys.executable, '-m', 'binaries.worker', '--port=70000'], cwd=ROOT,
      capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 2
  lines = result.stderr.decode().strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and (
      'port' in lines[0]), lines
  assert not result.stdout
