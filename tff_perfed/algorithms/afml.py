"""AFML (adaptive federated meta-learning) as a `LearningProcess`.

The paper: ../shared/seeds/002_9216229f1dade386.txt, Algorithm 1 and
eq. (4); the math is in `tff_perfed.algorithms.afml_objective`. Each round
(Algorithm 1, lines 2-10):

1. Distributor: the server draws eps_t ~ N(0, I) from a seeded stream
   (`noise_seed`, round t), forms theta_t = theta_u + softplus(rho) * eps_t
   (line 4) and broadcasts (theta_hat, theta_t) and a 64-bit round key
   (line 5).
2. Client work: each client reads up to `local_steps` (support, query) batch
   pairs, computes at (theta_hat, theta_t) the head gradient g_c and the
   gradient of L_query + alpha (L_ENC + L_CONS) with respect to theta
   (`afml_client_gradients`), averages them over its pairs and uploads them.
3. Aggregator: a weighted mean (`tff.aggregators.MeanFactory`).
4. Finalizer: turns the mean gradient at theta_t into the gradient with
   respect to tau = (theta_u, rho) by the reparameterization's chain rule,
   adds beta * grad L_CMPX (which needs no data, so it is computed here, as
   section 3.5 suggests), and applies `head_optimizer` with eta_1 to
   theta_hat (line 9) and `encoder_optimizer` with eta_2 to tau (line 10).

Broadcasting theta_t instead of tau plus a seed (the alternative): the paper
distributes theta_t (line 5), and it halves the encoder's share of the
traffic both ways. With E encoder and H head parameters in float32, a client
receives 4 (H + E) + 8 bytes and sends 4 (H + E) bytes plus its metrics;
broadcasting tau and a seed would cost 4 (H + 2E) + 8 down and 4 (H + 2E)
up, since clients would return gradients for both theta_u and rho. The mean
over clients of the per-client g_g equals the server's chain rule on the
mean gradient at theta_t (the rule is linear), so both routes compute the
same update; `tests/algorithms/afml_test.py` checks a round against
`afml_gradients` client by client.

Other choices the paper leaves open (see also `afml_objective`):
* Multiple local steps are not described (Algorithm 1 computes one pair of
  gradients per client); here a client averages its gradients over
  `local_steps` (support, query) pairs, all at the broadcast weights, so a
  round reads as much data as `local_steps` FedAvg steps.
* Each client's representation noise (z) comes from a stateless stream keyed
  by the round key, a fingerprint of its first support batch and the step,
  so runs are reproducible and clients draw different noise.
* sigma starts at `initial_encoder_scale` for every encoder weight;
  the encoder's mean starts at the model's initialization.
* The state's model weights are `ModelWeights(trainable=theta_hat,
  non_trainable=theta_u + rho)`: "trainable" is what personalization adapts
  (the head, like AFML's inner loop), and
  `tff_perfed.models.split.evaluation_model` evaluates these weights as is,
  with the encoder at its mean.
"""

import collections
import dataclasses
from typing import Callable, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_perfed import validation
from tff_perfed.algorithms import afml_objective
from tff_perfed.algorithms import learning_utils
from tff_perfed.models import split

ClientWeighting = tff.learning.ClientWeighting
OptimizerFn = Callable[..., tff.learning.optimizers.Optimizer]

# Above this, sigma is comparable to typical initial weights and the
# sampled encoder is mostly noise.
_LARGEST_SENSIBLE_INITIAL_SCALE = 0.1


