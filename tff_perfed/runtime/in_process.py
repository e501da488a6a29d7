"""An in-process TFF runtime: TFF computations on this process's TensorFlow.

TFF 0.87 runs every computation in its C++ `worker_binary`, a CPU-only build
with its own static TensorFlow, reached over gRPC. The pip TensorFlow that
this package installs runs GPUs, but only inside the Python process. This
module executes the *same* TFF computations there:

1. compile with the C++ context's own compiler
   (`tff.backends.native.desugar_and_transform_to_native`): intrinsics
   desugared, call-dominant form, Grappler-optimized TF graphs, exactly the
   graphs the worker would run;
2. translate the compiled building blocks once into Python closures (an
   interpreter of TFF's intermediate language: lambdas, blocks, references,
   selections, structs, calls, intrinsics and TF computations);
3. import each TF computation once (`tensorflow_graphs`), so a call is one
   eager function call;
4. run `federated_map` over the clients concurrently (one thread per GPU,
   or per CPU core), each client's work under `tf.device` on the next local
   device (round-robin over the GPUs, or the CPU), results in client order.

It is a TFF `Executor` (`create_value`, `create_call`, `create_struct`,
`create_selection`) plugged into TFF's own `SyncExecutionContext`, so
arguments, cardinalities and results are handled by TFF as for every other
context, and any computation runs: learning processes, evaluations whose
results stay at CLIENTS, plain TF computations.

Placed values are plain Python: a value at SERVER is its member; a value at
CLIENTS is a list with one member per client; a struct is a tuple (names come
from the types); a sequence is a `tf.data.Dataset`.

`federated_aggregate` folds `accumulate` over the clients in client order, as
TFF's C++ executor does (`merge` is never needed in one process). When
`accumulate` is a pure element-wise addition (every TFF sum: the means and
counts of `tff.aggregators`), it is folded in NumPy, the same IEEE additions
in the same order, without a graph call per client.
"""

import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import itertools
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# For per-thread function call options (`_calls_as_in_tff_worker`).
from tensorflow.python.eager import context as tf_context
from tensorflow_federated.python.common_libs import structure
from tensorflow_federated.python.core.impl.compiler import building_blocks
from tensorflow_federated.python.core.impl.computation import computation_impl
# TFF exports no base classes for executors; these are the ones its own
# executors (`RemoteExecutor`) implement.
from tensorflow_federated.python.core.impl.executors import executor_base
from tensorflow_federated.python.core.impl.executors import executor_value_base
from tensorflow_federated.python.core.impl.utils import tensorflow_utils

from tff_perfed import validation
from tff_perfed.runtime import dataset_options
from tff_perfed.runtime import tensorflow_graphs

Env = Dict[str, Any]
Evaluator = Callable[[Env], Any]


class UnsupportedComputationError(NotImplementedError):
  """The computation uses a construct this runtime does not execute."""


def local_devices() -> List[str]:
  """The devices client work is spread over: every GPU, else the CPUs."""
  gpus = tf.config.list_logical_devices('GPU')
  if gpus:
    return [d.name for d in gpus]
  return [d.name for d in tf.config.list_logical_devices('CPU')]


# ---- values crossing the executor boundary ---------------------------------


def _to_internal(value, type_spec: tff.Type, num_clients: int,
                 fresh: Callable[[Any, tff.SequenceType], tf.data.Dataset]):
  """A value given to the executor, in the interpreter's representation."""
  if isinstance(type_spec, tff.FederatedType):
    member = type_spec.member
    if type_spec.placement is tff.CLIENTS:
      if type_spec.all_equal and not isinstance(value, (list, tuple)):
        return [_to_internal(value, member, num_clients, fresh)] * num_clients
      return [_to_internal(v, member, num_clients, fresh) for v in value]
    return _to_internal(value, member, num_clients, fresh)
  if isinstance(type_spec, tff.StructType):
    if not isinstance(value, structure.Struct):
      value = structure.from_container(value)
    return tuple(
        _to_internal(v, t, num_clients, fresh)
        for (_, v), t in zip(structure.iter_elements(value), type_spec))
  if isinstance(type_spec, tff.SequenceType):
    return fresh(value, type_spec)
  if isinstance(type_spec, tff.TensorType):
    return np.asarray(value, dtype=type_spec.dtype)
  return value


