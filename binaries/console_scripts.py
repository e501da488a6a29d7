"""The console scripts (pyproject.toml's `[project.scripts]`).

`tff-perfed-NAME` runs `tff_perfed.binaries.NAME` as `__main__`, exactly as
`python -m tff_perfed.binaries.NAME` does (`runpy`, as `-m` itself): the same
first statement installs the signal handlers before TensorFlow loads, the
same flags, bad-input lines and exit codes. This module imports nothing but
the standard library, so that holds from the script's first instant.
"""

import runpy

# Console script name (after `tff-perfed-`) -> module under tff_perfed.binaries.
BINARIES = {
    'train': 'train',
    'demo': 'demo',
    'sweep': 'sweep_diversity',
    'reproduce': 'reproduce',
    'benchmark': 'benchmark',
    'worker': 'worker',
}


def _run_as_main(module: str) -> None:
  runpy.run_module(f'tff_perfed.binaries.{module}', run_name='__main__',
                   alter_sys=True)


def train() -> None:
  _run_as_main(BINARIES['train'])


def demo() -> None:
  _run_as_main(BINARIES['demo'])


def sweep() -> None:
  _run_as_main(BINARIES['sweep'])


def reproduce() -> None:
  _run_as_main(BINARIES['reproduce'])


def benchmark() -> None:
  _run_as_main(BINARIES['benchmark'])


def worker() -> None:
  _run_as_main(BINARIES['worker'])