@dataclasses.dataclass(frozen=True)
class AfmlParams:
  """AFML's hyperparameters, validated on construction.

  Attributes:
    inner_learning_rate: eta >= 0, the head's inner step (Algorithm 1,
      line 15). With 0 the query loss is the global head's and AFML trains
      a regularized FedSGD model.
    alpha: >= 0, the weight of L_ENC and L_CONS in eq. (4); 0 switches both
      off.
    beta: >= 0, the weight of L_CMPX in eq. (4); 0 switches it off.
    head_learning_rate: eta_1 > 0, the server step on the head (line 9).
    encoder_learning_rate: eta_2 > 0, the server step on tau (line 10).
    local_steps: >= 1 (support, query) pairs a client averages over.
    initial_encoder_scale: sigma > 0 of every encoder weight at the start.
    sample_representation: Sample z = z_mean + exp(z_log_scale) * noise in
      training (the reparameterization of eq. 2's first term); False uses
      z_mean.
    client_weighting: `UNIFORM` (Algorithm 1's 1/K) or `NUM_EXAMPLES`.
    noise_seed: >= 0, seeds the encoder and representation noise.
  """
  inner_learning_rate: float = 0.02
  alpha: float = 1e-3
  beta: float = 1e-6
  head_learning_rate: float = 0.1
  encoder_learning_rate: float = 0.1
  local_steps: int = 1
  initial_encoder_scale: float = 1e-3
  sample_representation: bool = True
  client_weighting: ClientWeighting = ClientWeighting.UNIFORM
  noise_seed: int = 0

  def __post_init__(self):
    validation.require_real('inner_learning_rate', self.inner_learning_rate)
    validation.require_real('alpha', self.alpha)
    validation.require_real('beta', self.beta)
    validation.require_real('head_learning_rate', self.head_learning_rate,
                            positive=True)
    validation.require_real('encoder_learning_rate',
                            self.encoder_learning_rate, positive=True)
    validation.require_int('local_steps', self.local_steps, minimum=1)
    validation.require_real('initial_encoder_scale',
                            self.initial_encoder_scale, positive=True)
    if not isinstance(self.sample_representation, bool):
      raise validation.ArgumentTypeError('sample_representation', 'a bool',
                                         self.sample_representation)
    validation.require_enum('client_weighting', self.client_weighting,
                            ClientWeighting)
    validation.require_int('noise_seed', self.noise_seed, minimum=0)

  def degenerate_settings(self) -> List[str]:
    """Legal settings that probably do not do what was meant."""
    warnings = []
    if self.inner_learning_rate == 0:
      warnings.append(
          'inner_learning_rate=0: no inner step; the head is trained on the '
          'query loss of the global model (a regularized FedSGD).')
    if self.initial_encoder_scale > _LARGEST_SENSIBLE_INITIAL_SCALE:
      warnings.append(
          f'initial_encoder_scale={self.initial_encoder_scale:g} exceeds '
          f'{_LARGEST_SENSIBLE_INITIAL_SCALE:g}: the sampled encoder weights '
          'start mostly as noise.')
    return warnings


def initial_rho(scale: float, like: np.ndarray) -> np.ndarray:
  """rho with softplus(rho) = scale, shaped like `like`."""
  return np.full(np.shape(like), np.log(np.expm1(scale)), np.float32)


def fold_in(key: tf.Tensor, data) -> tf.Tensor:
  """A new int64[2] stateless key from `key` and an integer."""
  return tf.cast(
      tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64)),
      tf.int64)


def round_key(noise_seed, round_num) -> tf.Tensor:
  """The round's int64[2] stateless key: all of round t's noise comes from it."""
  seed = tf.stack([tf.cast(noise_seed, tf.int64), tf.constant(0, tf.int64)])
  return fold_in(seed, round_num)


def encoder_noise(round_key: tf.Tensor, encoder_mean) -> tuple:
  """eps_t ~ N(0, I) shaped like theta_u, from the round key alone."""
  return tuple(
      tf.random.stateless_normal(
          tf.shape(m), fold_in(round_key, i), dtype=m.dtype) for i, m in enumerate(encoder_mean))


def _split_encoder(non_trainable, num_encoder: int):
  non_trainable = tuple(non_trainable)
  return non_trainable[:num_encoder], non_trainable[num_encoder:]