def _to_external(value, type_spec: tff.Type):
  """A computed value as TFF's other executors return it."""
  if isinstance(type_spec, tff.FederatedType):
    if type_spec.placement is tff.CLIENTS:
      if type_spec.all_equal:
        return _to_external(value[0], type_spec.member)
      return [_to_external(v, type_spec.member) for v in value]
    return _to_external(value, type_spec.member)
  if isinstance(type_spec, tff.StructType):
    return structure.Struct([
        (name, _to_external(v, t))
        for v, (name, t) in zip(value, structure.iter_elements(type_spec))
    ])
  if isinstance(value, (tf.Tensor, tf.Variable)):
    return value.numpy()
  return value


# Dataset ops that create their seed generator from their seeds when the
# generator they name does not exist (TF's shuffle_dataset_op.cc,
# random_dataset_op.cc).
_SEEDED_DATASET_OPS = frozenset(
    {'ShuffleDatasetV3', 'ShuffleAndRepeatDatasetV2', 'RandomDatasetV2'})
_fresh_names = itertools.count()


def fresh_copy(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """A copy of `dataset` that iterates as a never-iterated one would.

  A dataset's graph names the seed generators of its shuffles; rebuilt in
  this process it would share them with the original, whose state advances
  with every iteration. In TFF's worker the names do not exist, so each
  shuffle starts a new generator from its seeds. The copy renames the
  generators to names nobody uses, with the same effect.
  """
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString(tf.raw_ops.DatasetToGraphV2(
      input_dataset=tf.data.experimental.to_variant(dataset)).numpy())
  nodes = {node.name: node for node in graph_def.node}
  suffix = f'_fresh_{next(_fresh_names)}'
  for node in graph_def.node:
    if node.op not in _SEEDED_DATASET_OPS:
      continue
    for name in node.input:
      source = nodes.get(name.split(':')[0])
      if source is None or source.op != 'Const':
        continue
      tensor = source.attr['value'].tensor
      if tensor.dtype == tf.resource.as_datatype_enum:
        for handle in tensor.resource_handle_val:
          handle.name += suffix
  variant = tf.raw_ops.DatasetFromGraph(
      graph_def=graph_def.SerializeToString())
  return tf.data.experimental.from_variant(variant, dataset.element_spec)


# ---- TF computations ------------------------------------------------------


def _flattener(type_spec: tff.Type) -> Callable[[Any, list], None]:
  """Appends a value's tensors to a list in binding order."""
  if isinstance(type_spec, tff.StructType):
    parts = [_flattener(t) for t in type_spec]

    def flatten_struct(value, out):
      for part, item in zip(parts, value):
        part(item, out)

    return flatten_struct
  if isinstance(type_spec, tff.SequenceType):
    return lambda value, out: out.append(
        tf.data.experimental.to_variant(value))
  return lambda value, out: out.append(value)


def _unflattener(type_spec: tff.Type) -> Callable[[Any], Any]:
  """Rebuilds a value from an iterator over its tensors."""
  if isinstance(type_spec, tff.StructType):
    parts = [_unflattener(t) for t in type_spec]
    return lambda flat: tuple(part(flat) for part in parts)
  if isinstance(type_spec, tff.SequenceType):
    element_spec = tff.types.type_to_tf_tensor_specs(type_spec.element)
    return lambda flat: tf.data.experimental.from_variant(
        next(flat), structure=element_spec)
  return next


class _TensorFlowFunction:
  """A compiled TF computation as a function of interpreter values."""

  def __init__(self, imported: tensorflow_graphs.ImportedComputation,
               type_signature: tff.FunctionType):
    self.imported = imported
    self._parameter = type_signature.parameter
    self._flatten = (_flattener(type_signature.parameter)
                     if type_signature.parameter is not None else None)
    self._unflatten = _unflattener(type_signature.result)
    self._call = imported.call

  def __call__(self, arg=None):
    flat = []
    if self._flatten is not None:
      self._flatten(arg, flat)
    return self._unflatten(iter(self._call(flat)))


def shared_tensors(value):
  """`value` with its NumPy leaves made EagerTensors, once, for many calls.

  A concrete function converts each NumPy argument into a new EagerTensor on
  every call. With TF 2.14 on Python 3.11 every EagerTensor leaks about 16
  bytes when it is freed (its type inherits CPython 3.11's managed instance
  dict, whose values block TF's deallocator never frees; TF issue #62551), so
  a value given to every client is converted once and shared.
  """
  if isinstance(value, tuple):
    return tuple(shared_tensors(v) for v in value)
  if isinstance(value, (np.ndarray, np.generic)):
    return tf.convert_to_tensor(value)
  return value


def _numpy(value):
  return value.numpy() if isinstance(value, tf.Tensor) else value


def _add_leaves(a, b):
  if isinstance(a, tuple):
    return tuple(_add_leaves(x, y) for x, y in zip(a, b))
  return np.add(_numpy(a), _numpy(b))


def _add_in_place(total, value) -> None:
  """total += value leaf by leaf; `total` is made by `_writable_copy`."""
  if isinstance(total, tuple):
    for t, v in zip(total, value):
      _add_in_place(t, v)
  else:
    np.add(total, _numpy(value), out=total)


def _writable_copy(value):
  if isinstance(value, tuple):
    return tuple(_writable_copy(v) for v in value)
  return np.array(_numpy(value))


# ---- the interpreter ------------------------------------------------------


class _Interpreter:
  """Translates compiled building blocks into closures over an environment.

  Every function value, whatever built it, is a Python callable of one
  argument (`None` for no-argument functions).
  """

  def __init__(self, runtime: '_Runtime'):
    self._runtime = runtime

  def compile(self, block: building_blocks.ComputationBuildingBlock
             ) -> Evaluator:
    method = getattr(self, f'_compile_{type(block).__name__}', None)
    if method is None:
      raise UnsupportedComputationError(
          f'the in_process runtime cannot execute a {type(block).__name__} '
          'building block.')
    return method(block)

  def _compile_Reference(self, block):  # pylint: disable=invalid-name
    name = block.name
    return lambda env: env[name]

  def _compile_Selection(self, block):  # pylint: disable=invalid-name
    source = self.compile(block.source)
    index = block.as_index()
    return lambda env: source(env)[index]

  def _compile_Struct(self, block):  # pylint: disable=invalid-name
    elements = [self.compile(e) for e in block]
    return lambda env: tuple(e(env) for e in elements)

  def _compile_Call(self, block):  # pylint: disable=invalid-name
    argument = (self.compile(block.argument)
                if block.argument is not None else (lambda env: None))
    if isinstance(block.function,
                  (building_blocks.Intrinsic,
                   building_blocks.CompiledComputation)):
      # Known at translation time: call it directly.
      function = self.compile(block.function)(None)
      return lambda env: function(argument(env))
    function = self.compile(block.function)
    return lambda env: function(env)(argument(env))

  def _compile_Lambda(self, block):  # pylint: disable=invalid-name
    result = self.compile(block.result)
    name = block.parameter_name

    def make_function(env):
      if name is None:
        return lambda arg=None: result(env)

      def function(arg=None):
        inner = dict(env)
        inner[name] = arg
        return result(inner)

      return function

    return make_function

  def _compile_Block(self, block):  # pylint: disable=invalid-name
    local_values = [(name, self.compile(value))
                    for name, value in block.locals]
    result = self.compile(block.result)

    def evaluate(env):
      env = dict(env)
      for name, value in local_values:
        env[name] = value(env)
      return result(env)

    return evaluate

  def _compile_Literal(self, block):  # pylint: disable=invalid-name
    value = np.asarray(block.value, dtype=block.type_signature.dtype)
    return lambda env: value

  def _compile_Placement(self, block):  # pylint: disable=invalid-name
    uri = block.uri
    return lambda env: uri

  def _compile_CompiledComputation(self, block):  # pylint: disable=invalid-name
    function = self._runtime.tensorflow_function(block)
    return lambda env: function

  def _compile_Intrinsic(self, block):  # pylint: disable=invalid-name
    uri = block.uri
    implementation = getattr(self, f'_intrinsic_{uri}', None)
    if implementation is None:
      raise UnsupportedComputationError(
          f'the in_process runtime does not implement the intrinsic {uri}.')
    function = implementation(block.type_signature)
    return lambda env: function

  # Intrinsics: each takes the intrinsic's type and returns its function.

  def _map_clients(self, function, values):
    return self._runtime.map_clients(function, values)

  def _intrinsic_federated_map(self, type_signature):
    at_server = type_signature.parameter[1].placement is tff.SERVER
    if at_server:
      return lambda arg: arg[0](arg[1])
    return lambda arg: self._map_clients(arg[0], arg[1])

  _intrinsic_federated_map_all_equal = _intrinsic_federated_map

  def _intrinsic_federated_apply(self, type_signature):
    del type_signature
    return lambda arg: arg[0](arg[1])

  def _intrinsic_federated_broadcast(self, type_signature):
    del type_signature

    def broadcast(value):
      # Every client's call reads the same tensors: a NumPy leaf would
      # become a new EagerTensor in each client's call, and each EagerTensor
      # leaks (`shared_tensors`).
      return [shared_tensors(value)] * self._runtime.num_clients

    return broadcast

  def _intrinsic_federated_value_at_clients(self, type_signature):
    return self._intrinsic_federated_broadcast(type_signature)

  def _intrinsic_federated_value_at_server(self, type_signature):
    del type_signature
    return lambda value: value

  def _intrinsic_federated_eval_at_server(self, type_signature):
    del type_signature
    return lambda function: function(None)

  def _intrinsic_federated_eval_at_clients(self, type_signature):
    del type_signature
    return lambda function: self._map_clients(
        lambda _: function(None), [None] * self._runtime.num_clients)

  def _intrinsic_federated_zip_at_server(self, type_signature):
    del type_signature
    return lambda value: value

  def _intrinsic_federated_zip_at_clients(self, type_signature):
    parameter = type_signature.parameter

    def zip_leaves(value, type_spec, i):
      if isinstance(type_spec, tff.StructType):
        return tuple(zip_leaves(v, t, i) for v, t in zip(value, type_spec))
      return value[i]

    return lambda value: [
        zip_leaves(value, parameter, i)
        for i in range(self._runtime.num_clients)
    ]

  def _intrinsic_federated_aggregate(self, type_signature):
    del type_signature

    def aggregate(arg):
      values, zero, accumulate, _, report = arg
      if getattr(accumulate, 'imported', None) is not None and (
          accumulate.imported.is_addition):
        # In place: a model-sized sum per client would otherwise allocate
        # a model-sized array per client.
        total = _writable_copy(zero)
        for value in values:
          _add_in_place(total, value)
      else:
        total = zero
        for value in values:
          total = accumulate((total, value))
      return report(total)

    return aggregate

  # federated_sum, _mean, _weighted_mean, _min and _max never reach the
  # interpreter: TFF's compiler replaces them by federated_aggregate.

  def _sum(self, values, zero_like):
    total = None
    for value in values:
      total = value if total is None else _add_leaves(total, value)
    if total is None:
      total = zero_like
    return tf.nest.map_structure(_numpy, total)

  def _intrinsic_federated_secure_sum(self, type_signature):
    # In simulation the secure sums are plain sums; the bound is TFF's
    # promise to the cryptography, not part of the result.
    zero = _zeros(type_signature.result.member)
    return lambda arg: self._sum(arg[0], zero)

  _intrinsic_federated_secure_sum_bitwidth = _intrinsic_federated_secure_sum

  def _intrinsic_sequence_reduce(self, type_signature):
    element_type = type_signature.parameter[0].element

    def reduce(arg):
      dataset, zero, op = arg
      total = zero
      for element in dataset:
        total = op((total, _to_internal(element, element_type, 0, None)))
      return total

    return reduce


def _zeros(type_spec: tff.Type):
  if isinstance(type_spec, tff.StructType):
    return tuple(_zeros(t) for t in type_spec)
  return np.zeros(type_spec.shape, type_spec.dtype)


# ---- the runtime, executor and context ------------------------------------


@contextlib.contextmanager
def _calls_as_in_tff_worker():
  """TF function calls on this thread skip Grappler, as TFF's worker does.

  The compiler already ran Grappler on every graph; running it again when
  TF instantiates each imported function costs the first round about half a
  second and changes nothing. Function call options are per thread, so the
  program's own functions are unaffected.
  """
  eager = tf_context.context()
  before = eager.function_call_options
  config = tf.compat.v1.ConfigProto()
  config.CopyFrom(eager.config)
  config.allow_soft_placement = True
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  eager.function_call_options = tf_context.FunctionCallOptions(
      executor_type=before.executor_type, config_proto=config)
  try:
    yield
  finally:
    eager.function_call_options = before


class _Runtime:
  """State shared by every executor of one context: devices and caches."""

  def __init__(self, devices: Optional[Sequence[str]],
               parallelism: Optional[int]):
    # Resolved on first use: listing logical devices initializes TF, after
    # which a program can no longer configure them.
    self._devices = list(devices) if devices is not None else None
    self._parallelism = parallelism
    self._resolved = False
    self._lock = threading.Lock()
    self._tensorflow_functions: Dict[bytes, _TensorFlowFunction] = {}
    # id(computation) -> (computation, function); the computation is kept
    # so that its id is never reused.
    self._computations: Dict[int, Any] = {}
    self._computations_by_content: Dict[bytes, Any] = {}
    self._seen_datasets = weakref.WeakSet()
    # The cardinality of the call being executed (calls run one at a time,
    # on the context's thread; see `InProcessExecutor.create_call`).
    self.num_clients = 0
    # What was built, for tests and benchmarks: a steady round adds nothing.
    self.stats = collections.Counter(translations=0, imported_graphs=0)
    self._pool = None

  def fresh_dataset(self, value, type_spec: tff.SequenceType
                   ) -> tf.data.Dataset:
    """A dataset that iterates as if it had never been iterated.

    TFF's other runtimes serialize every dataset argument and rebuild it in
    the worker, so each call iterates a fresh copy: a dataset passed to
    several calls (the evaluation's adaptation batches) reshuffles the same
    way each time. This runtime passes a dataset as is the first time it
    sees it, and later a copy rebuilt as the worker would (`fresh_copy`).

    Every dataset iterates with the package's pipeline options unless it
    sets them itself (`dataset_options`): a user's own pipelines then cost
    no more per client than the package's.
    """
    if not isinstance(value, tf.data.Dataset):
      return tensorflow_utils.make_data_set_from_elements(
          None, list(value), type_spec.element)
    with self._lock:
      first_use = value not in self._seen_datasets
      if first_use:
        self._seen_datasets.add(value)
    dataset = value if first_use else fresh_copy(value)
    return dataset_options.with_pipeline_options(dataset)

  def tensorflow_function(self, block) -> _TensorFlowFunction:
    key = block.proto.SerializeToString(deterministic=True)
    with self._lock:
      function = self._tensorflow_functions.get(key)
      if function is None:
        function = _TensorFlowFunction(
            tensorflow_graphs.import_tensorflow_computation(block.proto),
            block.type_signature)
        self._tensorflow_functions[key] = function
        self.stats['imported_graphs'] += 1
    return function

  def function_for(self, computation):
    """The computation, compiled and translated once.

    Cached by identity (no hashing on the hot path), then by content, so
    that an equal computation built again (the same algorithm for another
    seed) is not compiled again. The translation does not depend on the
    number of clients (read from `num_clients` when it runs), so a round
    with more or fewer clients compiles, imports and traces nothing new.
    """
    with self._lock:
      entry = self._computations.get(id(computation))
    if entry is not None:
      return entry[1]
    proto = computation_impl.ConcreteComputation.get_proto(computation)
    key = proto.SerializeToString(deterministic=True)
    with self._lock:
      function = self._computations_by_content.get(key)
    if function is None:
      compiled = tff.backends.native.desugar_and_transform_to_native(
          computation)
      block = building_blocks.ComputationBuildingBlock.from_proto(
          computation_impl.ConcreteComputation.get_proto(compiled))
      function = _Interpreter(self).compile(block)({})
      with self._lock:
        self._computations_by_content[key] = function
        self.stats['translations'] += 1
    with self._lock:
      self._computations[id(computation)] = (computation, function)
    return function

  @property
  def devices(self) -> List[str]:
    """The devices client work runs on (resolved, and the pool made, once)."""
    if not self._resolved:
      with self._lock:
        if not self._resolved:
          if self._devices is None:
            self._devices = local_devices()
          if self._parallelism is None:
            self._parallelism = default_parallelism(self._devices)
          if self._parallelism > 1:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._parallelism,
                thread_name_prefix='tff_perfed_in_process')
          self._resolved = True
    return self._devices

  @property
  def parallelism(self) -> int:
    """Clients executed at once."""
    self.devices  # pylint: disable=pointless-statement
    return self._parallelism

  def map_clients(self, function, values):
    """`[function(v) for v in values]`, client i on device i mod #devices.

    Clients run concurrently on `parallelism` threads (TF releases the GIL
    while a graph runs), results in client order: clients are independent,
    so the numbers do not depend on the schedule.
    """
    devices = self.devices
    if self._pool is None or len(values) < 2:
      with tf.device(devices[0]):
        return [function(v) for v in values]

    def run_client(i):
      with _calls_as_in_tff_worker(), tf.device(devices[i % len(devices)]):
        return function(values[i])

    return list(self._pool.map(run_client, range(len(values))))

  def close(self):
    if self._pool is not None:
      self._pool.shutdown(wait=False)


