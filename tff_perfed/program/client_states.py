"""Clients' states across rounds, on disk, consistent with the checkpoints.

A `templates.ClientStateLearningProcess` (Ditto, APFL, FedRep, FedPer) maps
the sampled clients' states each round; the program keeps them between
rounds. In memory that would not scale (3,400 EMNIST writers with a personal
copy of our 1.69 M-weight CNN are 23 GB), so `ClientStateStore` keeps one
file per client and state version, `<root>/<client>/<round>.npy` (the
state's flattened arrays, written to a temporary file and renamed), and
reads only the sampled clients' each round.

Consistency with the server state: the store's index, `{client id: (round,
bytes, CRC-32)}` of each client's current version (its *manifest*), is
written into every checkpoint's directory beside the server state
(`checkpoints.CheckpointManager`), so that both land in one rename. A
resumed run restores the index of the checkpoint it loads; versions written
after it (by a run killed between checkpoints) are removed, and the rounds
after the checkpoint recompute them exactly. A checkpoint whose manifest is
missing, or names a file that is missing or of another size, does not
match its store: it counts as damaged, and the run resumes from the newest
consistent pair. A version whose contents fail their CRC when read stops
the run with `ClientStateDamagedError`. Versions no kept checkpoint's
manifest names are removed after each checkpoint.

Writes go to the disk from one background thread, so that they overlap the
next round's computation (on the developer's machine the disk takes 70 MB/s:
a 10-client round of the EMNIST CNN's personal models, 68 MB, would
otherwise wait a second for it). A state waiting to be written is read back
from memory; the manifest, and so every checkpoint, waits for every pending
write (`flush`), so that a checkpoint never names a version that is not on
disk. Files are not fsynced: a killed process loses nothing the kernel
holds, and after a power loss a truncated file fails the size check (the
run falls back) and a damaged one its CRC.
"""

import dataclasses
import hashlib
import io
import json
import os
import queue
import re
import threading
import time
import zlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tff_perfed import errors
from tff_perfed.program import outputs

MANIFEST_FILE = 'client_states.json'
_MAX_PENDING_WRITES = 64
_VERSION_FILE = re.compile(r'^(\d+)\.npy$')


class ClientStateDamagedError(errors.RunError):
  """A client's saved state does not read back as it was written."""


@dataclasses.dataclass(frozen=True)
class Version:
  """One saved state of one client: the round that wrote it, and its file's
  size and CRC-32."""
  round_num: int
  num_bytes: int
  crc32: int

  def to_json(self) -> List[int]:
    return [self.round_num, self.num_bytes, self.crc32]

  @classmethod
  def from_json(cls, value: Sequence[int]) -> 'Version':
    round_num, num_bytes, crc32 = (int(v) for v in value)
    return cls(round_num, num_bytes, crc32)


def client_directory_name(client_id: str) -> str:
  """A file name for any client id: its safe characters and a short hash."""
  safe = re.sub(r'[^A-Za-z0-9_.-]', '_', client_id)[:64]
  digest = hashlib.sha256(client_id.encode('utf-8')).hexdigest()[:10]
  return f'{safe}-{digest}'


