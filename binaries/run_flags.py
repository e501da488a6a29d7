"""The flags of one training run, declared once for every binary.

The shared flags are the fields of `tff_perfed.program.RunConfig`, with the
same names. Each algorithm's flags, `--<algorithm>.<field>`, are generated
from its params dataclass (`registry.Algorithm.settings`: the field's type,
default and docstring line), so a new algorithm or hyperparameter needs no
flag code; choices (`--algorithm`, `--dataset`, enum fields) come from the
registries. `config_from_flags` gathers this module's flags with absl's own
registry (`FlagValues.get_flags_for_module`) into a `RunConfig`, which
validates them.

The flags of tff_perfed 0.1 that the algorithms now own (`--alpha`,
`--beta`, `--hessian_mode`, `--afml_alpha`, ...) still work: each sets the
flags `RunConfig.LEGACY_SETTINGS` gives it, with a warning naming them.

`main_wrapper` gives a binary its contract for bad input: one `error:` line
on stderr and exit status 2, never a traceback, and nothing in
`--output_dir` touched; a fault that stops a run (`tff_perfed.errors.
RunError`) is one `error:` line and its `exit_code`. `run` is a binary's
`app.run`: it also ends the process without the interpreter's teardown
(`binaries.exits`).
"""

import contextlib
import enum
import os
import sys
import traceback
from typing import Callable, List

# Binaries are programs: silence TF's C++ start-up chatter (CUDA plugin
# registration, CPU-feature notes) unless the user asks for it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tff_perfed.binaries import exits
from tff_perfed.binaries import flag_parsing
from tff_perfed.binaries import runtime_flags
from tff_perfed.data_utils import federated_dataset
from tff_perfed.data_utils import tasks
from tff_perfed import errors
from tff_perfed import runtime
from tff_perfed import settings as settings_lib
from tff_perfed import validation
from tff_perfed.algorithms import meta_gradients
from tff_perfed.algorithms import registry
from tff_perfed.program import experiment
from tff_perfed.program import run_config
from tff_perfed.runtime import remote
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    'algorithm', 'per_fedavg', registry.names(), 'The algorithm: ' + '; '.join(
        f'{a.name}: {a.summary}' for a in registry.ALGORITHMS.values()))
flags.DEFINE_string(
    'dataset', 'digits', 'The dataset and its model: ' +
    '; '.join(f'{t.name}: {t.summary}' for t in tasks.TASKS.values()) +
    '; tfds:NAME: a TFDS image or text classification dataset prepared in '
    '--data_dir (default: TFDS\'s data directory), e.g. tfds:mnist; its '
    'model is chosen from its features.')
flags.DEFINE_string(
    'data_dir', None, 'Directory with the dataset\'s file: TFF\'s SQLite '
    'files (emnist_all.sqlite, shakespeare.sqlite, cifar100.sqlite; default: '
    'TFF\'s cache ~/.tff, where load_data() leaves them), Keras\'s mnist.npz '
    '(default: Keras\'s cache), or where shakespeare_plays is built '
    '(default: $XDG_CACHE_HOME/tff_perfed or ~/.cache/tff_perfed), or a '
    'TFDS data directory for tfds:NAME (default: $TFDS_DATA_DIR or '
    '~/tensorflow_datasets). Not '
    'needed for digits, mnist_5k or synthetic data.')
flags.DEFINE_bool('use_synthetic_data', False,
                  'Random data of the dataset\'s structure.')
flags.DEFINE_integer('rounds', 100, 'Total training rounds (a rerun with more '
                     'rounds resumes).')
flags.DEFINE_integer('clients_per_round', 10, 'Clients sampled per round.')
flags.DEFINE_integer('local_steps', 4, 'tau: local steps per round, of '
                     'every algorithm.')
flags.DEFINE_float(
    'personalization_learning_rate', 0.02, 'The SGD step of the '
    'personalized evaluation\'s adaptation, for every algorithm (FedAvg-FT\'s '
    'fine-tuning step).')
flags.DEFINE_integer('batch_size', 10, 'Size of D (every FedAvg batch).')
flags.DEFINE_integer('batch_size_prime', None,
                     "Size of D'; default --batch_size.")
flags.DEFINE_integer('batch_size_double_prime', None,
                     "Size of D''; default --batch_size.")