def build_afml_client_update(model: split.SplitModel, params: AfmlParams):
  """Returns the client's `tf.function(head, theta, round_key, dataset)`.

  The dataset's batches alternate support, query, support, ... Up to
  `params.local_steps` pairs are read; the function returns
  `(ClientResult(update=OrderedDict(head=g_c, encoder=g_theta)), losses,
  is_non_finite)`, gradients and losses averaged over the pairs read.
  """
  encoder = model.encoder
  head_loss_fn = _head_loss_fn(model.head)

  @tf.function
  def client_update(head_weights, encoder_weights, round_key, dataset):
    head_weights = tuple(head_weights)
    encoder_weights = tuple(encoder_weights)
    head_sum = tuple(tf.zeros_like(w) for w in head_weights)
    encoder_sum = tuple(tf.zeros_like(w) for w in encoder_weights)
    loss_sums = collections.OrderedDict(
        (name, tf.constant(0.0)) for name in ('query', 'enc', 'cons'))
    num_pairs = tf.constant(0.0)
    num_examples = tf.constant(0, tf.int64)
    client_key = round_key
    iterator = iter(dataset)
    for step in tf.range(params.local_steps):
      support, query = (iterator.get_next_as_optional() for _ in range(2))
      if not (support.has_value() and query.has_value()):
        break
      support, query = support.get_value(), query.get_value()
      # tf.equal, not ==: TFF traces in a graph, where == compares identity.
      if tf.equal(step, 0):
        fingerprint = tf.bitcast(
            tf.fingerprint(tf.reshape(support['x'], [1, -1]))[0], tf.int64)
        client_key = fold_in(round_key, fingerprint)
      step_key = fold_in(client_key, step)
      noise = [None, None]
      if params.sample_representation:
        noise = [
            lambda shape, k=k: tf.random.stateless_normal(
                shape, fold_in(step_key, k))
            for k in range(2)
        ]
      head_gradient, encoder_gradient, losses = (
          afml_objective.afml_client_gradients(
              encoder.encode,
              head_loss_fn,
              encoder_weights,
              head_weights,
              support,
              query,
              inner_learning_rate=params.inner_learning_rate,
              alpha=params.alpha,
              support_z_noise=noise[0],
              query_z_noise=noise[1]))
      head_sum = tuple(a + g for a, g in zip(head_sum, head_gradient))
      encoder_sum = tuple(a + g for a, g in zip(encoder_sum, encoder_gradient))
      loss_sums = collections.OrderedDict(
          (name, value + losses[name]) for name, value in loss_sums.items())
      num_pairs += 1.0
      for batch in (support, query):
        num_examples += tf.cast(tf.shape(batch['y'])[0], tf.int64)

    pairs = tf.maximum(num_pairs, 1.0)
    update = tuple(g / pairs for g in head_sum + encoder_sum)
    update, is_non_finite = learning_utils.zero_if_non_finite(update)
    if params.client_weighting is ClientWeighting.NUM_EXAMPLES:
      weight = tf.cast(num_examples, tf.float32)
    else:
      weight = tf.constant(1.0)
    # No pairs read, or a non-finite result: the client must not count.
    weight = tf.where((is_non_finite > 0) | tf.equal(num_pairs, 0.0), 0.0,
                      weight)
    losses = collections.OrderedDict(
        (name, tf.where(weight > 0, value / pairs, 0.0))
        for name, value in loss_sums.items())
    num_head = len(head_weights)
    result = tff.learning.templates.ClientResult(
        update=collections.OrderedDict(head=update[:num_head],
                                       encoder=update[num_head:]),
        update_weight=weight)
    return result, losses, weight, is_non_finite

  return client_update


def local_step(model: split.SplitModel, params: AfmlParams):
  """`(step, weights)`: one client pair, `step((head, theta), (D, D'))`.

  The body of the client loop (`afml_client_gradients`, z at its mean) as
  pure TF, for `tff_perfed.evaluation.costs.flops`.
  """
  head_loss_fn = _head_loss_fn(model.head)

  def step(weights, batches):
    head_weights, encoder_weights = weights
    support, query = batches
    return afml_objective.afml_client_gradients(
        model.encoder.encode, head_loss_fn, encoder_weights, head_weights,
        support, query, inner_learning_rate=params.inner_learning_rate,
        alpha=params.alpha)

  return step, (tuple(model.head.initial_weights[0]),
                tuple(model.encoder.initial_weights))