class _Value(executor_value_base.ExecutorValue):

  def __init__(self, value, type_spec: tff.Type):
    self._value = value
    self._type_signature = type_spec

  @property
  def type_signature(self):
    return self._type_signature

  @property
  def reference(self):
    return self._value

  async def compute(self):
    return _to_external(self._value, self._type_signature)


class InProcessExecutor(executor_base.Executor):
  """Executes TFF computations in this process (see the module docstring)."""

  def __init__(self, runtime: _Runtime, num_clients: int):
    self._runtime = runtime
    self._num_clients = num_clients

  async def create_value(self, value, type_spec=None):
    if isinstance(value, tff.Computation):
      function = self._runtime.function_for(value)
      return _Value(function, value.type_signature)
    if type_spec is None:
      raise TypeError('The in_process runtime needs the type of every value.')
    return _Value(
        _to_internal(value, type_spec, self._num_clients,
                     self._runtime.fresh_dataset), type_spec)

  async def create_call(self, comp, arg=None):
    # Synchronous from here on: no other call can change `num_clients`.
    self._runtime.num_clients = self._num_clients
    function = comp.reference
    with _calls_as_in_tff_worker():
      result = function(arg.reference if arg is not None else None)
    return _Value(result, comp.type_signature.result)

  async def create_struct(self, elements):
    elements = structure.to_elements(structure.from_container(elements))
    return _Value(
        tuple(v.reference for _, v in elements),
        tff.StructType([(name, v.type_signature) for name, v in elements]))

  async def create_selection(self, source, index):
    return _Value(source.reference[index], source.type_signature[index])

  def close(self):
    pass


