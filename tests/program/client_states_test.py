"""The client-state store: exact round trips, checkpoint pairing, recovery."""

import asyncio
import collections
import os

import numpy as np
import pytest

from tff_perfed.program import checkpoints
from tff_perfed.program import client_states
from tff_perfed.program import outputs

STRUCTURE = collections.OrderedDict(
    personal=(np.zeros((2, 3), np.float32), np.zeros((3,), np.float32)),
    mixing_weight=np.float32(0))


def state(value: float):
  return collections.OrderedDict(
      personal=(np.full((2, 3), value, np.float32),
                np.arange(3, dtype=np.float32) * value),
      mixing_weight=np.float32(value / 10))


def assert_same_state(got, want):
  got_leaves = [np.asarray(x) for x in
                (got['personal'][0], got['personal'][1], got['mixing_weight'])]
  want_leaves = [want['personal'][0], want['personal'][1],
                 want['mixing_weight']]
  for g, w in zip(got_leaves, want_leaves):
    assert g.dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(g, w)


def test_a_state_reads_back_bit_identical_and_newcomers_have_none(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  store.write(1, 'writer/0 é', state(0.1))
  assert store.has_state('writer/0 é') and not store.has_state('other')
  assert_same_state(store.read('writer/0 é'), state(0.1))  # Maybe pending.
  store.flush()
  assert store.read('other') is None
  assert_same_state(store.read('writer/0 é'), state(0.1))  # From the disk.
  # An id with any characters gets a directory of its own.
  assert len(os.listdir(tmp_path)) == 1
  assert store.bytes_written == store.bytes_read > 0


def test_the_same_state_is_written_as_the_same_bytes(tmp_path):
  a = client_states.ClientStateStore(str(tmp_path / 'a'), STRUCTURE)
  b = client_states.ClientStateStore(str(tmp_path / 'b'), STRUCTURE)
  a.write(3, 'c', state(2.0))
  b.write(3, 'c', state(2.0))
  assert a.manifest() == b.manifest()
  name = client_states.client_directory_name('c')
  assert ((tmp_path / 'a' / name / '3.npy').read_bytes() ==
          (tmp_path / 'b' / name / '3.npy').read_bytes())


def test_restoring_a_manifest_removes_the_versions_written_after_it(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  store.write(1, 'a', state(1.0))
  store.write(2, 'b', state(2.0))
  saved = store.manifest()  # The checkpoint of round 2.
  store.write(3, 'a', state(3.0))  # A round the kill cut short.
  store.write(3, 'c', state(3.0))
  store.flush()
  reopened = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  reopened.restore(saved, 2)
  assert_same_state(reopened.read('a'), state(1.0))
  assert reopened.read('c') is None
  assert not any(name == '3.npy' for _, _, names in os.walk(tmp_path)
                 for name in names)


def test_a_manifest_naming_a_missing_or_resized_file_is_a_mismatch(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  store.write(1, 'a', state(1.0))
  manifest = store.manifest()
  assert store.mismatch(manifest) is None
  path = tmp_path / client_states.client_directory_name('a') / '1.npy'
  with open(path, 'ab') as f:
    f.write(b'x')
  assert 'has' in store.mismatch(manifest)
  path.unlink()
  assert 'missing' in store.mismatch(manifest)


def test_a_damaged_state_fails_its_crc_in_one_named_error(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  store.write(1, 'a', state(1.0))
  store.flush()
  path = tmp_path / client_states.client_directory_name('a') / '1.npy'
  data = bytearray(path.read_bytes())
  data[-1] ^= 0xFF  # Same size, other contents.
  path.write_bytes(bytes(data))
  with pytest.raises(client_states.ClientStateDamagedError,
                     match="client 'a'.*damaged"):
    store.read('a')


def test_versions_no_kept_checkpoint_names_are_removed(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  store.write(1, 'a', state(1.0))
  first = store.manifest()
  store.write(2, 'a', state(2.0))
  store.write(3, 'a', state(3.0))
  store.remove_unreferenced([first], up_to_round=3)
  directory = tmp_path / client_states.client_directory_name('a')
  # Round 1's (a kept checkpoint's) and round 3's (current) stay.
  assert sorted(os.listdir(directory)) == ['1.npy', '3.npy']


def run(coroutine):
  return asyncio.new_event_loop().run_until_complete(coroutine)


def test_a_checkpoint_whose_store_does_not_match_falls_back_to_the_last_pair(
    tmp_path):
  store = client_states.ClientStateStore(str(tmp_path / 'states'), STRUCTURE)
  manager = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'),
                                          client_states=store)
  server_state = [np.float32(0)]
  assert run(manager.load_latest(server_state)) == (None, 0)
  store.write(1, 'a', state(1.0))
  run(manager.save([np.float32(1)], 1))
  store.write(2, 'a', state(2.0))
  run(manager.save([np.float32(2)], 2))
  # Round 2's state of client 'a' is lost: its checkpoint does not match.
  (tmp_path / 'states' / client_states.client_directory_name('a') /
   '2.npy').unlink()
  reopened_store = client_states.ClientStateStore(str(tmp_path / 'states'),
                                                  STRUCTURE)
  reopened = checkpoints.CheckpointManager(str(tmp_path / 'checkpoints'),
                                           client_states=reopened_store)
  loaded, version = run(reopened.load_latest(server_state))
  assert version == 1 and float(loaded[0]) == 1.0
  assert_same_state(reopened_store.read('a'), state(1.0))


def test_a_failed_background_write_is_raised_by_the_next_flush(tmp_path):
  store = client_states.ClientStateStore(str(tmp_path), STRUCTURE)
  # A file where the client's directory should be: the write fails.
  (tmp_path / client_states.client_directory_name('a')).write_text('')
  store.write(1, 'a', state(1.0))
  with pytest.raises(outputs.OutputWriteError):
    store.flush()
  store.flush()  # Raised once.
