"""The cost and fairness metrics of the AFML comparison (section 5).

AFML (section 5, "Efficiency performance" and "Fairness comparison", Fig. 4
and 5) compares federated algorithms beyond accuracy by:

* Bytes: what crosses the network. `communication_bytes` reads it off the
  TFF type signatures of a learning process compiled to
  `tff.backends.mapreduce.MapReduceForm`, the canonical form of one round
  deployable to a real system: down = the value the server broadcasts to each
  client (the result of `prepare`, `work`'s second argument), up = everything
  a client's `work` returns (the input of `federated_aggregate` plus the
  secure-sum parts). Tensors count num_elements * dtype size: the raw,
  uncompressed payload, without protocol framing or secure-aggregation
  masking. The choice of MapReduceForm rather than the process's own
  signatures makes the count include only what really leaves the server or a
  client (e.g. not the server optimizer's state, which stays on the server).
* FLOPs: `flops` counts the floating-point operations of one call of a
  TensorFlow function with TF's profiler (what it counts and misses is in its
  docstring); multiplied by steps and clients by the caller.
* Rounds to a target accuracy: `rounds_to_target`, the first evaluated round
  whose value reaches the target (Fig. 3 (c), (d)).
* Fairness: `fairness`, the fraction of clients whose personalized model is
  strictly more accurate than a model trained only on their own data (Fig. 4
  (b), 5; the local models come from
  `tff_perfed.evaluation.local_models`). Ties count as not better: a
  personalized model that only matches the client's own model brought it
  nothing. Clients without two finite accuracies are left out, as the
  personalized summaries leave them out.
"""

import dataclasses
import math
import numbers
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# The profiler's own registry of flops statistics (`tf.RegisterStatistics`);
# queried op by op to report ops it would silently skip.
from tensorflow.python.framework import ops as tf_ops  # pylint: disable=g-direct-tensorflow-import

from tff_perfed import validation
from tff_perfed.templates import client_state_process

# Ops whose bodies run a data-dependent number of times (or not at all): the
# profiler does not look inside them.
_CONTROL_FLOW_OPS = frozenset({
    'While', 'StatelessWhile', 'If', 'StatelessIf', 'Case', 'StatelessCase'
})
# Calls of functions the profiler does not look into either; `flops` inlines
# nested `tf.function`s so that none should remain.
_CALL_OPS = frozenset({'PartitionedCall', 'StatefulPartitionedCall'})
# The compiler's messages can print whole computations.
_MAX_REASON_CHARS = 200


@dataclasses.dataclass(frozen=True)
class CommunicationCost:
  """Bytes one client exchanges with the server in one round.

  Attributes:
    down_bytes_per_client: Bytes broadcast from the server to each client.
    up_bytes_per_client: Bytes each client sends for aggregation.
  """
  down_bytes_per_client: int
  up_bytes_per_client: int

  @property
  def bytes_per_client(self) -> int:
    """Down plus up bytes of one client in one round."""
    return self.down_bytes_per_client + self.up_bytes_per_client

  def total_bytes(self, rounds: int, clients_per_round: int) -> int:
    """rounds * clients_per_round * (down + up): a whole training run."""
    validation.require_int('rounds', rounds, minimum=0)
    validation.require_int('clients_per_round', clients_per_round, minimum=1)
    return rounds * clients_per_round * self.bytes_per_client


def type_bytes(type_spec: tff.Type) -> int:
  """Bytes of a value of a TFF type: sum of num_elements * dtype size.

  Structures sum their elements; a federated type counts one member (the
  value one client or the server holds).

  Raises:
    ValueError: If the size is not fixed by the type: a tensor with an
      unknown dimension or a variable-length dtype (strings), a sequence, or
      a function, placement or abstract type.
  """
  if isinstance(type_spec, tff.TensorType):
    dtype = np.dtype(type_spec.dtype)
    if dtype.kind in 'OSUV' or dtype.itemsize == 0:
      raise ValueError(f'type_bytes: {type_spec} has no fixed size per '
                       'element.')
    shape = type_spec.shape
    if shape is None or any(dim is None for dim in shape):
      raise ValueError(f'type_bytes: {type_spec} has an unknown dimension.')
    return math.prod(shape) * dtype.itemsize
  if isinstance(type_spec, tff.StructType):
    return sum(type_bytes(element) for element in type_spec)
  if isinstance(type_spec, tff.FederatedType):
    return type_bytes(type_spec.member)
  raise ValueError(f'type_bytes: {type_spec} ({type(type_spec).__name__}) has '
                   'no fixed size in bytes.')


