"""The tf.data options every client dataset iterates with, whoever built it.

tf.data rewrites and autotunes a pipeline each time an iterator is made, that
is once per client and round; for datasets of a few batches that costs about
8 ms, most of a small model's client work. The package's datasets carry
these options (`data_utils.client_datasets`), and the `in_process` runtime
adds them to a user's own datasets (an option the user set stays as set), so
a client costs the same whoever built its pipeline.
"""

import tensorflow as tf


def pipeline_options() -> tf.data.Options:
  """Options for a client dataset: no static rewrites, no autotuning."""
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  options.autotune.enabled = False
  return options


def with_pipeline_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """`dataset` with `pipeline_options()` wherever it left an option unset.

  Args:
    dataset: Any dataset; its own options win over the package's.

  Returns:
    `dataset` itself when it already has the package's options in effect,
    else the dataset with them added.
  """
  own = dataset.options()
  added = tf.data.Options()
  if own.experimental_optimization.apply_default_optimizations is None:
    added.experimental_optimization.apply_default_optimizations = False
  if own.autotune.enabled is None:
    added.autotune.enabled = False
  if added == tf.data.Options():
    return dataset  # Both set, by us or by the user.
  return dataset.with_options(added)
