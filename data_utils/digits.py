"""scikit-learn's handwritten digits, split as in Per-FedAvg's experiment.

Fallah et al. (2020), section 5, split MNIST over n users so that half of the
users hold images of the digits 0-4 only and each of the others holds images
of one digit from 0-4 and one from 5-9. We apply the same rule
(`partitioners.per_fedavg_label_partition`) to the 1,797 8x8 images of
`sklearn.datasets.load_digits`, which ship with scikit-learn and need no
network, and train the paper's MLP on them.
"""

import collections
from typing import Dict, Optional, Tuple

import numpy as np
from sklearn import datasets as sklearn_datasets
import tensorflow_federated as tff

from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import partitioners
from tff_perfed import models

NUM_CLIENTS = 50
NUM_CLASSES = 10
INPUT_DIM = 64
TEST_FRACTION = 0.25

ClientArrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


def _synthetic_digits(
    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  # Class-conditional Gaussians with the real data's shape and class sizes.
  labels = np.repeat(np.arange(NUM_CLASSES), 180)
  means = rng.random((NUM_CLASSES, INPUT_DIM))
  images = means[labels] + 0.3 * rng.standard_normal((labels.size, INPUT_DIM))
  return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.int32)


def partitioned_digits(*,
                       num_clients: int = NUM_CLIENTS,
                       seed: int = 0,
                       test_fraction: float = TEST_FRACTION,
                       use_synthetic_data: bool = False
                      ) -> Tuple[ClientArrays, ClientArrays]:
  """Splits the digits over `num_clients` users with the paper's rule.

  Args:
    num_clients: Number of users; even and at least 2.
    seed: Seed of the shuffles that deal images to users and splits.
    test_fraction: Fraction of each user's images, per digit, held out.
    use_synthetic_data: Use random class-conditional images instead.

  Returns:
    `(train, test)`: dicts from client id to `(x, y)` with x float32
    [n, 64] scaled to [0, 1] and y int32 [n].

  Raises:
    ValueError: If `num_clients` is odd or below 2.
  """
  rng = np.random.default_rng(seed)
  if use_synthetic_data:
    images, labels = _synthetic_digits(rng)
  else:
    digits = sklearn_datasets.load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
  return partitioners.per_fedavg_users(
      images, labels, num_clients=num_clients, test_fraction=test_fraction,
      rng=rng)


def load(*, data_dir: Optional[str] = None, use_synthetic_data: bool = False,
         seed: int = 0) -> federated_dataset.FederatedDataset:
  """The digits split over `NUM_CLIENTS` users; `data_dir` is not used."""
  del data_dir  # Embedded in scikit-learn.
  train, test = partitioned_digits(seed=seed,
                                   use_synthetic_data=use_synthetic_data)

  def to_client_data(split):
    return tff.simulation.datasets.TestClientData({
        client_id: collections.OrderedDict(x=x, y=y)
        for client_id, (x, y) in split.items()
    })

  return federated_dataset.FederatedDataset('digits', to_client_data(train),
                                            to_client_data(test), NUM_CLASSES)


TASK = federated_dataset.Task(
    name='digits',
    summary='scikit-learn digits over 50 users with the Per-FedAvg split; '
    'the paper\'s MLP.',
    load=load,
    build_model=lambda seed: models.build_mlp(
        input_dim=INPUT_DIM, num_classes=NUM_CLASSES, seed=seed),
    num_classes=NUM_CLASSES,
    image_shape=(8, 8, 1),
    build_split_model=lambda seed: models.build_mlp_split(
        input_dim=INPUT_DIM, num_classes=NUM_CLASSES, seed=seed))
