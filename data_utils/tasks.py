"""The datasets a run can name (`--dataset`), each with its model.

Adding a dataset is one module under `data_utils/` that defines a
`federated_dataset.Task` (a loader and a model builder) plus one entry in
`TASKS`. `get` fails on an unknown name, listing the known ones.

Besides these, `tfds:NAME` names any TFDS image or text classification
dataset prepared in a TFDS data directory (`tfds_source`): its task, and the
model it trains, are read from the dataset's `DatasetInfo`.
"""

from typing import Dict, Mapping, Optional, Sequence

from tff_perfed.data_utils import cifar100
from tff_perfed.data_utils import digits
from tff_perfed.data_utils import emnist
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import mnist
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import shakespeare_plays
from tff_perfed.data_utils import tfds_source
from tff_perfed import validation


def _registry(*tasks: federated_dataset.Task
             ) -> Dict[str, federated_dataset.Task]:
  return {task.name: task for task in tasks}


TASKS: Mapping[str, federated_dataset.Task] = _registry(
    digits.TASK,
    mnist.MNIST_5K_TASK,
    mnist.MNIST_TASK,
    emnist.EMNIST_TASK,
    emnist.EMNIST10_TASK,
    shakespeare.TASK,
    shakespeare_plays.TASK,
    shakespeare_plays.SMALL_TASK,
    cifar100.TASK,
)


def names() -> Sequence[str]:
  """Registered dataset names, in registration order."""
  return list(TASKS)


def require_known(name: str) -> None:
  """Checks that `name` is registered or a `tfds:NAME` (without reading it).

  Raises:
    tff_perfed.validation.ArgumentValueError: Listing the known names.
  """
  if not tfds_source.is_tfds_name(name):
    validation.require_choice('dataset', name,
                              [*TASKS, f'{tfds_source.PREFIX}NAME'])


def get(name: str, data_dir: Optional[str] = None) -> federated_dataset.Task:
  """The task `name`: a registered one, or that of a TFDS dataset.

  Args:
    name: A registered name, or `tfds:NAME`.
    data_dir: Where a `tfds:NAME` dataset is prepared (None: TFDS's
      default); registered tasks ignore it here (their `load` takes it).

  Raises:
    tff_perfed.validation.ArgumentValueError: If no task has that name; the
      message lists the known ones.
    federated_dataset.DatasetError: If a TFDS dataset cannot be opened or
      has unsupported features (`tfds_source`).
  """
  if tfds_source.is_tfds_name(name):
    return tfds_source.task(name, data_dir)
  require_known(name)
  return TASKS[name]