class ClientStateStore:
  """Each client's latest state, one file per version (module docstring).

  Attributes:
    root_dir: The store's directory.
    bytes_read, bytes_written: Totals since construction.
    seconds: Time spent reading and writing since construction.
  """

  def __init__(self, root_dir: str, structure: Any):
    """Opens (creating if needed) the store at `root_dir`.

    Args:
      root_dir: The store's directory.
      structure: A client state (e.g. `initial_client_state`'s result):
        every state read back has its nest structure and dtypes.

    Raises:
      outputs.OutputWriteError: If `root_dir` cannot be created.
    """
    self.root_dir = root_dir
    with outputs.write_errors_named(root_dir):
      os.makedirs(root_dir, exist_ok=True)
    self._structure = structure
    self._leaves = tf.nest.flatten(structure)
    self._index: Dict[str, Version] = {}
    # client id -> (round, leaves) written to memory but maybe not yet to disk.
    self._pending: Dict[str, tuple] = {}
    # Bounded: a disk slower than the rounds makes `write` wait, not memory
    # grow (64 EMNIST CNN states are 430 MB).
    self._queue: queue.Queue = queue.Queue(maxsize=_MAX_PENDING_WRITES)
    self._write_error: Optional[BaseException] = None
    self._writer: Optional[threading.Thread] = None
    self.bytes_read = 0
    self.bytes_written = 0
    self.seconds = 0.0

  def _path(self, client_id: str, round_num: int) -> str:
    return os.path.join(self.root_dir, client_directory_name(client_id),
                        f'{round_num}.npy')

  def manifest(self) -> Dict[str, List[int]]:
    """The index as JSON: `{client id: [round, bytes, crc32]}`.

    Waits for the pending writes first (`flush`).
    """
    self.flush()
    return {client_id: version.to_json()
            for client_id, version in sorted(self._index.items())}

  def mismatch(self, manifest: Mapping[str, Sequence[int]]) -> Optional[str]:
    """Why `manifest` does not match the files, or None if it does."""
    self.flush()
    for client_id, value in manifest.items():
      version = Version.from_json(value)
      path = self._path(client_id, version.round_num)
      try:
        size = os.path.getsize(path)
      except OSError:
        return f'client {client_id!r}\'s state {path} is missing'
      if size != version.num_bytes:
        return (f'client {client_id!r}\'s state {path} has {size} bytes, '
                f'not {version.num_bytes}')
    return None

  def restore(self, manifest: Mapping[str, Sequence[int]],
              round_num: int) -> None:
    """Makes `manifest`, a checkpoint's of `round_num`, the index.

    Versions written after `round_num` are removed: the run recomputes
    them.
    """
    self.flush()
    self._index = {client_id: Version.from_json(value)
                   for client_id, value in manifest.items()}
    with outputs.write_errors_named(self.root_dir):
      for path, version_round in self._version_files():
        if version_round > round_num:
          os.remove(path)

  def has_state(self, client_id: str) -> bool:
    return client_id in self._index or client_id in self._pending

  def read(self, client_id: str) -> Optional[Any]:
    """The client's current state, or None if it never trained.

    Raises:
      ClientStateDamagedError: If the file fails its size or CRC check.
    """
    pending = self._pending.get(client_id)
    if pending is not None:  # Not on disk yet, maybe: the same arrays.
      return tf.nest.pack_sequence_as(self._structure, list(pending[1]))
    version = self._index.get(client_id)
    if version is None:
      return None
    start = time.monotonic()
    path = self._path(client_id, version.round_num)
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise ClientStateDamagedError(
          f'client {client_id!r}\'s state {path} cannot be read ({e}); '
          'remove the newest checkpoint to resume from an earlier one.'
      ) from e
    if len(data) != version.num_bytes or zlib.crc32(data) != version.crc32:
      raise ClientStateDamagedError(
          f'client {client_id!r}\'s state {path} is damaged (its size or '
          'CRC-32 differs from the checkpoint\'s manifest); remove the '
          'newest checkpoint to resume from an earlier one.')
    stream = io.BytesIO(data)
    leaves = [np.lib.format.read_array(stream) for _ in self._leaves]
    self.bytes_read += len(data)
    self.seconds += time.monotonic() - start
    return tf.nest.pack_sequence_as(self._structure, leaves)

  def write(self, round_num: int, client_id: str, state: Any) -> None:
    """Saves the client's state after `round_num` as its current one.

    The file is written by the background thread; a failed write is raised
    by a later `write` or `flush`.

    Raises:
      outputs.OutputWriteError: If an earlier write failed.
    """
    self._raise_write_error()
    start = time.monotonic()
    leaves = tuple(np.asarray(leaf) for leaf in tf.nest.flatten(state))
    self._pending[client_id] = (round_num, leaves)
    if self._writer is None:
      self._writer = threading.Thread(target=self._write_forever,
                                      name='client-state-writer', daemon=True)
      self._writer.start()
    self._queue.put((round_num, client_id, leaves))
    self.seconds += time.monotonic() - start

  def flush(self) -> None:
    """Waits until every state given to `write` is on disk.

    Raises:
      outputs.OutputWriteError: If a write failed.
    """
    start = time.monotonic()
    self._queue.join()
    self.seconds += time.monotonic() - start
    self._raise_write_error()

  def _raise_write_error(self) -> None:
    if self._write_error is not None:
      error, self._write_error = self._write_error, None
      raise error

  def _write_forever(self) -> None:
    while True:
      round_num, client_id, leaves = self._queue.get()
      try:
        if self._write_error is None:
          self._write_file(round_num, client_id, leaves)
      except BaseException as e:  # pylint: disable=broad-except
        self._write_error = e  # Raised on the caller's thread.
      finally:
        self._queue.task_done()

  def _write_file(self, round_num: int, client_id: str,
                  leaves: Sequence[np.ndarray]) -> None:
    buffer = io.BytesIO()
    # .npy arrays one after another: the same arrays give the same bytes
    # (a .npz's zip entries carry the time of writing).
    for leaf in leaves:
      np.lib.format.write_array(buffer, leaf, allow_pickle=False)
    data = buffer.getbuffer()
    path = self._path(client_id, round_num)
    with outputs.write_errors_named(path):
      os.makedirs(os.path.dirname(path), exist_ok=True)
      temporary = f'{path}.tmp'
      with open(temporary, 'wb') as f:
        f.write(data)
      os.replace(temporary, path)
    version = Version(round_num, len(data), zlib.crc32(data))
    # Dict updates are atomic under the GIL; a newer pending version of the
    # same client (a later round) stays pending until its own write.
    self._index[client_id] = version
    if self._pending.get(client_id, (None,))[0] == round_num:
      del self._pending[client_id]
    self.bytes_written += len(data)

  def _version_files(self) -> Iterable[tuple]:
    for directory in os.scandir(self.root_dir):
      if not directory.is_dir():
        continue
      for entry in os.scandir(directory.path):
        match = _VERSION_FILE.match(entry.name)
        if match:
          yield entry.path, int(match.group(1))
        elif entry.name.endswith('.tmp'):
          os.remove(entry.path)  # A write cut short.

  def remove_unreferenced(self, manifests: Iterable[Mapping[str, Any]],
                          up_to_round: int) -> None:
    """Removes versions up to `up_to_round` that no manifest names.

    Args:
      manifests: The kept checkpoints' manifests (the current index is
        kept too).
      up_to_round: The newest checkpoint's round; later versions stay.
    """
    self.flush()
    kept = {self._path(c, v.round_num) for c, v in self._index.items()}
    for manifest in manifests:
      kept.update(self._path(c, Version.from_json(v).round_num)
                  for c, v in manifest.items())
    with outputs.write_errors_named(self.root_dir):
      for path, version_round in list(self._version_files()):
        if version_round <= up_to_round and path not in kept:
          os.remove(path)


def write_manifest(directory: str, manifest: Mapping[str, Any]) -> None:
  """Writes `manifest` into a checkpoint's (temporary) directory."""
  with open(os.path.join(directory, MANIFEST_FILE), 'w') as f:
    json.dump(manifest, f)


def read_manifest(directory: str) -> Dict[str, Any]:
  """A checkpoint's manifest.

  Raises:
    OSError, ValueError: If it is missing or unreadable (the checkpoint is
      then damaged for a run with client states).
  """
  with open(os.path.join(directory, MANIFEST_FILE)) as f:
    manifest = json.load(f)
  if not isinstance(manifest, dict):
    raise ValueError(f'{MANIFEST_FILE} is not a mapping')
  return manifest