def _next_with_client_states_local(
    process: client_state_process.ClientStateLearningProcess
) -> tff.Computation:
  """`next` as `(<S@SERVER, {<data, C>}@CLIENTS> -> <S, metrics>@SERVER)`.

  A client's state stays on the client: it is input beside the client's
  data and its new value is not returned, so that MapReduceForm sees only
  what crosses the network.
  """
  parameter = process.next.type_signature.parameter
  data_type, state_type = parameter[1].member, process.client_state_type

  @tff.federated_computation(
      parameter[0],
      tff.FederatedType(tff.StructType([data_type, state_type]), tff.CLIENTS))
  def next_fn(state, data_and_client_states):
    output = process.next(state, data_and_client_states[0],
                          data_and_client_states[1])
    return output.state, output.metrics

  return next_fn


def communication_bytes(
    process: tff.templates.IterativeProcess) -> CommunicationCost:
  """Bytes per client and round of a learning process's `next`.

  `process.next` is compiled to `tff.backends.mapreduce.MapReduceForm`
  (about a second for the processes of `tff_perfed.algorithms`): down is the
  size of `prepare`'s result, broadcast to every client; up is the size of
  everything `work` returns (the value given to `federated_aggregate` and the
  three secure-sum parts). For FedAvg and Per-FedAvg, down is the model
  weights and up the model update, its aggregation weight and the summable
  metric state (plus, for Per-FedAvg, its int32 non-finite-update flag).

  Args:
    process: A `tff.learning.templates.LearningProcess` (any
      `tff.templates.IterativeProcess` whose `next` takes
      `<state@SERVER, data@CLIENTS>`), or a
      `templates.ClientStateLearningProcess`, whose client states stay on
      the clients and are not counted.

  Returns:
    A `CommunicationCost`.

  Raises:
    TypeError: If `process` is not an iterative process.
    ValueError: If `next` cannot be compiled to MapReduceForm, or what
      crosses the network has no fixed size.
  """
  if not isinstance(process, tff.templates.IterativeProcess):
    raise validation.ArgumentTypeError(
        'process', 'a tff.learning.templates.LearningProcess',
        type(process).__name__)
  next_fn = process.next
  if isinstance(process, client_state_process.ClientStateLearningProcess):
    next_fn = _next_with_client_states_local(process)
  try:
    form = tff.backends.mapreduce.get_map_reduce_form_for_computation(
        next_fn)
  except Exception as e:  # pylint: disable=broad-except
    # The compiler raises many kinds of errors, with long messages.
    reason = (str(e).strip().splitlines() or [''])[0]
    if len(reason) > _MAX_REASON_CHARS:
      reason = reason[:_MAX_REASON_CHARS] + '...'
    raise ValueError(
        'communication_bytes: process.next cannot be compiled to '
        f'MapReduceForm ({type(e).__name__}: {reason})') from e
  work_type = form.work.type_signature
  return CommunicationCost(
      down_bytes_per_client=type_bytes(work_type.parameter[1]),
      up_bytes_per_client=type_bytes(work_type.result))


def _trace_inlined(fn, args) -> tf.Graph:
  # With functions run eagerly, a `tf.function` called while tracing runs its
  # Python function, so nested tf.functions (e.g. a FunctionalModel's
  # predict_on_batch and loss) and their gradients land in the one graph the
  # profiler reads, instead of function calls it does not look into. The
  # setting is global: do not count FLOPs while another thread traces.
  previous = tf.config.functions_run_eagerly()
  tf.config.run_functions_eagerly(True)
  try:
    return tf.function(fn).get_concrete_function(*args).graph
  except tf.errors.OperatorNotAllowedInGraphError as e:
    raise ValueError(
        'flops: a nested tf.function was traced without AutoGraph and uses '
        'Python control flow on a tensor; pass a function that uses '
        f'tf.cond/tf.while_loop there ({e})') from e
  finally:
    tf.config.run_functions_eagerly(previous)


