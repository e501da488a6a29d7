"""Argument checks shared by every hyperparameter dataclass and builder.

Each check raises an `ArgumentError` naming the argument, what was expected
and what was given, so that a program can turn it into one line for its user
(the binaries print `error: --<flag> must be ..., got ...`). `ArgumentError`s
are also `ValueError`s or `TypeError`s, as Python code expects.
"""

import enum
import math
import numbers
from typing import Any, Mapping, Optional, Type, TypeVar

Params = TypeVar('Params')


class ArgumentError(Exception):
  """An invalid argument. `str(e)` names it; `describe` renames it.

  Attributes:
    argument: The argument's name, as the function or dataclass spells it.
    expected: What was expected, e.g. "a positive finite number".
    got: The value given.
  """

  def __init__(self, argument: str, expected: str, got: Any):
    self.argument = argument
    self.expected = expected
    self.got = got
    super().__init__(self.describe())

  def describe(self, name: Optional[str] = None) -> str:
    """The message, naming the argument `name` (default: its own name)."""
    return (f'{name or "`" + self.argument + "`"} must be {self.expected}, '
            f'got {self.got!r}.')


class ArgumentValueError(ArgumentError, ValueError):
  """An argument of the right type but out of range."""


class ArgumentTypeError(ArgumentError, TypeError):
  """An argument of the wrong type."""


def require_real(name: str, value: Any, *, positive: bool = False) -> None:
  """Checks that `value` is a finite real number, >= 0 (or > 0)."""
  expected = ('a positive finite number' if positive else
              'a non-negative finite number')
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ArgumentTypeError(name, expected, value)
  if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
    raise ArgumentValueError(name, expected, value)


def require_int(name: str, value: Any, *, minimum: int) -> None:
  """Checks that `value` is an int (not a bool) >= `minimum`."""
  expected = {0: 'a non-negative int', 1: 'a positive int'}.get(
      minimum, f'an int >= {minimum}')
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ArgumentTypeError(name, expected, value)
  if value < minimum:
    raise ArgumentValueError(name, expected, value)


def require_enum(name: str, value: Any, enum_type: Type[enum.Enum]) -> None:
  """Checks that `value` is a member of `enum_type`."""
  if not isinstance(value, enum_type):
    members = ', '.join(f'{enum_type.__name__}.{m.name}' for m in enum_type)
    raise ArgumentTypeError(name, f'one of {members}', value)


def require_choice(name: str, value: Any, choices) -> None:
  """Checks that `value` is one of `choices` (listed in the message)."""
  choices = list(choices)
  if value not in choices:
    raise ArgumentValueError(name, f'one of {", ".join(map(str, choices))}',
                             value)


def params_from_settings(params_type: Type[Params], settings: Mapping[str,
                                                                      str],
                         source: Any, owner: str) -> Params:
  """Builds `params_type` from attributes of `source`, renaming errors.

  Args:
    params_type: A dataclass that validates itself on construction.
    settings: Maps each field of `params_type` to the attribute of `source`
      (e.g. a run's setting) it takes its value from.
    source: The object holding the settings.
    owner: Who the dataclass belongs to, for messages (e.g. "per_fedavg").

  Returns:
    The validated dataclass.

  Raises:
    ArgumentError: Naming the setting (not the field) that was invalid, e.g.
      `alpha` for Per-FedAvg's `inner_learning_rate`.
  """
  try:
    return params_type(**{field: getattr(source, setting)
                          for field, setting in settings.items()})
  except ArgumentError as e:
    setting = settings.get(e.argument, e.argument)
    expected = e.expected
    if setting != e.argument:
      expected = f"{expected} ({owner}'s {e.argument})"
    raise type(e)(setting, expected, e.got) from e
