"""TFF's serialized TensorFlow computations as functions of this process's TF.

A `tff.tensorflow.computation` is stored as a `GraphDef` with bindings that
name its parameter and result tensors. `import_tensorflow_computation`
imports the graph once into a `tf.compat.v1.wrap_function` whose signature is
read from the graph's parameter placeholders, so every later call is one
eager function call: TensorFlow inside the Python process places its ops on
the local devices (`tf.device` at the call site), GPUs included, unlike TFF's
C++ worker.

Importing with `input_map` inside the wrapped body, rather than pruning a
wrapped import (`wrap_function(...).prune(...)`), matters: a pruned function
costs tens of milliseconds a call, the wrapped body about a hundred
microseconds.

Values are flat: `call(flat_inputs) -> flat_outputs`, lists of tensors in
binding order, where a sequence (dataset) is its variant tensor
(`tf.data.experimental.to_variant`). Structure is the interpreter's business
(`tff_perfed.runtime.in_process`).

`additions` recognises the computations that only add their two arguments
element-wise (the `accumulate` and `merge` of every TFF sum), which the
interpreter then folds without a graph call per client.
"""

import dataclasses
import itertools
from typing import Callable, List, Optional, Sequence

import tensorflow as tf
from tensorflow_federated.proto.v0 import computation_pb2
# TFF keeps its graph (de)serialization helpers internal; they are the only
# documented description of the binding format, so they are used as is.
from tensorflow_federated.python.core.impl.utils import tensorflow_utils
from tensorflow_federated.python.tensorflow_libs import serialization_utils

_unique_suffix = itertools.count()

# Ops a pure element-wise addition of two structures may contain.
_ADDITION_OPS = frozenset({'AddV2', 'Add'})
_PLUMBING_OPS = frozenset({'Placeholder', 'Identity', 'NoOp'})


@dataclasses.dataclass(frozen=True)
class ImportedComputation:
  """One TF computation, imported for calls in this process.

  Attributes:
    call: `call(flat_inputs) -> flat_outputs` (lists of eager tensors).
    input_names: The parameter's tensor names in binding order.
    output_names: The result's tensor names in binding order.
    output_is_sequence: Per output, whether it is a dataset's variant.
    is_addition: Whether the computation maps `<a, b>` to `a + b` leaf by
      leaf (and nothing else).
  """
  call: Callable[[Sequence[tf.Tensor]], List[tf.Tensor]]
  input_names: List[str]
  output_names: List[str]
  output_is_sequence: List[bool]
  is_addition: bool


def _binding_names(binding) -> List[str]:
  if not binding.WhichOneof('binding'):
    return []
  return tensorflow_utils.extract_tensor_names_from_binding(binding)


def _sequence_flags(binding) -> List[bool]:
  kind = binding.WhichOneof('binding')
  if kind == 'struct':
    return [flag for element in binding.struct.element
            for flag in _sequence_flags(element)]
  if kind is None:
    return []
  return [kind == 'sequence']


def _node_name(tensor_name: str) -> str:
  return tensor_name.split(':')[0].lstrip('^')


def _uniquify_shared_names(graph_def: tf.compat.v1.GraphDef) -> None:
  # Resources (variables, tables, iterators) named alike in two imported
  # graphs would otherwise be shared through the device's resource manager.
  suffix = f'in_process_{next(_unique_suffix)}'.encode()
  for node in graph_def.node:
    shared_name = node.attr.get('shared_name')
    if shared_name is not None:
      shared_name.s = (shared_name.s or b'resource') + b'_' + suffix


def _rename_functions(graph_def: tf.compat.v1.GraphDef) -> None:
  """Gives the graph's library functions names no other import uses.

  TF registers an imported graph's functions in the process-wide eager
  context by name; two computations traced separately can hold different
  functions of the same name (`__inference_predict_on_batch_18551`).
  """
  library = graph_def.library
  if not library.function:
    return
  suffix = f'_in_process_{next(_unique_suffix)}'
  renamed = {f.signature.name: f.signature.name + suffix
             for f in library.function}

  def rename_attr(value):
    if value.HasField('func') and value.func.name in renamed:
      value.func.name = renamed[value.func.name]
    for func in value.list.func:
      if func.name in renamed:
        func.name = renamed[func.name]

  def rename_nodes(nodes):
    for node in nodes:
      if node.op in renamed:
        node.op = renamed[node.op]
      for value in node.attr.values():
        rename_attr(value)

  rename_nodes(graph_def.node)
  for function in library.function:
    function.signature.name = renamed[function.signature.name]
    rename_nodes(function.node_def)
    for value in function.attr.values():
      rename_attr(value)
  for gradient in library.gradient:
    gradient.function_name = renamed.get(gradient.function_name,
                                         gradient.function_name)
    gradient.gradient_func = renamed.get(gradient.gradient_func,
                                         gradient.gradient_func)


