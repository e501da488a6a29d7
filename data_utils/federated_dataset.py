"""The data layer's types: a federated dataset, a task, and its errors.

A `Task` is what a run names with `--dataset`: how to load the federated
data and which model it is trained with. Every task's examples are unbatched
`OrderedDict(x=..., y=...)` whose batches match its model's `input_spec`
(the task's batch layout); `tests/data_utils/tasks_test.py` checks this for
every registered task.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import tensorflow_federated as tff


class DatasetError(ValueError):
  """A dataset cannot be loaded; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
  """Train/test client data of one federated dataset.

  Attributes:
    name: The task's name.
    train: `ClientData` of unbatched `OrderedDict(x, y)` training examples.
    test: `ClientData` of test examples; same client ids as `train`.
    num_classes: Output size of the model (vocabulary size for Shakespeare).
    partition: A JSON-serializable description of how the clients were
      made, when a scenario re-partitioned them (runs write it to
      `partition.json`), else None.
    source: Where the examples were read from, when a TFF SQLite file
      (`tff_sqlite.SqliteSource`): the client checks read its raw examples
      in bulk and name what is wrong with an example. None otherwise.
    dropped: `{client_id: reason}` of the clients `client_checks` left out
      for unusable data (runs write it to `dropped_clients.json`).
    origin: A JSON-serializable record of what was read (files with their
      SHA-256, package versions, the recipe's version of a built file), so
      that a run says which source its data came from (runs write it to
      `data_source.json`); None for data that needs no file.
  """
  name: str
  train: tff.simulation.datasets.ClientData
  test: tff.simulation.datasets.ClientData
  num_classes: int
  partition: Optional[Dict[str, Any]] = None
  source: Optional[Any] = None
  dropped: Mapping[str, str] = dataclasses.field(default_factory=dict)
  origin: Optional[Dict[str, Any]] = None

  @property
  def client_ids(self) -> List[str]:
    return list(self.train.client_ids)


@dataclasses.dataclass(frozen=True)
class Task:
  """A dataset a run can name, with the model it is trained with.

  Attributes:
    name: The name runs use (`--dataset`).
    summary: One line for help texts.
    load: `load(*, data_dir, use_synthetic_data, seed) -> FederatedDataset`.
      `data_dir` holds the task's files (None if it needs none); `seed`
      seeds any partition and synthetic data. Raises `DatasetError`.
    build_model: `build_model(seed) -> tff.learning.models.FunctionalModel`.
    num_classes: Number of classes (vocabulary size for character models).
    eval_batch_size: Batch size for scoring test splits.
    data_file: The file `load` reads from `data_dir`, or None.
    image_shape: (height, width, channels) of an image task's examples (its
      `x` may be stored flattened); the diversity scenario
      (`data_utils.diversity`) pools, re-partitions and augments them.
    text_reserved_tokens: For a character task, the ids (padding,
      out-of-vocabulary, begin, end) that the diversity scenario's
      substitution ciphers leave in place.
    build_split_model: `build_split_model(seed) -> models.SplitModel`, the
      model cut into a Gaussian encoder and a head, for AFML.
  """
  name: str
  summary: str
  load: Callable[..., FederatedDataset]
  build_model: Callable[[int], tff.learning.models.FunctionalModel]
  num_classes: int
  eval_batch_size: int = 256
  data_file: Optional[str] = None
  image_shape: Optional[Tuple[int, int, int]] = None
  text_reserved_tokens: Optional[Tuple[int, ...]] = None
  build_split_model: Optional[Callable[[int], object]] = None
