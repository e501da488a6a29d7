"""Any command line gives a `RunConfig` or one `error:` line and exit 2.

Random argv made of the binaries' flags with well-formed and malformed
values, unknown flags and positional arguments, parsed in this process as a
binary parses them (`parse_flags`, then `config_from_flags` and the
runtime flags under `bad_input_exits`). Nothing is trained.
"""

import contextlib
import io
import string

from absl import flags
from absl.testing import flagsaver
import hypothesis
from hypothesis import strategies as st

from tff_perfed.binaries import run_flags
from tff_perfed.binaries import runtime_flags
from tff_perfed.program import run_config

FLAGS = flags.FLAGS

# Not drawn: where the run writes and what it reads (files, not values).
_PATH_FLAGS = ('output_dir', 'data_dir')
RUN_FLAGS = sorted(
    flag.name for module in (run_flags, runtime_flags)
    for flag in FLAGS.get_flags_for_module(module.__name__)
    if flag.name not in _PATH_FLAGS)

# Printable text plus what breaks lines and parsers: newlines, '=', '-',
# quotes, non-ASCII.
_TEXT = st.text(
    alphabet=st.sampled_from(string.printable + 'é中\u2028\x00'), max_size=12)


def _well_formed_value(flag):
  if isinstance(flag, flags.EnumClassFlag):
    return st.sampled_from([e.lower() for e in flag.parser.member_names])
  if isinstance(flag, flags.EnumFlag):
    return st.sampled_from(flag.parser.enum_values)
  if isinstance(flag, flags.BooleanFlag):
    return st.sampled_from(['true', 'false', '1', '0'])
  kind = type(flag.default) if flag.default is not None else None
  if isinstance(flag.parser, flags.IntegerParser) or kind is int:
    return st.integers(-3, 300).map(str)
  if isinstance(flag.parser, flags.FloatParser) or kind is float:
    return st.one_of(
        st.floats(-1.0, 2.0).map(repr),
        st.sampled_from(['nan', 'inf', '-inf', '1e400', '0', '1e-12']))
  if isinstance(flag, flags.MultiFlag) or isinstance(
      flag.parser, flags.ListParser):
    return st.lists(_TEXT.filter(lambda t: ',' not in t),
                    max_size=3).map(','.join)
  return _TEXT


@st.composite
def flag_argument(draw, may_lack_value=True):
  """One `--name=value` of a known flag, its value well-formed or not.

  Args:
    draw: Hypothesis's.
    may_lack_value: Whether a flag may come without `=value` (absl then
      takes the next argument as its value).
  """
  name = draw(st.sampled_from(RUN_FLAGS))
  flag = FLAGS[name]
  if isinstance(flag, flags.BooleanFlag) and draw(st.booleans()):
    return draw(st.sampled_from([f'--{name}', f'--no{name}']))
  value = draw(st.one_of(_well_formed_value(flag), _TEXT))
  if may_lack_value and draw(st.integers(0, 9)) == 0:
    return f'--{name}'
  return f'--{name}={value}'


ARGUMENT = st.one_of(
    flag_argument(), flag_argument(), flag_argument(),
    _TEXT.map(lambda t: f'--no_such_flag_{t}=1'),
    _TEXT.filter(lambda t: not t.startswith('-')),  # A positional argument.
)


def parse_like_a_binary(argv):
  """`(RunConfig or None, exit code or None, stderr)` for `argv`."""
  stderr = io.StringIO()
  with flagsaver.flagsaver(), contextlib.redirect_stderr(stderr):
    try:
      run_flags.parse_flags(['train', *argv])
      with run_flags.bad_input_exits():
        config = run_flags.config_from_flags()
        runtime_flags.runtime_from_flags()
    except SystemExit as e:
      return None, e.code, stderr.getvalue()
  return config, None, stderr.getvalue()


@hypothesis.given(st.lists(ARGUMENT, max_size=6))
def test_any_command_line_gives_a_config_or_one_error_line(argv):
  config, code, stderr = parse_like_a_binary(argv)
  if config is not None:
    assert isinstance(config, run_config.RunConfig)
    assert not stderr
  else:
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), stderr


@hypothesis.given(
    st.lists(flag_argument(may_lack_value=False), max_size=6),
    st.one_of(_TEXT.map(lambda t: f'--no_such_flag_{t}=1'),
              _TEXT.filter(lambda t: not t.startswith('-'))))
def test_an_unknown_flag_or_positional_argument_is_always_refused(
    argv, stray):
  config, code, stderr = parse_like_a_binary([*argv, stray])
  assert config is None and code == 2
  lines = stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), stderr


def test_the_default_command_line_gives_the_default_config():
  config, code, stderr = parse_like_a_binary([])
  assert code is None and not stderr
  assert config.rounds == FLAGS['rounds'].default
  assert config.algorithm == FLAGS['algorithm'].default
