"""Federated datasets, each a `Task` registered in `tasks`.

* `tasks`: the registry (`--dataset` names); `federated_dataset`: the types.
* `digits`, `mnist` (`mnist_5k`, `mnist`), `emnist`, `shakespeare`,
  `shakespeare_plays`, `cifar100`: one module per dataset.
* `partitioners`: how labelled examples are dealt to clients.
* `tff_sqlite`: reading (each client through its rowid span) and writing
  TFF's SQLite files (client ids escaped; files of another dataset or with
  unusable tables refused in one line).
* `data_dirs`: where files are looked for (TFF's cache `~/.tff`, Keras's
  cache, this package's cache for what it builds).
* `package_files`: files of the pinned data packages, verified by SHA-256.
* `twins`: EMNIST-62 and CIFAR-100 at their published sizes, random
  contents, for the scale benchmark.
* `diversity`: the AFML paper's diversity scenario over any dataset.
* `client_checks`: every client's examples checked before training; bad
  clients dropped with a reason, or refused (`strict`).
* `client_datasets`: per-round batching, client sampling and seeds.
"""

# Owns TFF's default context before TFF is used (tff_perfed.runtime).
from tff_perfed import runtime as _runtime  # pylint: disable=unused-import
