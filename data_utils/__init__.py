"""Federated datasets, each a `Task` registered in `tasks`.

* `tasks`: the registry (`--dataset` names); `federated_dataset`: the types.
* `digits`, `emnist`, `shakespeare`: one module per dataset.
* `partitioners`: how labelled examples are dealt to clients.
* `tff_sqlite`: reading TFF's published SQLite files.
* `client_datasets`: per-round batching, client sampling and seeds.
"""