# glibc's mallopt parameter for the number of malloc arenas (<malloc.h>).
_M_ARENA_MAX = -8
DEFAULT_MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int) -> bool:
  """Caps glibc's malloc arenas at `count` (arenas made from now on).

  glibc gives threads that allocate at once arenas of their own, up to 8 per
  core, and each arena keeps pages freed in it. The client threads (and
  TF's) allocate and free tensors every round. Capped at 2 here, a
  2,000-round digits run ended at 845 MiB against 857-871 and grew +2.1%
  from round 100 instead of +3.8-4.6%, although its climb over the last
  1,000 rounds (about 16 KiB a round) did not change
  (`binaries.benchmark --suite=memory`, one run each; runs differ by about
  1%). A `MALLOC_ARENA_MAX` in the
  environment is the user's choice and wins.

  Returns:
    Whether the limit was set (False without glibc, or when the environment
    sets it).
  """
  if 'MALLOC_ARENA_MAX' in os.environ:
    return False
  name = ctypes.util.find_library('c')
  if not name:
    return False
  try:
    return bool(ctypes.CDLL(name).mallopt(_M_ARENA_MAX, int(count)))
  except (OSError, AttributeError):
    return False


def default_parallelism(devices: Sequence[str]) -> int:
  """Clients run at once: one per GPU; on CPUs, one per core (at most 8).

  On CPUs small models leave cores idle within one client (TFF's C++ worker
  runs clients concurrently for the same reason); large ones already use
  every core through TF's intra-op threads and lose little by it.
  """
  if any('GPU' in device.upper() for device in devices):
    return len(devices)
  return max(len(devices), min(os.cpu_count() or 1, 8))