def _head_loss_fn(head: tff.learning.models.FunctionalModel):
  def head_loss_fn(head_weights, z, y):
    output = head.predict_on_batch((tuple(head_weights), ()), z,
                                   training=True)
    return head.loss(output, y)
  return head_loss_fn


def build_afml_distributor(model: split.SplitModel, weights_type,
                           params: AfmlParams
                          ) -> tff.learning.templates.DistributionProcess:
  """Samples theta_t on the server and broadcasts (theta_hat, theta_t, key).

  State: `<noise_seed=int64, round_num=int64>@SERVER`; `next` has type
  `(<state@SERVER, ModelWeights@SERVER> -> <state@SERVER,
  <head, encoder, round_key=int64[2]>@CLIENTS, <>@SERVER>)`.
  """
  num_encoder = len(model.encoder.initial_weights)

  @tff.tensorflow.computation
  def initial_state():
    return collections.OrderedDict(
        noise_seed=tf.constant(params.noise_seed, tf.int64),
        round_num=tf.constant(0, tf.int64))

  state_type = initial_state.type_signature.result

  @tff.tensorflow.computation(state_type, weights_type)
  def sample(state, weights):
    encoder_mean, encoder_rho = _split_encoder(weights.non_trainable,
                                               num_encoder)
    key = round_key(state['noise_seed'], state['round_num'])
    theta = afml_objective.sample_encoder_weights(
        encoder_mean, encoder_rho, encoder_noise(key, encoder_mean))
    broadcast = collections.OrderedDict(
        head=tuple(weights.trainable), encoder=theta, round_key=key)
    new_state = collections.OrderedDict(
        noise_seed=state['noise_seed'], round_num=state['round_num'] + 1)
    return new_state, broadcast

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(initial_state, tff.SERVER)

  @tff.federated_computation(tff.FederatedType(state_type, tff.SERVER),
                             tff.FederatedType(weights_type, tff.SERVER))
  def next_fn(state, weights):
    new_state, broadcast = tff.federated_map(sample, (state, weights))
    return tff.templates.MeasuredProcessOutput(
        new_state, tff.federated_broadcast(broadcast),
        tff.federated_value((), tff.SERVER))

  return tff.learning.templates.DistributionProcess(init_fn, next_fn)


