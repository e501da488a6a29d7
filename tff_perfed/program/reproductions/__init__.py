"""The papers' experiments that `binaries/reproduce.py` runs, by name.

Adding one is a module here defining a `reproduction.Experiment` (its grid,
scores, statistics and figures), its flagfile under `binaries/configs/`,
and one entry in `EXPERIMENTS`. `get` fails on an unknown name, listing the
known ones.
"""

from typing import Mapping, Sequence

from tff_perfed import validation
from tff_perfed.program import reproduction
from tff_perfed.program.reproductions import afml_shakespeare
from tff_perfed.program.reproductions import family
from tff_perfed.program.reproductions import per_fedavg_mnist

EXPERIMENTS: Mapping[str, reproduction.Experiment] = {
    e.name: e for e in (per_fedavg_mnist.EXPERIMENT,
                        afml_shakespeare.EXPERIMENT, family.MNIST,
                        family.SHAKESPEARE)
}


def names() -> Sequence[str]:
  """The experiments' names, in registration order."""
  return list(EXPERIMENTS)


def get(name: str) -> reproduction.Experiment:
  """The experiment `name`.

  Raises:
    tff_perfed.validation.ArgumentValueError: If there is none; the message
      lists the known names.
  """
  validation.require_choice('experiment', name, EXPERIMENTS)
  return EXPERIMENTS[name]
