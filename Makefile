# make demo | make test | make bench | make lint — each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint format clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ntksim needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ntksim run configs/quick.yaml --out runs/quick --force

# The whole suite with float32 (JAX's default), then the numeric tests again with float64,
# as neural-tangents does.
test: $(STAMP)
	JAX_ENABLE_X64=0 $(BIN)/python -m pytest -q
	JAX_ENABLE_X64=1 $(BIN)/python -m pytest -q -m "not cli"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow and not cli"

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