def build_afml_client_work(model: split.SplitModel, params: AfmlParams,
                           broadcast_type
                          ) -> tff.learning.templates.ClientWorkProcess:
  """The AFML `ClientWorkProcess` (stateless).

  `broadcast_type` is what the distributor sends each client (the member
  type of its `next`'s result).

  `next` has type `(<()@SERVER, <head, encoder, round_key>@CLIENTS,
  {dataset}@CLIENTS> -> <state=()@SERVER, result=ClientResult@CLIENTS,
  measurements=<train=<loss, encoding_loss, consistency_loss>,
  num_non_finite_updates=int32>@SERVER>)`; `train/loss` is L_query, the
  loss of the adapted head on the query batches.
  """
  data_type = tff.SequenceType(
      tff.types.tensorflow_to_type(
          collections.OrderedDict(x=model.encoder.input_spec,
                                  y=model.head.input_spec['y'])))
  client_update = build_afml_client_update(model, params)

  @tff.tensorflow.computation(broadcast_type, data_type)
  def client_update_computation(broadcast, dataset):
    return client_update(broadcast['head'], broadcast['encoder'],
                         broadcast['round_key'], dataset)

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.federated_computation(
      tff.FederatedType((), tff.SERVER),
      tff.FederatedType(broadcast_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, broadcast, client_data):
    client_result, losses, weight, is_non_finite = tff.federated_map(
        client_update_computation, (broadcast, client_data))
    mean_losses = tff.federated_mean(losses, weight)
    train = tff.federated_zip(
        collections.OrderedDict(
            loss=mean_losses['query'],
            encoding_loss=mean_losses['enc'],
            consistency_loss=mean_losses['cons']))
    measurements = tff.federated_zip(
        collections.OrderedDict(
            train=train,
            num_non_finite_updates=tff.federated_sum(is_non_finite)))
    return tff.templates.MeasuredProcessOutput(state, client_result,
                                               measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_afml_finalizer(model: split.SplitModel, weights_type, update_type,
                         params: AfmlParams, *,
                         head_optimizer: tff.learning.optimizers.Optimizer,
                         encoder_optimizer: tff.learning.optimizers.Optimizer
                        ) -> tff.learning.templates.FinalizerProcess:
  """Applies eta_1 to the head and eta_2 to tau (Algorithm 1, lines 9-10).

  The update (of `update_type`, the client work's) is the clients' mean
  `<head=g_c, encoder=g_theta>`; the
  finalizer redraws this round's eps_t from its own copy of the noise stream
  (the same seed and round as the distributor's) for the chain rule.
  Measurements: `complexity_loss` (L_CMPX before the step),
  `encoder_scale` (mean sigma) and `update_non_finite` (1 if the update was
  rejected as non-finite, in which case nothing changes).
  """
  num_encoder = len(model.encoder.initial_weights)
  head_specs = tuple(
      tf.TensorSpec(np.shape(w), tf.float32)
      for w in model.head.initial_weights[0])
  encoder_specs = tuple(
      tf.TensorSpec(np.shape(w), tf.float32)
      for w in model.encoder.initial_weights)

  @tff.tensorflow.computation
  def initial_state():
    return collections.OrderedDict(
        head_optimizer=head_optimizer.initialize(head_specs),
        encoder_optimizer=encoder_optimizer.initialize(
            (encoder_specs, encoder_specs)),
        noise_seed=tf.constant(params.noise_seed, tf.int64),
        round_num=tf.constant(0, tf.int64))

  state_type = initial_state.type_signature.result

  @tff.tensorflow.computation(state_type, weights_type, update_type)
  def apply(state, weights, update):
    encoder_mean, encoder_rho = _split_encoder(weights.non_trainable,
                                               num_encoder)
    key = round_key(state['noise_seed'], state['round_num'])
    mean_gradient, rho_gradient, complexity = (
        afml_objective.encoder_gradients_from_sampled(
            tuple(update['encoder']), encoder_mean, encoder_rho,
            encoder_noise(key, encoder_mean), beta=params.beta))
    head_state, new_head = head_optimizer.next(
        state['head_optimizer'], tuple(weights.trainable),
        tuple(update['head']))
    encoder_state, (new_mean, new_rho) = encoder_optimizer.next(
        state['encoder_optimizer'], (encoder_mean, encoder_rho),
        (mean_gradient, rho_gradient))
    candidate = tuple(new_head) + tuple(new_mean) + tuple(new_rho)
    finite = tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(w)) for w in candidate])
    # A non-finite step is rejected: weights and optimizer states stay.
    keep = lambda new, old: tf.nest.map_structure(
        lambda n, o: tf.where(finite, n, o), new, old)
    new_weights = tff.learning.models.ModelWeights(
        trainable=keep(tuple(new_head), tuple(weights.trainable)),
        non_trainable=keep(tuple(new_mean) + tuple(new_rho),
                           tuple(weights.non_trainable)))
    new_state = collections.OrderedDict(
        head_optimizer=keep(head_state, state['head_optimizer']),
        encoder_optimizer=keep(encoder_state, state['encoder_optimizer']),
        noise_seed=state['noise_seed'],
        round_num=state['round_num'] + 1)
    scales = afml_objective.encoder_scale(encoder_rho)
    measurements = collections.OrderedDict(
        complexity_loss=complexity,
        encoder_scale=tf.add_n([tf.reduce_sum(s) for s in scales]) /
        float(sum(int(np.prod(s.shape)) for s in encoder_specs)),
        update_non_finite=tf.cast(tf.logical_not(finite), tf.int32))
    return new_state, new_weights, measurements

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(initial_state, tff.SERVER)

  @tff.federated_computation(
      tff.FederatedType(state_type, tff.SERVER),
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(update_type, tff.SERVER))
  def next_fn(state, weights, update):
    new_state, new_weights, measurements = tff.federated_map(
        apply, (state, weights, update))
    return tff.templates.MeasuredProcessOutput(new_state, new_weights,
                                               measurements)

  return tff.learning.templates.FinalizerProcess(init_fn, next_fn)


