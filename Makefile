# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export AIIDA_PATH := $(CURDIR)/.aiida
# As an activated venv: the daemon and the CalcJobs' programs (verdi, gap_fit, i-pi, ferromlip-*) come from here.
export PATH := $(VENV)/bin:$(PATH)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
# One thread per process: the 2-core machines run several CalcJobs side by side.
export OMP_NUM_THREADS ?= 1

.PHONY: setup venv profile demo test test-slow test-all production clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	bash setup_profiles/install_system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel setuptools
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[tests]'
	touch $@

profile: venv
	$(PY) setup_profiles/embedded.py

setup: profile

demo: setup
	$(VENV)/bin/verdi run workflows/batio3_active_learning.py

# Tests in parallel (pytest-xdist): most of a test's time is real programs with idle stretches between them
# (job handling, model loading); two workers on two cores measured 21 min against 28 serial (docs/architecture.md).
TEST_WORKERS ?= 2

test: setup
	$(VENV)/bin/pytest -n $(TEST_WORKERS)

test-slow: setup
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m slow

# What CI runs (.ci/run): the README's test command, then the slow tier
test-all: test test-slow

# PostgreSQL + RabbitMQ + a local SLURM (as root), and a profile `ferromlip-prod` on them (docs/production.md)
production: setup
	bash setup_profiles/services.sh
	$(PY) setup_profiles/production.py --profile ferromlip-prod

clean:
	rm -rf $(AIIDA_PATH)