flags.DEFINE_integer('personalization_steps', 5,
                     'K: evaluate after k = 0..K adaptation steps.')
flags.DEFINE_integer(
    'adaptation_draws', 1, 'R: each evaluated client adapts R times on '
    'independently shuffled batches; scores are the mean over draws.')
flags.DEFINE_float(
    'diversity_zeta', None, 'The AFML paper\'s diversity scenario: pool and '
    're-partition the data with Dirichlet class proportions; a fraction '
    '1 - zeta of the clients relabel and augment their data (text: a '
    'substitution cipher). Unset keeps the dataset\'s own split.')
flags.DEFINE_float('dirichlet_concentration', 0.5, 'The diversity scenario\'s '
                   'Dirichlet parameter of each client\'s class proportions.')
flags.DEFINE_integer('eval_every', 10, 'Evaluate every this many rounds '
                     '(round 0 and the last round always).')
flags.DEFINE_integer(
    'num_eval_clients', 0, 'Clients evaluated (a fixed seeded sample); '
    '0 evaluates every client.')
flags.DEFINE_integer('rounds_per_checkpoint', 1, 'Save the state every this '
                     'many rounds (and after the last one).')
flags.DEFINE_integer(
    'seed', 0, 'Every kind of randomness derives its own seed from this one.')
for _kind in run_config.SeedKind:
  flags.DEFINE_integer(f'{_kind.value}_seed', None,
                       f'Pins the {_kind.value} seed (default: derived from '
                       '--seed).')
flags.DEFINE_string('output_dir', 'runs/train',
                    'Where results and checkpoints go.')
flags.DEFINE_bool(
    'strict_data', False, 'Stop before training if any client has unusable '
    'examples, instead of dropping those clients with a warning (they are '
    'listed in dropped_clients.json).')


def define_setting_flag(setting: settings_lib.Setting, module_name: str,
                        help_prefix: str = '') -> None:
  """Defines `--<setting.name>` from the setting's type, default and help."""
  kind = setting.type
  common = dict(name=setting.name, default=setting.default,
                help=help_prefix + setting.help, module_name=module_name)
  if isinstance(kind, type) and issubclass(kind, enum.Enum):
    flags.DEFINE_enum_class(enum_class=kind, case_sensitive=False, **common)
  else:
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
              float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
    define(**common)


for _algorithm in registry.ALGORITHMS.values():
  for _setting in _algorithm.settings():
    define_setting_flag(_setting, __name__, f'{_algorithm.name}: ')

# tff_perfed 0.1's flags, with their old types and defaults.
_LEGACY_FLAGS = (
    ('alpha', flags.DEFINE_float, 0.02),
    ('beta', flags.DEFINE_float, 0.05),
    ('hessian_free_delta', flags.DEFINE_float, 1e-3),
    ('afml_alpha', flags.DEFINE_float, 1e-3),
    ('afml_beta', flags.DEFINE_float, 1e-6),
    ('head_learning_rate', flags.DEFINE_float, 0.1),
    ('encoder_learning_rate', flags.DEFINE_float, 0.1),
    ('initial_encoder_scale', flags.DEFINE_float, 1e-3),
)
for _name, _define, _default in _LEGACY_FLAGS:
  _define(_name, _default, 'Deprecated: sets --' + ', --'.join(
      run_config.LEGACY_SETTINGS[_name]) + '.')
flags.DEFINE_enum_class(
    'hessian_mode', meta_gradients.HessianMode.FIRST_ORDER,
    meta_gradients.HessianMode, 'Deprecated: sets --' + ', --'.join(
        run_config.LEGACY_SETTINGS['hessian_mode']) + '.',
    case_sensitive=False)