def _check_split_model(encoder_fn, head_fn) -> split.SplitModel:
  if not callable(encoder_fn):
    raise validation.ArgumentTypeError(
        'encoder_fn', 'a no-argument callable returning a '
        'tff_perfed.models.GaussianEncoder', encoder_fn)
  if not callable(head_fn):
    raise validation.ArgumentTypeError(
        'head_fn', 'a no-argument callable returning a '
        'tff.learning.models.FunctionalModel', head_fn)
  encoder, head = encoder_fn(), head_fn()
  if not isinstance(encoder, split.GaussianEncoder):
    raise validation.ArgumentTypeError(
        'encoder_fn', 'a callable returning a '
        'tff_perfed.models.GaussianEncoder',
        f'a callable returning {type(encoder).__name__}')
  if not isinstance(head, tff.learning.models.FunctionalModel):
    raise validation.ArgumentTypeError(
        'head_fn', 'a callable returning a '
        'tff.learning.models.FunctionalModel',
        f'a callable returning {type(head).__name__}')
  if head.initial_weights[1]:
    raise validation.ArgumentValueError(
        'head_fn', 'a head without non-trainable weights',
        f'{len(head.initial_weights[1])} non-trainable weights')
  return split.SplitModel(encoder, head)


def _build_optimizer(name: str, optimizer_fn: OptimizerFn,
                     learning_rate: float
                    ) -> tff.learning.optimizers.Optimizer:
  if not callable(optimizer_fn):
    raise validation.ArgumentTypeError(
        name, 'a callable taking learning_rate= and returning a '
        'tff.learning.optimizers.Optimizer', optimizer_fn)
  optimizer = optimizer_fn(learning_rate=learning_rate)
  if not isinstance(optimizer, tff.learning.optimizers.Optimizer):
    raise validation.ArgumentTypeError(
        name, 'a callable returning a tff.learning.optimizers.Optimizer',
        f'a callable returning {type(optimizer).__name__}')
  return optimizer