def create_in_process_execution_context(
    *, devices: Optional[Sequence[str]] = None,
    parallelism: Optional[int] = None, default_num_clients: int = 0,
    malloc_arenas: Optional[int] = DEFAULT_MALLOC_ARENAS
) -> tff.framework.SyncExecutionContext:
  """A synchronous TFF context that runs computations in this process.

  Args:
    devices: TF device names to spread client work over, round-robin; by
      default `local_devices()` (every GPU, else the CPU).
    parallelism: Clients executed at once (threads); by default
      `default_parallelism(devices)`. 1 runs them one after the other.
    default_num_clients: Client cardinality when no argument tells it.
    malloc_arenas: Cap on glibc's malloc arenas for the rest of the process
      (`limit_malloc_arenas`), so that memory stays flat over long runs;
      None leaves glibc's default.

  Returns:
    A `tff.framework.SyncExecutionContext`.

  Raises:
    tff_perfed.validation.ArgumentError: If `devices` is empty or
      `parallelism` is below 1.
  """
  if devices is not None and not list(devices):
    raise validation.ArgumentValueError('devices', 'at least one TF device',
                                        devices)
  if parallelism is not None:
    validation.require_int('parallelism', parallelism, minimum=1)
  if malloc_arenas is not None:
    validation.require_int('malloc_arenas', malloc_arenas, minimum=1)
    limit_malloc_arenas(malloc_arenas)
  runtime = _Runtime(devices, parallelism)

  def executor_stack_fn(cardinalities):
    num_clients = cardinalities.get(tff.CLIENTS) or default_num_clients
    return InProcessExecutor(runtime, num_clients)

  context = tff.framework.SyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(
          executor_stack_fn=executor_stack_fn),
      # Compiled by the executor, cached by identity: TFF's pipeline hashes
      # the whole serialized computation on every call.
      compiler_fn=None,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)
  context.in_process_runtime = runtime
  return context
