"""Importing tff_perfed owns TFF's default context, and only that one."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import runtime
from tff_perfed.runtime import default_context


def _add_one(x):
  return x + 1


def test_tff_local_cpp_context_is_replaced_by_an_owned_one(
    restore_default_context):
  del restore_default_context
  tff.backends.native.set_sync_local_cpp_execution_context()
  assert default_context.is_tff_local_cpp_context(
      tff.framework.get_context_stack().current)
  assert default_context.own_default_context()
  current = tff.framework.get_context_stack().current
  assert not default_context.is_tff_local_cpp_context(current)
  runtime.shutdown_workers()  # Only the new context may start one now.
  add_one = tff.tensorflow.computation(_add_one, tff.TensorType(np.int32))
  assert add_one(1) == 2
  # The worker that ran it is owned: started by local_cpp, and every
  # worker child of this process is such a one.
  owned = runtime.running_worker_pids()
  assert len(owned) == 1
  assert runtime.local_cpp.child_worker_pids() == owned


def test_a_context_the_program_installed_is_left_alone(
    restore_default_context):
  del restore_default_context
  mine = runtime.create_local_execution_context(default_num_clients=3)
  tff.framework.set_default_context(mine)
  assert not default_context.own_default_context()
  assert tff.framework.get_context_stack().current is mine


def test_with_a_gpu_visible_tff_context_is_replaced_by_in_process(
    restore_default_context, monkeypatch):
  del restore_default_context
  tff.backends.native.set_sync_local_cpp_execution_context()
  real = tf.config.list_physical_devices
  monkeypatch.setattr(
      tf.config, 'list_physical_devices',
      lambda kind=None: ['/physical_device:GPU:0'] if kind == 'GPU' else
      real(kind))
  assert default_context.own_default_context()
  current = tff.framework.get_context_stack().current
  assert hasattr(current, 'in_process_runtime')
  add_one = tff.tensorflow.computation(_add_one, tff.TensorType(np.int32))
  assert add_one(1) == 2
