"""The task registry: names, errors, and every task's batch layout."""

import numpy as np
import pytest
import tensorflow as tf

from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import tasks
from tff_perfed import validation


def test_unknown_dataset_fails_listing_the_known_ones():
  with pytest.raises(validation.ArgumentValueError) as error:
    tasks.get('mnist_fashion')
  message = str(error.value)
  assert "'mnist_fashion'" in message
  for name in tasks.names():
    assert name in message


def test_registry_is_keyed_by_each_task_name():
  assert list(tasks.TASKS) == tasks.names()
  for name, task in tasks.TASKS.items():
    assert task.name == name


@pytest.mark.parametrize('name', tasks.names())
def test_every_task_yields_batches_its_model_accepts(name):
  task = tasks.get(name)
  dataset = task.load(use_synthetic_data=True, seed=0)
  assert dataset.num_classes == task.num_classes
  model = task.build_model(0)
  client = dataset.client_ids[0]
  for split in (dataset.train, dataset.test):
    batch = next(iter(client_datasets.cycled_batches(
        split.create_tf_dataset_for_client(client), batch_sizes=[3],
        num_batches=1, seed=0)))
    # The batch layout is the model's input_spec, exactly.
    for key, spec in model.input_spec.items():
      assert spec.is_compatible_with(tf.TensorSpec.from_tensor(batch[key]))
    labels = batch['y'].numpy()
    assert labels.min() >= 0 and labels.max() < task.num_classes
    logits = model.predict_on_batch(model.initial_weights, batch['x'])
    assert logits.shape[-1] == task.num_classes
    assert np.all(np.isfinite(model.loss(logits, batch['y'])))
