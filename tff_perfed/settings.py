"""The settings a hyperparameter dataclass declares, read from the dataclass.

An algorithm's (or the evaluation's) params dataclass is the one place its
settings are written: each field's name, type annotation and default, the
validation in its `__post_init__`, and its line in the docstring's
`Attributes:` section (Google style). `settings_of` reads them into
`Setting`s, from which the binaries generate flags (`--<namespace>.<field>`)
and runs save their settings, so that adding a hyperparameter is adding a
field.
"""

import dataclasses
import enum
import inspect
import re
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tff_perfed import validation

# The types a setting may have; each has an absl flag kind.
SCALAR_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Setting:
  """One field of a params dataclass, as a run setting.

  Attributes:
    name: The setting's full name, `<namespace>.<field>` (its flag's name).
    field: The dataclass field.
    type: bool, int, float, str or an `enum.Enum` subclass.
    default: The field's default.
    help: The field's line (and continuation lines) in the docstring.
  """
  name: str
  field: str
  type: type
  default: Any
  help: str

  def to_json(self, value: Any) -> Any:
    """`value` as a JSON value (an enum by its value)."""
    return value.value if isinstance(value, enum.Enum) else value

  def from_json(self, value: Any) -> Any:
    """The field's value from its JSON form (an enum from its value)."""
    if issubclass(self.type, enum.Enum) and not isinstance(value, self.type):
      try:
        return self.type(value)
      except ValueError as e:
        raise validation.ArgumentValueError(
            self.name, 'one of ' + ', '.join(
                str(m.value) for m in self.type), value) from e
    return value


def attribute_docs(cls: type) -> Dict[str, str]:
  """`{attribute: its text}` from a Google-style `Attributes:` section."""
  doc = inspect.getdoc(cls) or ''
  match = re.search(r'^Attributes:\n((?:[ \t]+.*\n?|\n)*)', doc, re.M)
  if not match:
    return {}
  docs, name = {}, None
  for line in match.group(1).splitlines():
    head = re.match(r'^ {2}(\w+)(?: \([^)]*\))?: ?(.*)$', line)
    if head:
      name = head.group(1)
      docs[name] = head.group(2).strip()
    elif name and line.startswith('    '):
      docs[name] += ' ' + line.strip()
  return docs


def settings_of(params_type: type, namespace: str, *,
                exclude: Sequence[str] = ()) -> List[Setting]:
  """The settings of `params_type`'s fields, except `exclude`, in order.

  Raises:
    TypeError: If a field has no default, no docstring line, or a type no
      flag can hold (a programming error in the dataclass, which the
      registry's tests catch).
  """
  hints = typing.get_type_hints(params_type)
  docs = attribute_docs(params_type)
  settings = []
  for f in dataclasses.fields(params_type):
    if f.name in exclude:
      continue
    kind = hints[f.name]
    if not (kind in SCALAR_TYPES or
            (isinstance(kind, type) and issubclass(kind, enum.Enum))):
      raise TypeError(f'{params_type.__name__}.{f.name}: a setting must be '
                      f'bool, int, float, str or an Enum, not {kind}.')
    if f.default is dataclasses.MISSING:
      raise TypeError(f'{params_type.__name__}.{f.name} has no default.')
    if not docs.get(f.name):
      raise TypeError(f'{params_type.__name__}.{f.name} is not described in '
                      'its Attributes: docstring section.')
    settings.append(Setting(name=f'{namespace}.{f.name}', field=f.name,
                            type=kind, default=f.default,
                            help=docs[f.name]))
  return settings


def build_params(params_type: type, namespace: str,
                 values: Mapping[str, Any],
                 provided: Optional[Mapping[str, Any]] = None) -> Any:
  """`params_type(**values, **provided)`, naming bad settings in full.

  Args:
    params_type: The dataclass; it validates itself.
    namespace: Prefixes field names in errors (`ditto.regularization`).
    values: `{field: value}`, the fields that are settings (others keep
      their defaults).
    provided: Fields whose values the run gives (e.g. the shared
      `local_steps`); their errors keep the field's plain name.

  Raises:
    tff_perfed.validation.ArgumentError: Naming `<namespace>.<field>`.
  """
  provided = dict(provided or {})
  try:
    return params_type(**values, **provided)
  except validation.ArgumentError as e:
    if e.argument in provided:
      raise
    raise type(e)(f'{namespace}.{e.argument}', e.expected, e.got) from e
