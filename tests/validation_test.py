"""Argument checks: messages name the argument, expectation and value."""

import enum

import pytest

from tff_perfed import validation


class Color(enum.Enum):
  RED = 'red'


@pytest.mark.parametrize('value,error', [
    (-1.0, validation.ArgumentValueError),
    (float('inf'), validation.ArgumentValueError),
    (float('nan'), validation.ArgumentValueError),
    ('0.1', validation.ArgumentTypeError),
    (True, validation.ArgumentTypeError),
])
def test_real_checks_range_finiteness_and_type(value, error):
  with pytest.raises(error) as info:
    validation.require_real('rate', value)
  assert str(info.value) == (
      f'`rate` must be a non-negative finite number, got {value!r}.')


def test_errors_are_value_or_type_errors_and_can_be_renamed():
  with pytest.raises(ValueError) as info:
    validation.require_int('steps', 0, minimum=1)
  assert info.value.describe('--steps') == (
      '--steps must be a positive int, got 0.')
  with pytest.raises(TypeError, match='Color.RED'):
    validation.require_enum('color', 'red', Color)


def test_choices_are_listed():
  with pytest.raises(validation.ArgumentValueError,
                     match='one of a, b, got .c.'):
    validation.require_choice('name', 'c', ['a', 'b'])
