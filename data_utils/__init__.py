"""Federated datasets, each a `Task` registered in `tasks`.

* `tasks`: the registry (`--dataset` names); `federated_dataset`: the types.
* `digits`, `emnist`, `shakespeare`: one module per dataset.
* `partitioners`: how labelled examples are dealt to clients.
* `tff_sqlite`: reading TFF's published SQLite files (client ids escaped;
  files of another dataset or with unusable tables refused in one line).
* `client_checks`: every client's examples checked before training; bad
  clients dropped with a reason, or refused (`strict`).
* `client_datasets`: per-round batching, client sampling and seeds.
"""
