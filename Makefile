# fkd: `make test` and `make demo` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fkd-installed
CONSTRAINTS := requirements/constraints.txt
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install fashion-mnist lint test test-fast bench demo clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,fast]'
	@touch $(STAMP)

fashion-mnist:
	@test -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz || { \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

lint: install
	$(VENV)/bin/ruff check fkd tests benchmarks demo
	$(VENV)/bin/mypy fkd

test: install fashion-mnist lint
	$(VENV)/bin/pytest

# Skip the end-to-end cases marked slow (CI runs them: use `make test`).
test-fast: install
	$(VENV)/bin/pytest -m "not slow"

# The benchmarks behind docs/benchmarks.md (about an hour on 2 cores); each prints its ratios.
bench: install
	$(PY) benchmarks/store_bench.py
	$(PY) benchmarks/compression_bench.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/generate_bench.py
	$(PY) benchmarks/loader_bench.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/distributed_bench.py

# The whole FKD job on real Fashion-MNIST: teacher, fkd generate, three students, report
# (demo/report.md, .json, .png). FULL=1: all 60k images and the teacher retrained;
# SEEDS=0,1,2: repeat per seed (mean ± std); ABLATION=1: the label-type / N ablation;
# REUSE=1: fresh against reused stored crops (M = 8..64) and K students from one store.
DEMO_ARGS := $(if $(FULL),--preset full) $(if $(SEEDS),--seeds $(SEEDS))
demo: install fashion-mnist
ifdef ABLATION
	OMP_NUM_THREADS=1 $(PY) demo/ablation.py $(if $(FULL),--preset full)
else ifdef REUSE
	OMP_NUM_THREADS=1 $(PY) demo/reuse.py $(if $(FULL),--preset full)
else
	OMP_NUM_THREADS=1 $(PY) demo/run.py $(DEMO_ARGS)
endif

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis demo/work
