"""scikit-learn's handwritten digits split as in Per-FedAvg's experiment.

Fallah et al. (2020), section 5, split MNIST over n users so that half of the
users hold images of the digits 0-4 only and each of the others holds images
of one digit from 0-4 and one from 5-9; each user's test data follows the
same distribution as its training data. We apply the same rule to the 1,797
8x8 images of `sklearn.datasets.load_digits`, which ship with scikit-learn
and need no network:

* users 0 .. n/2-1 ("low" users) hold all of the digits 0-4;
* user n/2 + j holds low digit j mod 5 and high digit 5 + (j div 5) mod 5,
  so with n = 50 every (low, high) pair occurs exactly once;
* each digit's images are shuffled and dealt evenly to the users holding it;
* each user's images are split per digit into train and test, so both
  splits have the user's label distribution.
"""

from typing import Dict, Tuple

import numpy as np
from sklearn import datasets as sklearn_datasets

NUM_CLIENTS = 50
NUM_CLASSES = 10
INPUT_DIM = 64
TEST_FRACTION = 0.25

ClientArrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


def digits_held_by_client(client: int, num_clients: int) -> Tuple[int, ...]:
  """The digits user `client` holds under the paper's rule."""
  half = num_clients // 2
  if client < half:
    return (0, 1, 2, 3, 4)
  j = client - half
  return (j % 5, 5 + (j // 5) % 5)


def _synthetic_digits(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
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
  if num_clients < 2 or num_clients % 2:
    raise ValueError(f'`num_clients` must be an even number >= 2, got '
                     f'{num_clients}.')
  rng = np.random.default_rng(seed)
  if use_synthetic_data:
    images, labels = _synthetic_digits(rng)
  else:
    digits = sklearn_datasets.load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)

  holders = {d: [] for d in range(NUM_CLASSES)}
  for client in range(num_clients):
    for digit in digits_held_by_client(client, num_clients):
      holders[digit].append(client)

  indices_by_client = {c: {} for c in range(num_clients)}
  for digit, clients in holders.items():
    indices = rng.permutation(np.flatnonzero(labels == digit))
    for client, share in zip(clients, np.array_split(indices, len(clients))):
      indices_by_client[client][digit] = share

  train, test = {}, {}
  for client, by_digit in indices_by_client.items():
    train_idx, test_idx = [], []
    for share in by_digit.values():
      num_test = int(round(test_fraction * len(share)))
      test_idx.append(share[:num_test])
      train_idx.append(share[num_test:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = np.concatenate(test_idx)
    client_id = f'user_{client:03d}'
    train[client_id] = (images[train_idx], labels[train_idx])
    test[client_id] = (images[test_idx], labels[test_idx])
  return train, test
