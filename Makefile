# Two entry points (README): `make demo` runs the main job on the CPU, `make test` runs the test suite.
# Both build .venv from scratch when it is missing or older than the dependency files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

# torch goes in first, from constraints.txt (CPU build 2.13.0); everything else is installed under the same
# constraints so that no dependency can swap it for a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,megatron,demo]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/verl-rlif demo

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis outputs
