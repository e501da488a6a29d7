"""Ways to deal a labelled dataset's examples to federated clients.

`per_fedavg_label_partition` is the split of Fallah et al. (2020), section 5:
half of the users hold examples of the classes 0-4 only, and each of the
others holds examples of one class from 0-4 and one from 5-9; each user's
test examples follow its training distribution. `per_fedavg_users` applies
it to arrays, keyed by the users' ids.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

ClientIndices = Tuple[np.ndarray, np.ndarray]  # (train indices, test indices)
# {client id: (examples, labels)} of one split.
UserArrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


def per_fedavg_classes_held(client: int, num_clients: int) -> Tuple[int, ...]:
  """The classes user `client` holds under the Per-FedAvg paper's rule.

  Users 0 .. n/2-1 ("low" users) hold all of the classes 0-4; user n/2 + j
  holds low class j mod 5 and high class 5 + (j div 5) mod 5, so with n = 50
  every (low, high) pair occurs exactly once.
  """
  half = num_clients // 2
  if client < half:
    return (0, 1, 2, 3, 4)
  j = client - half
  return (j % 5, 5 + (j // 5) % 5)


def per_fedavg_label_partition(labels: Sequence[int], *, num_clients: int,
                               test_fraction: float,
                               rng: np.random.Generator
                              ) -> List[ClientIndices]:
  """Deals example indices to users with the Per-FedAvg paper's rule.

  Each class's examples are shuffled and dealt evenly to the users holding
  it (`per_fedavg_classes_held`); each user's share of a class is split into
  train and test, so both splits have the user's label distribution. Every
  example goes to exactly one user and split, except that with fewer than
  20 users some of the classes 5-9 have no holder and go unused.

  Args:
    labels: Class ids 0-9, one per example.
    num_clients: Number of users; even and at least 2.
    test_fraction: Fraction of each user's examples, per class, held out.
    rng: The generator of the shuffles.

  Returns:
    One `(train_indices, test_indices)` pair per user; train indices are
    shuffled.

  Raises:
    ValueError: If `num_clients` is odd or below 2, or `test_fraction` is
      not in [0, 1).
  """
  if num_clients < 2 or num_clients % 2:
    raise ValueError(f'`num_clients` must be an even number >= 2, got '
                     f'{num_clients}.')
  if not 0 <= test_fraction < 1:
    raise ValueError(f'`test_fraction` must be in [0, 1), got '
                     f'{test_fraction}.')
  labels = np.asarray(labels)
  holders = {c: [] for c in range(10)}
  for client in range(num_clients):
    for label in per_fedavg_classes_held(client, num_clients):
      holders[label].append(client)

  shares = [[] for _ in range(num_clients)]
  for label, clients in holders.items():
    if not clients:  # Fewer than 10 high users: nobody holds this class.
      continue
    indices = rng.permutation(np.flatnonzero(labels == label))
    for client, share in zip(clients, np.array_split(indices, len(clients))):
      shares[client].append(share)

  partition = []
  for client_shares in shares:
    train, test = [], []
    for share in client_shares:
      num_test = int(round(test_fraction * len(share)))
      test.append(share[:num_test])
      train.append(share[num_test:])
    partition.append((rng.permutation(np.concatenate(train)),
                      np.concatenate(test)))
  return partition


def per_fedavg_users(examples: np.ndarray, labels: np.ndarray, *,
                     num_clients: int, test_fraction: float,
                     rng: np.random.Generator
                    ) -> Tuple[UserArrays, UserArrays]:
  """`per_fedavg_label_partition` of arrays, keyed 'user_000', 'user_001', ...

  Args:
    examples: One row per example, in any dtype (rows are only indexed).
    labels: Class ids 0-9, one per example.
    num_clients: Number of users; even and at least 2.
    test_fraction: Fraction of each user's examples, per class, held out.
    rng: The generator of the shuffles.

  Returns:
    `(train, test)`: dicts from client id `user_{client:03d}` (users in
    order) to `(examples[indices], labels[indices])`.

  Raises:
    ValueError: As `per_fedavg_label_partition`.
  """
  partition = per_fedavg_label_partition(
      labels, num_clients=num_clients, test_fraction=test_fraction, rng=rng)
  train, test = {}, {}
  for client, (train_idx, test_idx) in enumerate(partition):
    client_id = f'user_{client:03d}'
    train[client_id] = (examples[train_idx], labels[train_idx])
    test[client_id] = (examples[test_idx], labels[test_idx])
  return train, test
