"""The datasets a run can name (`--dataset`), each with its model.

Adding a dataset is one module under `data_utils/` that defines a
`federated_dataset.Task` (a loader and a model builder) plus one entry in
`TASKS`. `get` fails on an unknown name, listing the known ones.
"""

from typing import Dict, Mapping, Sequence

from tff_perfed.data_utils import cifar100
from tff_perfed.data_utils import digits
from tff_perfed.data_utils import emnist
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import mnist
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import shakespeare_plays
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


def get(name: str) -> federated_dataset.Task:
  """The registered task `name`.

  Raises:
    tff_perfed.validation.ArgumentValueError: If no task has that name; the
      message lists the known ones.
  """
  validation.require_choice('dataset', name, TASKS)
  return TASKS[name]
