"""The remote runtime: clients split across TFF workers, same numbers.

Every algorithm is run on the session's local C++ context (the reference)
and on two local workers reached over gRPC, with an odd number of clients
so that the workers get different numbers of them.
"""

import asyncio
import collections
import logging
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
from tff_perfed import errors
from tff_perfed import models
import processes
from tff_perfed import runtime
from tff_perfed import validation
from tff_perfed.algorithms import learning_utils
from tff_perfed.program import training_loop
from tff_perfed.runtime import default_context
from tff_perfed.runtime import local_cpp
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
  # Moved from `default_context._child_workers` to `local_cpp`.
  child_worker_pids = getattr(local_cpp, 'child_worker_pids', None) or (
      default_context._child_workers)  # pylint: disable=protected-access
  assert not set(pids) & set(child_worker_pids())


def _stop(pids):
  """Kills and reaps the workers `pids`, and only them.

  The module's pair of workers serves tests after those that kill theirs.
  """
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  # pylint: disable=protected-access
  with local_cpp._workers_lock:
    owned = [p for p in local_cpp._workers if p.pid in pids]
  # pylint: enable=protected-access
  for process in owned:
    process.wait()
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



def _split_halves():
  model = models.build_mlp_split(input_dim=DIM, num_classes=CLASSES, seed=0)
  return (lambda: model.encoder), (lambda: model.head)


CLIENT_STATE_PROCESSES = {
    'ditto': lambda: tff_perfed.build_ditto(
        _model, client_learning_rate=0.1, personal_learning_rate=0.2,
        regularization=0.5, local_steps=1, personal_steps=2),
    'apfl': lambda: tff_perfed.build_apfl(
        _model, learning_rate=0.1, mixing_weight=0.25,
        adapt_mixing_weight=True, local_steps=1),
    'fedrep': lambda: tff_perfed.build_fedrep(
        *_split_halves(), learning_rate=0.1, head_steps=2, body_steps=1),
}


@pytest.mark.parametrize('name', sorted(CLIENT_STATE_PROCESSES))
def test_client_state_rounds_match_the_local_context(
    two_workers, restore_default_context, name):
  """Clients' states go out to the workers and come back as on one."""
  del restore_default_context
  process = CLIENT_STATE_PROCESSES[name]()
  data = _client_data(seed=3)

  def two_rounds():
    state = process.initialize()
    client_states = [process.initial_client_state(
        process.get_model_weights(state))] * len(data)
    for _ in range(2):
      output = process.next(state, data, client_states)
      state, client_states = output.state, output.client_states
    weights = process.get_model_weights(state)
    return ([np.asarray(w) for w in weights.trainable] +
            [np.asarray(x) for x in tf.nest.flatten(client_states)],
            tf.nest.map_structure(np.asarray, output.metrics))

  _assert_same_round(*_on_both(two_workers, two_rounds))

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


def test_clients_data_is_sent_once_when_the_result_needs_it_once(
    two_workers, restore_default_context):
  del restore_default_context
  size = 250_000  # float32: 1 MB per client.

  vector = tff.TensorType(np.float32, [size])

  @tff.tensorflow.computation(vector)
  def total(x):
    return tf.reduce_sum(x)

  @tff.federated_computation(tff.FederatedType(vector, tff.CLIENTS))
  def mean_of_sums(xs):
    return tff.federated_mean(tff.federated_map(total, xs))

  tff.framework.set_default_context(two_workers)
  xs = [np.full([size], i, np.float32) for i in (1, 3)]
  before = remote.bytes_moved(two_workers)['sent']
  assert mean_of_sums(xs) == pytest.approx(2.0 * size)
  sent = remote.bytes_moved(two_workers)['sent'] - before
  # Each client's 1 MB once, plus computations and the merged mean; TFF's
  # mergeable form would send the first slice's client again (3 MB).
  assert 2 * 4 * size < sent < 2.5 * 4 * size


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


def _two_fresh_workers(**options):
  """A remote context on two new workers (for tests that kill one).

  Args:
    **options: For `create_remote_execution_context`.

  Returns:
    `(context, second_addresses, first_pids, second_pids)`; the context is
    the default one.
  """
  first, first_pids = _start_workers(1)
  second, second_pids = _start_workers(1)
  context = remote.create_remote_execution_context(first + second, **options)
  tff.framework.set_default_context(context)
  return context, second, first_pids, second_pids