def flops(fn, *args, ignore_control_flow: bool = False) -> int:
  """Floating-point operations of one call of `fn(*args)`, per TF's profiler.

  `fn` (a Python function or `tf.function`) is traced on the example
  arguments, with every nested `tf.function` inlined, and the graph is
  counted by `tf.compat.v1.profiler.profile` with
  `ProfileOptionBuilder.float_operation()`: the sum over ops of their
  registered "flops" statistics, which depend on static shapes only.

  Counted (TF 2.14's registry): MatMul and BatchMatMul (2 * m * n * k),
  Conv2D/Conv3D/DepthwiseConv2dNative, and the gradient ops of backprop that
  are themselves such ops: the MatMuls of a matmul's gradient,
  Conv2DBackpropInput/Filter, BiasAddGrad, AvgPool/MaxPool(Grad); one flop
  per output element for Add/AddV2/Sub/Mul/RealDiv/Neg/Square/Reciprocal/
  Rsqrt/Log/Pow/Maximum/Minimum/BiasAdd/comparisons, n - 1 for Sum and n for
  Mean over n elements, AddN, ArgMax/ArgMin, Softmax (5 per element) and
  L2Loss. A gradient tape's ops count only where TF builds them: the
  gradient of a first layer's input is not computed, so not counted.

  Not counted (no registered statistic, so 0): Exp, Tanh, Sigmoid, Relu,
  Elu and their gradients (EluGrad, ...), SparseSoftmaxCrossEntropyWithLogits
  (the usual loss), Cast, gathers and data movement. Not counted either:
  anything inside control flow (tf.while_loop, tf.cond, `for` over a
  tensor or dataset in AutoGraph), whose bodies the profiler never looks
  into: pass a one-step function and multiply by the number of steps.

  Args:
    fn: The function; called once while tracing.
    *args: Example arguments (tensors, or nests of them, with fully known
      shapes: the count depends on them, e.g. on the batch size).
    ignore_control_flow: Count a function containing control flow anyway,
      leaving the control-flow bodies out (a lower bound).

  Returns:
    The total number of floating-point operations.

  Raises:
    ValueError: If an op with a flops statistic has an incomplete shape (the
      profiler would skip it), a function call could not be inlined, or the
      function contains control flow and `ignore_control_flow` is False.
  """
  graph = _trace_inlined(fn, args)
  ops = graph.get_operations()
  calls = sorted({op.type for op in ops if op.type in _CALL_OPS})
  if calls:
    raise ValueError(f'flops: the traced function still calls functions '
                     f'({", ".join(calls)}) whose FLOPs the profiler would '
                     'not count.')
  control_flow = sorted({op.name for op in ops
                         if op.type in _CONTROL_FLOW_OPS})
  if control_flow and not ignore_control_flow:
    raise ValueError(
        'flops: the traced function has control flow '
        f'({", ".join(control_flow)}) whose bodies the profiler does not '
        'count; pass a one-step function, or ignore_control_flow=True for a '
        'lower bound.')
  incomplete = []
  for op in ops:
    try:
      tf_ops.get_stats_for_node_def(graph, op.node_def, 'flops')
    except ValueError:
      # The profiler catches the same error and counts the op as 0.
      incomplete.append(op.name)
  if incomplete:
    raise ValueError(f'flops: ops with unknown shapes ({", ".join(incomplete)})'
                     '; pass example tensors with fully known shapes.')
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'  # Otherwise the profiler prints a table.
  profile = tf.compat.v1.profiler.profile(graph, options=options)
  return int(profile.total_float_ops)


def _check_real_sequence(name: str, values: Sequence[float]) -> None:
  for value in values:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
      raise validation.ArgumentTypeError(name, 'a sequence of numbers',
                                         values)


def rounds_to_target(rounds: Sequence[int], values: Sequence[float],
                     target: float) -> Optional[int]:
  """The first evaluated round whose value is >= `target`, or None.

  Args:
    rounds: The evaluated rounds, strictly increasing.
    values: The metric (e.g. mean personalized accuracy) at each of them.
    target: The value to reach. A NaN value never reaches it.

  Returns:
    The round number, or None if no value reaches the target.

  Raises:
    ValueError: If the lengths differ, the rounds are not strictly increasing
      or the target is not a finite number.
  """
  rounds, values = list(rounds), list(values)
  if len(rounds) != len(values):
    raise validation.ArgumentValueError(
        'values', f'as many values as rounds ({len(rounds)})',
        f'{len(values)} values')
  if any(later <= earlier for earlier, later in zip(rounds, rounds[1:])):
    raise validation.ArgumentValueError('rounds', 'strictly increasing',
                                        rounds)
  _check_real_sequence('values', values)
  if (isinstance(target, bool) or not isinstance(target, numbers.Real) or
      not math.isfinite(target)):
    raise validation.ArgumentValueError('target', 'a finite number', target)
  for round_num, value in zip(rounds, values):
    if value >= target:  # False for NaN.
      return round_num
  return None


def fairness(personalized: Sequence[float], local: Sequence[float]) -> float:
  """The fraction of clients whose personalized accuracy beats their local.

  Args:
    personalized: Each client's accuracy with the federated, personalized
      model.
    local: The same clients' accuracies with a model trained only on their
      own data, in the same order.

  Returns:
    The fraction of clients with personalized > local (strictly: ties count
    as not better), in [0, 1], among the clients whose two accuracies are
    both finite: a client with no test examples, or with non-finite data,
    has no accuracy to compare and is left out, as in
    `summaries.summarize`. NaN if no client has both.

  Raises:
    ValueError: If the sequences are empty or of different lengths.
  """
  personalized, local = list(personalized), list(local)
  if not personalized:
    raise validation.ArgumentValueError('personalized',
                                        'at least one client\'s accuracy',
                                        personalized)
  if len(local) != len(personalized):
    raise validation.ArgumentValueError(
        'local', f'one accuracy per client ({len(personalized)})',
        f'{len(local)} accuracies')
  _check_real_sequence('personalized', personalized)
  _check_real_sequence('local', local)
  compared = [(p, l) for p, l in zip(personalized, local)
              if math.isfinite(p) and math.isfinite(l)]
  if not compared:
    return math.nan
  return sum(1 for p, l in compared if p > l) / len(compared)