def config_from_flags() -> run_config.RunConfig:
  """The run's settings from this module's flags; validates them.

  A legacy flag given on the command line or in a flagfile sets its new
  flags (unless they are given too), with a warning.

  Raises:
    tff_perfed.validation.ArgumentError: Naming the invalid setting, or a
      legacy flag given beside a new flag it sets.
  """
  own = FLAGS.get_flags_for_module(__name__)
  values = {flag.name: flag.value for flag in own
            if flag.name not in run_config.LEGACY_SETTINGS}
  legacy = {}
  for old, new_names in run_config.LEGACY_SETTINGS.items():
    if not FLAGS[old].present:
      continue
    both = [name for name in new_names if FLAGS[name].present]
    if both:
      raise validation.ArgumentValueError(
          old, f'left out when --{both[0]} is given (--{old} is the old name '
          f'of --{", --".join(new_names)})', FLAGS[old].value)
    values.update({name: FLAGS[old].value for name in new_names})
    legacy[old] = new_names
  try:
    config = run_config.RunConfig.from_settings(values)
  except validation.ArgumentError as e:
    # Name the flag the user wrote, and what it now sets.
    old = next((old for old, new_names in legacy.items()
                if e.argument in new_names), None)
    if old is None:
      raise
    raise type(e)(old, f'{e.expected} (--{old} sets --{e.argument})',
                  e.got) from e
  # Printed, not logged: quiet_logging and absl's handler may hide a log line.
  for old, new_names in legacy.items():
    print(f'warning: --{old} is deprecated: it sets --'
          f'{", --".join(new_names)}.', file=sys.stderr)
  return config


# Every binary parses its flags with this (one `error:` line, exit 2).
parse_flags = flag_parsing.parse_flags


def quiet_logging() -> None:
  """Keeps the terminal for results: WARNING and above, unless --verbosity.

  Checkpointing logs every SavedModel file at INFO, through both absl and
  TF's own Python logger.
  """
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel('WARNING')


def print_error(message: str) -> None:
  """Prints `error: <message>` on stderr, always one line.

  Whitespace runs (a newline in a path, say) become one space.
  """
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr)


@contextlib.contextmanager
def bad_input_exits():
  """Turns the library's input errors into one `error:` line and exit 2."""
  try:
    yield
  except validation.ArgumentError as e:
    print_error(e.describe(f'--{e.argument}'))
    sys.exit(2)
  except (federated_dataset.DatasetError, experiment.RunDirectoryError) as e:
    print_error(str(e))
    sys.exit(2)


def main_wrapper(main: Callable[[], None], *,
                 interrupted_message: str) -> Callable[[List[str]], None]:
  """Wraps `main()` for `app.run`: quiet logs, owned workers, clean exits.

  Installs the runtime of `--runtime` (`runtime_flags`). Bad input exits
  with one line and status 2; a `RunError` with one line and its
  `exit_code`; a lost worker with one line and status 1 at once (threads may
  be blocked on it); a `KeyboardInterrupt` (a binary's own signal handlers,
  `exits`, end it before one can be raised) stops the TFF worker and exits
  at once (130) after `interrupted_message`. The workers are stopped however
  `main` ends.
  """

  def wrapped(argv: List[str]) -> None:
    del argv  # Checked by `parse_flags`.
    quiet_logging()
    try:
      with bad_input_exits():
        runtime_flags.set_runtime_from_flags()
        main()
    except KeyboardInterrupt:
      print(interrupted_message, file=sys.stderr)
      runtime.exit_now(130)
    except remote.WorkerUnavailableError as e:
      # Not bad input: the run can resume from its last checkpoint once the
      # workers are back.
      print_error(str(e))
      runtime.exit_now(getattr(e, 'exit_code', 1))
    except errors.RunError as e:
      print_error(str(e))
      sys.exit(e.exit_code)
    finally:
      runtime.shutdown_workers()

  return wrapped


def run(main: Callable[[], None], *, interrupted_message: str,
        flags_parser: Callable[[List[str]], List[str]] = parse_flags) -> None:
  """A binary's `app.run(main_wrapper(main, ...))`; never returns.

  However it ends (done, bad flags, bad input, a `RunError`, a bug), the
  process exits through `exits.exit_process`: exit hooks, then no
  interpreter teardown (no segfault from gRPC threads, no failing
  finalizers after the last line). A bug still prints its traceback.

  Args:
    main: The binary's main, without arguments.
    interrupted_message: Printed on Ctrl-C (see `main_wrapper`).
    flags_parser: Parses argv (default `parse_flags`).
  """
  exits.exit_quietly_on_signals(interrupted_message)
  try:
    app.run(main_wrapper(main, interrupted_message=interrupted_message),
            flags_parser=flags_parser)
    code = 0
  except SystemExit as e:
    code = exits.exit_code(e)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 1
  exits.exit_process(code)
