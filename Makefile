# make demo | make test | make bench | make lint — each installs what it needs first.
#
# Two dependency profiles from one codebase:
#   current    .venv            newest jax/flax/optax, no tensorflow      (constraints.txt)
#   reference  .venv-reference  jax 0.5.3 + neural-tangents 0.6.5 (+ tf)  (constraints-reference.txt)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REF := .venv-reference
REF_BIN := $(REF)/bin

.PHONY: install install-reference install-gpu install-reference-gpu demo test test-current test-reference test-slurm test-fast bench \
	bench-reference bench-limits bench-profiles lint format lock clean

define make_venv
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ntksim needs Python >= 3.11"'
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -c $(2) -e '.[$(3)]'
	@touch $(1)/.installed
endef

$(VENV)/.installed: pyproject.toml constraints.txt
	$(call make_venv,$(VENV),constraints.txt,dev)

$(REF)/.installed: pyproject.toml constraints-reference.txt
	$(call make_venv,$(REF),constraints-reference.txt,reference$(comma)dev)

comma := ,

install: $(VENV)/.installed

install-reference: $(REF)/.installed

# CUDA wheels of each profile's jax, on a GPU node (or a cluster's shared environment), after
# `make install` / `make install-reference`. The current profile takes CUDA 13 (CUDA=12 for
# drivers older than 580); the reference profile's jax 0.5.3 has CUDA 12 wheels only.
CUDA ?= 13
install-gpu: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt "jax[cuda$(CUDA)]"

install-reference-gpu: $(REF)/.installed
	$(REF_BIN)/python -m pip install --quiet -c constraints-reference.txt "jax[cuda12]==0.5.3"

demo: $(VENV)/.installed
	$(BIN)/ntksim run configs/quick.yaml --out runs/quick --force

# Both profiles. current: the whole suite in float32 (JAX's default), then the numeric tests
# again in float64, as neural-tangents does. reference: the neural-tangents agreement tests in
# both dtypes, and the numeric tests in float64 on jax 0.5.3 except those marked slow, one case of
# each parametrized test (the current profile runs every case in both dtypes; this pass checks
# that the same code runs alike on the older JAX). Tests run on TEST_WORKERS processes
# (pytest-xdist; CI has 2 cores; TEST_WORKERS=0 runs them in this process, as plain pytest does).
TEST_WORKERS ?= 2
PYTEST = -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test: test-current test-reference

test-current: $(VENV)/.installed
	JAX_ENABLE_X64=0 $(BIN)/python $(PYTEST)
	JAX_ENABLE_X64=1 $(BIN)/python $(PYTEST) -m "not cli"

test-reference: $(REF)/.installed
	JAX_ENABLE_X64=0 $(REF_BIN)/python $(PYTEST) -m reference
	JAX_ENABLE_X64=1 $(REF_BIN)/python $(PYTEST) -m "(not cli and not slow) or reference" --one-case-each

# The SLURM executor against a real one-node cluster that the tests start and stop themselves
# (scripts/one_node_slurm.py: own munge key and slurm.conf in /tmp, SLURM_CONF; no system config).
# Needs root: installs Debian's SLURM 22.05 and munge when missing and apt-get is there, and then
# requires the cluster (a failure to start it fails the run instead of skipping). A few minutes.
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
test-slurm: $(VENV)/.installed
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		if ! $(PYTHON) scripts/one_node_slurm.py check 2>/dev/null; then \
			echo "installing $(SLURM_PACKAGES) (Debian; their system services are not started)"; \
			made_policy=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; }; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SLURM_PACKAGES) >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SLURM_PACKAGES) >/dev/null; }; \
			[ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d; \
		fi; \
		NTKSIM_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -m slurm tests/slurm; \
	else \
		$(BIN)/python -m pytest -q -m slurm tests/slurm; \
	fi

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -x -m "not slow and not cli"

bench: $(VENV)/.installed
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_mercer.py
	$(BIN)/python scripts/bench_training.py
	$(BIN)/python scripts/bench_sweeps.py
	$(BIN)/python scripts/bench_finite_width.py

# The same benchmarks with neural-tangents' columns (its empirical NTK needs the reference profile).
bench-reference: $(REF)/.installed
	$(REF_BIN)/python scripts/bench.py --tag reference

# Limits of activations without a closed form: ntksim's quadrature against neural-tangents'
# ElementwiseNumerical (deg 25/50/100), time and accuracy (about 25 minutes).
bench-limits: $(REF)/.installed
	$(REF_BIN)/python scripts/bench_limits.py

# Both profiles side by side: install size, import and first-limit latency, structured eNTK.
bench-profiles: $(VENV)/.installed $(REF)/.installed
	$(BIN)/python scripts/profile_cost.py $(VENV) $(REF)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the current profile to the newest releases and rewrite its lock.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	head -n 2 constraints.txt > constraints.new
	.venv-lock/bin/python -m pip freeze --exclude-editable >> constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(REF) runs .pytest_cache .ruff_cache