def build_afml(
    encoder_fn: Callable[[], split.GaussianEncoder],
    head_fn: Callable[[], tff.learning.models.FunctionalModel],
    *,
    inner_learning_rate: float,
    alpha: float,
    beta: float,
    head_learning_rate: float,
    encoder_learning_rate: float,
    local_steps: int = 1,
    initial_encoder_scale: float = 1e-3,
    sample_representation: bool = True,
    client_weighting: ClientWeighting = ClientWeighting.UNIFORM,
    noise_seed: int = 0,
    head_optimizer_fn: OptimizerFn = tff.learning.optimizers.build_sgdm,
    encoder_optimizer_fn: OptimizerFn = tff.learning.optimizers.build_sgdm,
    model_aggregator: Optional[
        tff.aggregators.WeightedAggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """Builds the AFML learning process (Algorithm 1 of the AFML paper).

  The returned process has
    * `initialize`: `( -> LearningAlgorithmState@SERVER)` whose
      `global_model_weights` are `ModelWeights(trainable=theta_hat,
      non_trainable=theta_u + rho)` (evaluate them with
      `tff_perfed.models.split.evaluation_model`);
    * `next`: `(<LearningAlgorithmState@SERVER, {dataset}@CLIENTS> ->
      <state=LearningAlgorithmState@SERVER, metrics=<distributor=<>,
      client_work=<train=<loss, encoding_loss, consistency_loss>,
      num_non_finite_updates=int32>, aggregator=..., finalizer=
      <complexity_loss, encoder_scale, update_non_finite>>@SERVER>)`, where
      each client's dataset yields batches `OrderedDict(x, y)` of the
      encoder's input and the head's labels, read as support, query,
      support, query, ...;
    * `get_model_weights(state)`: the weights above.

  Args:
    encoder_fn: No-argument callable returning the encoder f, a
      `tff_perfed.models.GaussianEncoder`; called once, at build time.
    head_fn: No-argument callable returning the head h, a
      `tff.learning.models.FunctionalModel` on `OrderedDict(x=z, y=labels)`
      without non-trainable weights (e.g. `split.head_model`).
    inner_learning_rate: eta >= 0, the head's inner step.
    alpha: >= 0, the weight of L_ENC and L_CONS (eq. 4).
    beta: >= 0, the weight of L_CMPX (eq. 4).
    head_learning_rate: eta_1 > 0, passed to `head_optimizer_fn`.
    encoder_learning_rate: eta_2 > 0, passed to `encoder_optimizer_fn`.
    local_steps: >= 1 (support, query) pairs a client averages over.
    initial_encoder_scale: sigma > 0 of every encoder weight at the start.
    sample_representation: Sample z in training (False: z = z_mean).
    client_weighting: `UNIFORM` (the paper's 1/K) or `NUM_EXAMPLES`.
    noise_seed: Seeds the encoder and representation noise; the noise is a
      function of the seed and the round, so a resumed run draws the same.
    head_optimizer_fn: `fn(learning_rate=eta_1)` returning the
      `tff.learning.optimizers.Optimizer` applied to the head; default SGD
      (Algorithm 1, line 9).
    encoder_optimizer_fn: The same for tau (line 10).
    model_aggregator: A `tff.aggregators.WeightedAggregationFactory` for the
      gradients; default `tff.aggregators.MeanFactory()`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    tff_perfed.validation.ArgumentError: A `TypeError` or `ValueError`
      naming the invalid argument, what was expected and what was given.
  """
  params = AfmlParams(
      inner_learning_rate=inner_learning_rate,
      alpha=alpha,
      beta=beta,
      head_learning_rate=head_learning_rate,
      encoder_learning_rate=encoder_learning_rate,
      local_steps=local_steps,
      initial_encoder_scale=initial_encoder_scale,
      sample_representation=sample_representation,
      client_weighting=client_weighting,
      noise_seed=noise_seed)
  for warning in params.degenerate_settings():
    logging.warning('build_afml: %s', warning)
  head_optimizer = _build_optimizer('head_optimizer_fn', head_optimizer_fn,
                                    head_learning_rate)
  encoder_optimizer = _build_optimizer('encoder_optimizer_fn',
                                       encoder_optimizer_fn,
                                       encoder_learning_rate)
  model_aggregator = learning_utils.default_model_aggregator(model_aggregator)
  model = _check_split_model(encoder_fn, head_fn)

  head_weights, _ = model.head.initial_weights
  encoder_mean = model.encoder.initial_weights
  rho = tuple(initial_rho(initial_encoder_scale, w) for w in encoder_mean)

  @tff.tensorflow.computation
  def initial_model_weights():
    as_tensors = lambda ws: tuple(
        tf.convert_to_tensor(w, tf.float32) for w in ws)
    return tff.learning.models.ModelWeights(
        trainable=as_tensors(head_weights),
        non_trainable=as_tensors(tuple(encoder_mean) + rho))

  weights_type = initial_model_weights.type_signature.result
  distributor = build_afml_distributor(model, weights_type, params)
  client_work = build_afml_client_work(
      model, params, distributor.next.type_signature.result.result.member)
  update_type = client_work.next.type_signature.result.result.member.update
  aggregator = model_aggregator.create(update_type,
                                       tff.TensorType(np.float32))
  finalizer = build_afml_finalizer(
      model, weights_type, update_type, params, head_optimizer=head_optimizer,
      encoder_optimizer=encoder_optimizer)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights, distributor, client_work, aggregator, finalizer)
