"""Property tests of the loaders: random well-formed and malformed clients.

The only outcomes allowed: the checked dataset (whose clients all iterate),
the bad clients dropped (exactly those generated bad, each with a warning),
or one `DatasetError` line. Never another exception, never a hang.
"""

import collections
import tempfile

import hypothesis
from hypothesis import strategies as st
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed.data_utils import client_checks
from tff_perfed.data_utils import client_datasets
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import shakespeare
from tff_perfed.data_utils import tasks
import tff_files

_PIXELS = np.linspace(0, 1, 784, dtype=np.float32)

# Kinds of EMNIST example, and whether each is usable.
_EXAMPLE_KINDS = {
    'good': True, 'missing_label': False, 'missing_pixels': False,
    'few_pixels': False, 'int_pixels': False, 'label_out_of_range': False,
    'non_finite': False, 'garbage': False,
}


@st.composite
def _emnist_example(draw):
  kind = draw(st.sampled_from(sorted(_EXAMPLE_KINDS)))
  label = draw(st.integers(0, 61))
  if kind == 'good':
    proto = tff_files.example_proto(pixels=_PIXELS, label=[label])
  elif kind == 'missing_label':
    proto = tff_files.example_proto(pixels=_PIXELS)
  elif kind == 'missing_pixels':
    proto = tff_files.example_proto(label=[label])
  elif kind == 'few_pixels':
    size = draw(st.integers(0, 783))
    proto = tff_files.example_proto(pixels=_PIXELS[:size], label=[label])
  elif kind == 'int_pixels':
    proto = tff_files.example_proto(pixels=np.zeros(784, np.int64),
                                    label=[label])
  elif kind == 'label_out_of_range':
    bad_label = draw(st.one_of(st.integers(-2**40, -1),
                               st.integers(62, 2**40)))
    proto = tff_files.example_proto(pixels=_PIXELS, label=[bad_label])
  elif kind == 'non_finite':
    pixels = _PIXELS.copy()
    pixels[draw(st.integers(0, 783))] = draw(
        st.sampled_from([np.nan, np.inf, -np.inf]))
    proto = tff_files.example_proto(pixels=pixels, label=[label])
  else:
    # Bytes with an invalid wire type: no tf.train.Example parses them.
    proto = b'\x07' + draw(st.binary(max_size=20))
  return proto, _EXAMPLE_KINDS[kind]


_CLIENT_IDS = st.text(
    alphabet=st.characters(blacklist_categories=('Cs',)), min_size=1,
    max_size=8)


@hypothesis.given(st.dictionaries(
    _CLIENT_IDS, st.lists(_emnist_example(), min_size=1, max_size=3),
    min_size=1, max_size=4), st.booleans())
def test_random_emnist_clients_are_kept_dropped_or_refused_in_one_line(
    clients, strict):
  expected_bad = {
      client for client, examples in clients.items()
      if '\x00' in client or not all(usable for _, usable in examples)
  }
  train = {client: [proto for proto, _ in examples]
           for client, examples in clients.items()}
  with tempfile.TemporaryDirectory() as data_dir:
    tff_files.write_clients(f'{data_dir}/emnist_all.sqlite', train)
    task = tasks.get('emnist')
    try:
      dataset = task.load(data_dir=data_dir)
      checked = client_checks.check_clients(dataset, task, strict=strict)
    except federated_dataset.DatasetError as e:
      assert '\n' not in str(e)
      assert expected_bad and (strict or expected_bad == set(clients))
      return
    assert set(checked.dropped) == expected_bad
    assert sorted(checked.dataset.client_ids) == sorted(
        set(clients) - expected_bad)
    for client in checked.dataset.client_ids:
      (batches,) = client_datasets.training_datasets(
          checked.dataset.train, [client], batch_sizes=[2], local_steps=2,
          round_num=0, seed=0)
      for batch in batches:
        assert batch['x'].shape[1:] == (28, 28, 1)


_FLOATS = st.one_of(st.floats(0, 1, width=32),
                    st.sampled_from([np.nan, np.inf, -np.inf]))


@st.composite
def _in_memory_client(draw):
  n = draw(st.integers(1, 4))
  x = np.array(draw(st.lists(_FLOATS, min_size=n * 64, max_size=n * 64)),
               np.float32).reshape(n, 64)
  y = np.array(draw(st.lists(st.integers(-3, 12), min_size=n, max_size=n)),
               np.int32)
  return collections.OrderedDict(x=x, y=y)


@hypothesis.given(st.dictionaries(st.text(min_size=1, max_size=5),
                                  _in_memory_client(), min_size=1,
                                  max_size=4))
def test_random_in_memory_clients_are_dropped_exactly_when_bad(clients):
  expected_bad = {
      client for client, data in clients.items()
      if '\x00' in client or not np.isfinite(data['x']).all() or
      not ((0 <= data['y']) & (data['y'] <= 9)).all()
  }
  data = tff.simulation.datasets.TestClientData(clients)
  dataset = federated_dataset.FederatedDataset('digits', data, data, 10)
  try:
    checked = client_checks.check_clients(dataset, tasks.get('digits'),
                                          strict=False)
  except federated_dataset.DatasetError as e:
    assert '\n' not in str(e) and expected_bad == set(clients)
    return
  assert set(checked.dropped) == expected_bad


@hypothesis.settings(max_examples=10)  # Each example builds a pipeline.
@hypothesis.given(st.lists(st.integers(0, 300), max_size=6),
                  st.integers(1, 100))
def test_shakespeare_chunks_equal_per_character_batching(lengths, length):
  rng = np.random.default_rng(len(lengths) * 1000 + length)
  vectors = [rng.integers(1, 90, n).astype(np.int32) for n in lengths]
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(vectors),
      output_signature=tf.TensorSpec([None], tf.int32))
  per_character = [c.numpy().tolist() for c in
                   dataset.unbatch().batch(length)]
  assert [c.numpy().tolist() for c in
          shakespeare.chunk_stream(dataset, length)] == per_character
