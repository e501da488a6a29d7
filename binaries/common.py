"""Pieces shared by the binaries: model choice, algorithms, client data."""

import enum
import os
from typing import Callable, List, Sequence

# Binaries are programs: silence TF's C++ start-up chatter (CUDA plugin
# registration, CPU-feature notes) unless the user asks for it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

from data_utils import client_datasets  # pylint: disable=g-import-not-at-top
from data_utils import digits as digits_lib  # pylint: disable=g-import-not-at-top
from data_utils import federated_data  # pylint: disable=g-import-not-at-top
import tff_perfed  # pylint: disable=g-import-not-at-top
from tff_perfed import models  # pylint: disable=g-import-not-at-top

EVAL_BATCH_SIZE = 256


def quiet_logging() -> None:
  """Keeps the terminal for results: WARNING and above, unless --verbosity.

  Checkpointing logs every SavedModel file at INFO, through both absl and
  TF's own Python logger.
  """
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel('WARNING')


class Algorithm(enum.Enum):
  FEDAVG = 'fedavg'
  PER_FEDAVG = 'per_fedavg'


def model_fn_for(dataset: federated_data.FederatedDataset,
                 seed: int) -> Callable[[], tff.learning.models.FunctionalModel]:
  """The model each dataset is trained with (see `tff_perfed.models`)."""
  if dataset.name == 'digits':
    return lambda: models.build_mlp(
        input_dim=digits_lib.INPUT_DIM,
        num_classes=dataset.num_classes,
        seed=seed)
  if dataset.name == 'shakespeare':
    return lambda: models.build_char_lstm(
        vocab_size=dataset.num_classes, seed=seed)
  return lambda: models.build_emnist_cnn(
      num_classes=dataset.num_classes, seed=seed)


def build_process(algorithm: Algorithm, model_fn, *, alpha: float, beta: float,
                  hessian_mode: tff_perfed.HessianMode, local_steps: int,
                  hessian_free_delta: float = 1e-3):
  """FedAvg (client SGD with step beta) or Per-FedAvg (alpha, beta)."""
  if algorithm is Algorithm.FEDAVG:
    return tff_perfed.build_fedavg(model_fn, client_learning_rate=beta)
  return tff_perfed.build_per_fedavg(
      model_fn,
      inner_learning_rate=alpha,
      outer_learning_rate=beta,
      hessian_mode=hessian_mode,
      local_steps=local_steps,
      hessian_free_delta=hessian_free_delta)


def training_batch_sizes(algorithm: Algorithm,
                         batch_sizes: Sequence[int]) -> List[int]:
  """(b,) for FedAvg; (b, b', b'') for Per-FedAvg."""
  return list(batch_sizes[:1] if algorithm is Algorithm.FEDAVG else batch_sizes)


def training_datasets(dataset: federated_data.FederatedDataset,
                      client_ids: Sequence[str], *, algorithm: Algorithm,
                      batch_sizes: Sequence[int], local_steps: int,
                      round_num: int, seed: int) -> List[tf.data.Dataset]:
  """This round's batches for each sampled client."""
  sizes = training_batch_sizes(algorithm, batch_sizes)
  return [
      client_datasets.cycled_batches(
          dataset.train.create_tf_dataset_for_client(cid),
          batch_sizes=sizes,
          num_batches=len(sizes) * local_steps,
          seed=client_datasets.derive_seed(seed, 'train', round_num, cid))
      for cid in client_ids
  ]


def evaluation_datasets(dataset: federated_data.FederatedDataset,
                        client_ids: Sequence[str], *, batch_size: int,
                        personalization_steps: int, seed: int):
  """Adaptation batches (fixed across rounds) and test batches per client."""
  train = [
      client_datasets.cycled_batches(
          dataset.train.create_tf_dataset_for_client(cid),
          batch_sizes=[batch_size],
          num_batches=max(personalization_steps, 1),
          seed=client_datasets.derive_seed(seed, 'personalize', cid))
      for cid in client_ids
  ]
  test = [
      dataset.test.create_tf_dataset_for_client(cid).batch(EVAL_BATCH_SIZE)
      for cid in client_ids
  ]
  return train, test