def _kill(pid):
  os.kill(pid, signal.SIGKILL)
  os.waitpid(pid, 0)


def _cpu_seconds(pid):
  """User plus system CPU time `pid` has used."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _kill_once_busy(pid, cpu_seconds=0.3, timeout=60):
  """Starts a thread killing `pid` once it has computed for `cpu_seconds`.

  So that the kill falls inside a computation, however loaded the machine.
  """
  baseline = _cpu_seconds(pid)

  def kill_when_busy():
    deadline = time.monotonic() + timeout
    while (_cpu_seconds(pid) - baseline < cpu_seconds and
           time.monotonic() < deadline):
      time.sleep(0.02)
    _kill(pid)

  killer = threading.Thread(target=kill_when_busy)
  killer.start()
  return killer


@tff.tensorflow.computation(tff.TensorType(np.float32))
def _double(x):
  return 2.0 * x


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _mean_of_doubles(xs):
  return tff.federated_mean(tff.federated_map(_double, xs))


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _doubles_and_their_sum(xs):
  doubles = tff.federated_map(_double, xs)
  return doubles, tff.federated_sum(doubles)


def test_lost_workers_steps_are_spread_over_the_live_ones():
  assert [remote.assign_worker(i, 3, [0, 1, 2]) for i in range(3)] == [0, 1, 2]
  # Worker 1 lost: its slice goes to a live worker, the others stay put.
  assert [remote.assign_worker(i, 3, [0, 2]) for i in range(3)] == [0, 2, 2]
  assert [remote.assign_worker(i, 3, [2]) for i in range(3)] == [2, 2, 2]
  assert remote.assign_worker(0, 2, [1]) == 1  # A merge without worker 0.


@pytest.mark.parametrize('options, argument', [
    (dict(min_workers=0), 'min_workers'),
    (dict(min_workers=2), 'min_workers'),  # Only one worker given.
    (dict(retry_on_worker_loss='yes'), 'retry_on_worker_loss'),
    (dict(call_timeout_seconds=0), 'call_timeout_seconds'),
])
def test_bad_retry_options_name_the_option(options, argument):
  with pytest.raises(validation.ArgumentError) as raised:
    remote.create_remote_execution_context('127.0.0.1:1', **options)
  assert raised.value.argument == argument


def test_worker_killed_between_rounds_is_retried_or_named(
    restore_default_context, caplog):
  del restore_default_context
  retrying, second, first_pids, second_pids = _two_fresh_workers()
  no_retry = remote.create_remote_execution_context(
      retrying.addresses, retry_on_worker_loss=False)
  needs_both = remote.create_remote_execution_context(retrying.addresses,
                                                      min_workers=2)
  xs = [1.0, 2.0, 3.0]  # Slices [1, 2] and [3].
  assert _mean_of_doubles(xs) == pytest.approx(4.0)
  _kill(second_pids[0])

  tff.framework.set_default_context(no_retry)
  start = time.monotonic()
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    _mean_of_doubles(xs)
  assert time.monotonic() - start < 60  # An error, not a hang.
  assert raised.value.address == second[0]
  assert str(raised.value).startswith(f'TFF worker {second[0]} cannot be '
                                      'reached (UNAVAILABLE')
  assert isinstance(raised.value, errors.RunError)
  assert raised.value.exit_code == 1
  assert no_retry.live_addresses == no_retry.addresses  # Nothing marked.

  tff.framework.set_default_context(needs_both)
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    _mean_of_doubles(xs)
  assert raised.value.address == second[0]
  assert 'fewer than min_workers=2' in str(raised.value)
  assert '\n' not in str(raised.value)

  tff.framework.set_default_context(retrying)
  with caplog.at_level(logging.WARNING):
    assert _mean_of_doubles(xs) == pytest.approx(4.0)
  lost_lines = [r.getMessage() for r in caplog.records
                if 'lost' in r.getMessage()]
  assert len(lost_lines) == 1 and second[0] in lost_lines[0], lost_lines
  assert retrying.live_addresses == retrying.addresses[:1]
  assert list(retrying.lost_workers()) == second
  # Per-client results still come back in client order, and later calls
  # go to the live worker without another warning.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert _doubles_and_their_sum(xs) == ([2.0, 4.0, 6.0], 12.0)
  assert not caplog.records

  _kill(first_pids[0])  # None left: one line naming the last one.
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    _mean_of_doubles(xs)
  assert raised.value.address == retrying.addresses[0]
  message = str(raised.value)
  assert f'no TFF worker left (lost: {second[0]}, {retrying.addresses[0]})' in (
      message) and 'resume' in message and '\n' not in message
  for context in (retrying, no_retry, needs_both):
    context.close()
  _stop(first_pids + second_pids)


# Iterations of `_slow_plus_count` per unit of its argument: 1-2 s of a
# worker's time.
_ITERATIONS_PER_UNIT = 200_000


@tff.tensorflow.computation(tff.TensorType(np.float32))
def _slow_plus_count(x):
  """`x` + the number of loop steps it took: `x * _ITERATIONS_PER_UNIT`."""
  steps = tf.cast(x, tf.int32) * _ITERATIONS_PER_UNIT
  count, _ = tf.while_loop(lambda i, _: i < steps,
                           lambda i, y: (i + 1, y), (0, x))
  return x + tf.cast(count, tf.float32)


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _sum_of_slow(xs):
  return tff.federated_sum(tff.federated_map(_slow_plus_count, xs))


def test_worker_killed_mid_computation_is_retried_on_the_other_worker(
    restore_default_context, caplog):
  del restore_default_context
  context, second, first_pids, second_pids = _two_fresh_workers()
  # The first slice is instant; the second one (on the second worker)
  # computes for seconds and is killed after 0.3 s of it.
  xs = [0.0, 2.0]
  expected = 0.0 + 2.0 + 2 * _ITERATIONS_PER_UNIT  # Exact in float32.
  killer = _kill_once_busy(second_pids[0])
  with caplog.at_level(logging.WARNING):
    assert _sum_of_slow(xs) == expected
  killer.join()
  assert not processes.alive(second_pids[0])
  assert list(context.lost_workers()) == second
  assert any(second[0] in r.getMessage() and 'UNAVAILABLE' in r.getMessage()
             for r in caplog.records), caplog.text
  context.close()
  _stop(first_pids + second_pids)


def test_worker_killed_mid_computation_fails_it_naming_it_without_retries(
    restore_default_context):
  del restore_default_context
  context, second, first_pids, second_pids = _two_fresh_workers(
      retry_on_worker_loss=False)
  # Both slices compute for minutes: only the error can end the call.
  killer = _kill_once_busy(second_pids[0])
  start = time.monotonic()
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    _sum_of_slow([1000.0, 1000.0])
  assert time.monotonic() - start < 60
  assert raised.value.address == second[0]
  killer.join()
  context.close()
  _stop(first_pids + second_pids)  # The first one is still computing.


def test_frozen_worker_is_lost_after_the_call_timeout_and_retried(
    restore_default_context, caplog):
  del restore_default_context
  context, second, first_pids, second_pids = _two_fresh_workers(
      call_timeout_seconds=3.0)
  assert _mean_of_doubles([1.0, 2.0, 3.0]) == pytest.approx(4.0)
  os.kill(second_pids[0], signal.SIGSTOP)  # Alive, connected, silent.
  start = time.monotonic()
  with caplog.at_level(logging.WARNING):
    assert _doubles_and_their_sum([1.0, 2.0, 3.0]) == ([2.0, 4.0, 6.0], 12.0)
  assert 3.0 <= time.monotonic() - start < 30
  assert list(context.lost_workers()) == second
  assert 'call_timeout_seconds=3' in context.lost_workers()[second[0]]
  assert any(second[0] in r.getMessage() for r in caplog.records)
  context.close()
  _stop(first_pids + second_pids)  # SIGKILL ends a stopped process too.


_RUN_ROUNDS = 3


class _MetricsRecorder(tff.program.ReleaseManager):
  """Keeps every released value by key (round number)."""

  def __init__(self):
    self.by_round = {}

  async def release(self, value, key):
    if 'train/loss' in value:  # Not round 0's (empty) evaluation.
      self.by_round[key] = value


@pytest.fixture(scope='module')
def training_process():
  return tff_perfed.build_per_fedavg(_model, inner_learning_rate=0.1,
                                     outer_learning_rate=0.5, local_steps=1)


def _library_run(process, context, checkpoint_dir, before_round=None):
  """A checkpointed `run_training_loop` on `context`: weights and metrics.

  Args:
    process: The learning process.
    context: Where it runs.
    checkpoint_dir: Its checkpoints (a resume if some are there).
    before_round: Called with each round number before it runs.

  Returns:
    `(final trainable weights, released metrics by round, saved rounds)`.
  """
  # Put back after: the module fixture `uninterrupted_run` calls this before
  # any test's `restore_default_context` looks, and a dead remote context
  # left as the default hangs the next test file on this pytest worker.
  previous = tff.framework.get_context_stack().current
  tff.framework.set_default_context(context)
  data = _client_data(seed=5)

  def training_data_fn(round_num):
    if before_round is not None:
      before_round(round_num)
    return data[round_num % 2:]  # 4 or 5 clients: the split changes.

  recorder = _MetricsRecorder()
  state_manager = tff.program.FileProgramStateManager(str(checkpoint_dir))
  try:
    state = training_loop.run_training_loop(
        process, training_data_fn=training_data_fn, total_rounds=_RUN_ROUNDS,
        state_manager=state_manager, release_managers=[recorder])
    weights = [np.asarray(w) for w in
               process.get_model_weights(state).trainable]
  finally:
    saved = sorted(asyncio.run(state_manager.get_versions()) or [])
    tff.framework.set_default_context(previous)
  return weights, recorder.by_round, saved


@pytest.fixture(scope='module')
def uninterrupted_run(training_process, two_workers, tmp_path_factory):
  return _library_run(training_process, two_workers,
                      tmp_path_factory.mktemp('uninterrupted'))


def _assert_same_run(expected_weights, expected_metrics, weights, metrics):
  for expected, actual in zip(expected_weights, weights, strict=True):
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
  for name in ('train/loss', 'train/num_examples'):
    np.testing.assert_allclose(metrics[name], expected_metrics[name],
                               rtol=1e-6, atol=1e-6)


def _kill_at_round(pid, round_num):
  return lambda r: _kill(pid) if r == round_num else None


def test_run_losing_a_worker_mid_run_ends_as_an_uninterrupted_run(
    training_process, uninterrupted_run, tmp_path, restore_default_context,
    caplog):
  del restore_default_context
  expected_weights, expected_metrics, _ = uninterrupted_run
  context, second, first_pids, second_pids = _two_fresh_workers()
  with caplog.at_level(logging.WARNING):
    weights, metrics, saved = _library_run(
        training_process, context, tmp_path,
        before_round=_kill_at_round(second_pids[0], 2))
  assert list(context.lost_workers()) == second
  assert sum(second[0] in r.getMessage() for r in caplog.records) == 1
  assert list(metrics) == [1, 2, 3] and saved[-1] == _RUN_ROUNDS
  for round_num in metrics:
    _assert_same_run([], expected_metrics[round_num], [], metrics[round_num])
  _assert_same_run(expected_weights, expected_metrics[3], weights, metrics[3])
  context.close()
  _stop(first_pids + second_pids)


def test_run_without_retries_stops_naming_the_worker_and_resumes_on_the_rest(
    training_process, uninterrupted_run, tmp_path, restore_default_context):
  del restore_default_context
  expected_weights, expected_metrics, _ = uninterrupted_run
  context, second, first_pids, second_pids = _two_fresh_workers(
      retry_on_worker_loss=False)
  with pytest.raises(remote.WorkerUnavailableError) as raised:
    _library_run(training_process, context, tmp_path,
                 before_round=_kill_at_round(second_pids[0], 2))
  assert raised.value.address == second[0]
  assert '\n' not in str(raised.value)
  # Nothing of round 2 was saved: the newest checkpoint is round 1's.
  assert max(asyncio.run(tff.program.FileProgramStateManager(
      str(tmp_path)).get_versions())) == 1
  context.close()

  left = remote.create_remote_execution_context(context.addresses[:1])
  weights, metrics, saved = _library_run(training_process, left, tmp_path)
  assert list(metrics) == [2, 3] and saved[-1] == _RUN_ROUNDS  # Resumed.
  # One worker sums what two summed in halves: the same up to rounding.
  _assert_same_run(expected_weights, expected_metrics[3], weights, metrics[3])
  left.close()
  _stop(first_pids + second_pids)


def test_worker_binary_serves_a_driver_and_stops_on_sigterm(
    restore_default_context):
  del restore_default_context
  port = portpicker.pick_unused_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'tff_perfed.binaries.worker', f'--port={port}'], cwd=ROOT,
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
      [sys.executable, '-m', 'tff_perfed.binaries.worker', '--port=70000'], cwd=ROOT,
      capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 2
  lines = result.stderr.decode().strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and (
      'port' in lines[0]), lines
  assert not result.stdout
