"""The FedAvg baseline: TFF's `build_weighted_fed_avg`, reused as is.

McMahan et al. (2017), and eq. (1) of Fallah et al. (2020): clients take
`local_steps` SGD steps on batches of their data and the server averages
the models. This wrapper only adapts TFF's builder to tff_perfed's
conventions (a `model_fn` returning a `FunctionalModel`, plain SGD on the
client, eq. (10)'s uniform average by default) so that both algorithms are
built and compared the same way.
"""

from typing import Callable, Optional

import tensorflow_federated as tff

from tff_perfed import per_fedavg


def build_fedavg(
    model_fn: Callable[[], tff.learning.models.FunctionalModel],
    *,
    client_learning_rate: float,
    server_optimizer_fn: Optional[tff.learning.optimizers.Optimizer] = None,
    client_weighting: tff.learning.ClientWeighting = (
        tff.learning.ClientWeighting.UNIFORM),
    model_aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
    metrics_aggregator=None,
) -> tff.learning.templates.LearningProcess:
  """Builds FedAvg with client SGD, via `build_weighted_fed_avg`.

  `initialize` and `next` have the type signatures of TFF's FedAvg: `next`
  maps `<state@SERVER, {batches}@CLIENTS>` to `<state, metrics>@SERVER` and
  each client takes one SGD step per batch of its dataset.

  Args:
    model_fn: No-argument callable returning a `FunctionalModel`.
    client_learning_rate: Positive step size of the local SGD.
    server_optimizer_fn: Server optimizer; default SGD with learning rate 1.0.
    client_weighting: `UNIFORM` (default) or `NUM_EXAMPLES`.
    model_aggregator: Weighted aggregation factory; default mean.
    metrics_aggregator: Default `tff.learning.metrics.sum_then_finalize`.

  Returns:
    A `tff.learning.templates.LearningProcess`.

  Raises:
    TypeError, ValueError: On invalid arguments, naming the argument.
  """
  if not callable(model_fn):
    raise TypeError('`model_fn` must be a no-argument callable returning a '
                    f'tff.learning.models.FunctionalModel, got {model_fn!r}.')
  per_fedavg.require_number('client_learning_rate', client_learning_rate, positive=True)
  model = model_fn()
  if server_optimizer_fn is None:
    server_optimizer_fn = tff.learning.optimizers.build_sgdm(learning_rate=1.0)
  return tff.learning.algorithms.build_weighted_fed_avg(
      model,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=client_learning_rate),
      server_optimizer_fn=server_optimizer_fn,
      client_weighting=client_weighting,
      model_aggregator=model_aggregator,
      metrics_aggregator=metrics_aggregator)