def _drop_control_inputs_on_parameters(graph_def: tf.compat.v1.GraphDef,
                                       input_names: List[str]) -> None:
  """Removes control edges from the parameters' placeholders.

  `import_graph_def`'s `input_map` replaces a placeholder's tensor, not its
  node: an op that waits on a parameter (`^arg_weights...`, which TF adds when
  a switched-off term leaves a weight unused) would keep the placeholder in
  the graph unfed. A control edge on a value that is fed before the call
  orders nothing, so it is dropped.
  """
  parameters = {_node_name(name) for name in input_names}
  for node in graph_def.node:
    kept = [x for x in node.input
            if not (x.startswith('^') and _node_name(x) in parameters)]
    if len(kept) != len(node.input):
      del node.input[:]
      node.input.extend(kept)


def _is_addition(graph_def: tf.compat.v1.GraphDef, input_names: List[str],
                 output_names: List[str]) -> bool:
  """Whether the graph outputs input[i] + input[i + n/2] and nothing else."""
  if not input_names or len(input_names) != 2 * len(output_names):
    return False
  nodes = {node.name: node for node in graph_def.node}
  if any(node.op not in _ADDITION_OPS | _PLUMBING_OPS
         for node in graph_def.node):
    return False

  def source(name):  # Follows Identity ops back to a node.
    node = nodes.get(_node_name(name))
    while node is not None and node.op == 'Identity':
      node = nodes.get(_node_name(node.input[0]))
    return node

  half = len(output_names)
  for i, name in enumerate(output_names):
    node = source(name)
    if node is None or node.op not in _ADDITION_OPS:
      return False
    operands = [source(x) for x in node.input if not x.startswith('^')]
    expected = [nodes.get(_node_name(input_names[i])),
                nodes.get(_node_name(input_names[half + i]))]
    if len(operands) != 2 or any(o is None for o in operands) or (
        [o.name for o in operands] != [e.name for e in expected if e]):
      return False
  return True


def import_tensorflow_computation(
    proto: computation_pb2.Computation) -> ImportedComputation:
  """Imports a TFF TensorFlow computation proto for in-process calls.

  Args:
    proto: A `computation_pb2.Computation` whose `tensorflow` field is set.

  Returns:
    An `ImportedComputation`.

  Raises:
    ValueError: If `proto` is not a TensorFlow computation.
  """
  if proto.WhichOneof('computation') != 'tensorflow':
    raise ValueError('Expected a TensorFlow computation, got '
                     f'{proto.WhichOneof("computation")}.')
  tensorflow = proto.tensorflow
  graph_def = serialization_utils.unpack_graph_def(tensorflow.graph_def)
  input_names = _binding_names(tensorflow.parameter)
  output_names = _binding_names(tensorflow.result)
  is_addition = (not tensorflow.initialize_op and
                 _is_addition(graph_def, input_names, output_names))
  _uniquify_shared_names(graph_def)
  _rename_functions(graph_def)
  _drop_control_inputs_on_parameters(graph_def, input_names)
  placeholders = {node.name: node for node in graph_def.node
                  if node.op == 'Placeholder'}
  signature = []
  for name in input_names:
    node = placeholders[_node_name(name)]
    signature.append(
        tf.TensorSpec(tf.TensorShape(node.attr['shape'].shape),
                      tf.dtypes.as_dtype(node.attr['dtype'].type)))
  session_token: Optional[str] = tensorflow.session_token_tensor_name or None
  initialize_op: Optional[str] = tensorflow.initialize_op or None

  def body(*inputs):
    input_map = dict(zip(input_names, inputs))
    if session_token:
      input_map[session_token] = tf.constant('in_process')
    return_elements = list(output_names)
    if initialize_op:
      return_elements.append(initialize_op)
    imported = tf.graph_util.import_graph_def(
        graph_def, input_map=input_map, return_elements=return_elements,
        name='imported')
    outputs = imported[:len(output_names)]
    if initialize_op:
      # The initializer runs on every call, before the result is read, as the
      # C++ executor runs it once per session it creates for a call.
      with tf.control_dependencies([imported[-1]]):
        outputs = [tf.identity(output) for output in outputs]
    return list(outputs)

  wrapped = tf.compat.v1.wrap_function(body, signature)

  if output_names:
    def call(flat_inputs):
      return wrapped(*flat_inputs)
  else:
    def call(flat_inputs):
      del flat_inputs
      return []

  return ImportedComputation(
      call=call,
      input_names=input_names,
      output_names=output_names,
      output_is_sequence=_sequence_flags(tensorflow.result),
      is_addition=is_addition)
