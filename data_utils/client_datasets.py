"""Per-round client datasets: shuffling, batching, and client sampling.

A Per-FedAvg local step reads three independent batches (D, D', D'') of
sizes (b, b', b''), a FedAvg step one batch of size b. Each round a client's
examples are reshuffled with a seed derived from (seed, round, client) and
repeated, so local steps keep drawing fresh batches even when a client holds
fewer than 3b examples; a client with no examples yields no batch.
"""

import zlib
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tff_perfed.runtime import dataset_options

_SHUFFLE_BUFFER = 1000


# Re-exported: the runtime applies the same options to users' datasets.
pipeline_options = dataset_options.pipeline_options


def derive_seed(*parts) -> int:
  """A 31-bit seed from ints and strings, stable across runs and platforms."""
  entropy = [p if isinstance(p, int) else zlib.crc32(str(p).encode())
             for p in parts]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def cycled_batches(examples: tf.data.Dataset, *, batch_sizes: Sequence[int],
                   num_batches: int, seed: int) -> tf.data.Dataset:
  """Shuffled, repeated `examples` cut into `num_batches` batches.

  Batch sizes cycle through `batch_sizes`: with (b, b', b'') the batches are
  D_1, D'_1, D''_1, D_2, ... as Per-FedAvg's client work reads them.

  Args:
    examples: Unbatched examples of one client.
    batch_sizes: Sizes to cycle through; all positive.
    num_batches: Number of batches to produce.
    seed: Shuffle seed.

  Returns:
    A dataset of at most `num_batches` batches.
  """
  batch_sizes = [int(b) for b in batch_sizes]
  stream = examples.shuffle(_SHUFFLE_BUFFER, seed=seed).repeat()
  if len(set(batch_sizes)) == 1:
    return stream.batch(batch_sizes[0]).take(num_batches).with_options(
        pipeline_options())
  bounds = np.cumsum([0] + batch_sizes)

  def split(group):
    parts = [
        tf.nest.map_structure(lambda t, lo=lo, hi=hi: t[lo:hi], group)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    dataset = tf.data.Dataset.from_tensors(parts[0])
    for part in parts[1:]:
      dataset = dataset.concatenate(tf.data.Dataset.from_tensors(part))
    return dataset

  return stream.batch(int(bounds[-1])).flat_map(split).take(
      num_batches).with_options(pipeline_options())


def one_step_batches(client_data, client_id: str,
                     batch_sizes: Sequence[int]) -> tuple:
  """The batches one local step of `client_id` reads, as a tuple.

  For measuring a step (FLOPs, time) outside a TFF round.
  """
  return tuple(cycled_batches(
      client_data.create_tf_dataset_for_client(client_id),
      batch_sizes=batch_sizes, num_batches=len(batch_sizes), seed=0))


def sample_clients(client_ids: Sequence[str], num_clients: int,
                   round_num: int, seed: int) -> List[str]:
  """Uniformly samples `num_clients` distinct clients for `round_num`.

  The generator is seeded by (seed, round_num), so a resumed run samples the
  same clients as an uninterrupted one.
  """
  rng = np.random.default_rng(derive_seed(seed, round_num))
  chosen = rng.choice(len(client_ids), size=num_clients, replace=False)
  return [client_ids[i] for i in sorted(chosen)]


def training_datasets(client_data, client_ids: Sequence[str], *,
                      batch_sizes: Sequence[int], local_steps: int,
                      round_num: int, seed: int) -> List[tf.data.Dataset]:
  """One round's batches for each sampled client.

  Each client gets `local_steps` groups of batches of `batch_sizes` (one
  group per local step), shuffled with a seed of its own for this round.
  """
  return [
      cycled_batches(
          client_data.create_tf_dataset_for_client(client_id),
          batch_sizes=batch_sizes,
          num_batches=len(batch_sizes) * local_steps,
          seed=derive_seed(seed, round_num, client_id))
      for client_id in client_ids
  ]


def empty_dataset_like(client_data) -> tf.data.Dataset:
  """No examples, of exactly the element spec of `client_data`'s datasets.

  Another client's dataset cut to nothing (no element is read), so that the
  type of every client's dataset in a TFF computation is the same.
  """
  if client_data.client_ids:
    return client_data.create_tf_dataset_for_client(
        client_data.client_ids[0]).take(0)
  return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
      lambda spec: tf.zeros([0] + [d or 0 for d in spec.shape.as_list()],
                            spec.dtype), client_data.element_type_structure))


def personalization_datasets(train_data, test_data,
                             client_ids: Sequence[str], *, batch_size: int,
                             num_adaptation_batches: int,
                             test_batch_size: int, seed: int,
                             max_test_examples: Optional[int] = None):
  """Adaptation batches (the same every evaluation) and test batches.

  Args:
    train_data: The train split.
    test_data: The test split.
    client_ids: The evaluated clients.
    batch_size: The adaptation batch size.
    num_adaptation_batches: Adaptation batches per client (K * R).
    test_batch_size: The scoring batch size.
    seed: Seed of the adaptation batches' shuffles.
    max_test_examples: If set, each client is scored on at most its first
      `max_test_examples` test examples (in the file's order): scoring runs
      K * R + 1 times per evaluation, and a client with one 200 KB
      Shakespeare snippet in its test split holds 2,470 examples. None
      scores all of them.

  Returns:
    `(train, test)` lists of datasets, one per client: up to
    `num_adaptation_batches` shuffled batches of the client's train split,
    and its whole test split in batches of `test_batch_size` (no batch for
    a client absent from the test split).
  """
  train = [
      cycled_batches(
          train_data.create_tf_dataset_for_client(client_id),
          batch_sizes=[batch_size],
          num_batches=num_adaptation_batches,
          seed=derive_seed(seed, client_id)) for client_id in client_ids
  ]
  # A training client may be absent from the test split (TFF's files list
  # each split's clients apart): it still trains, and its evaluation sees
  # zero test examples, so that it can be counted apart.
  test_ids = set(test_data.client_ids)
  test = []
  for client_id in client_ids:
    examples = (test_data.create_tf_dataset_for_client(client_id)
                if client_id in test_ids else empty_dataset_like(test_data))
    if max_test_examples is not None:
      examples = examples.take(max_test_examples)
    test.append(examples.batch(test_batch_size).with_options(
        pipeline_options()))
  return train, test
