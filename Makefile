# The two commands of the README: `make report` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= smoke
LANGUAGES ?= ita
REPORT_SOURCE ?=
PYTEST_ARGS ?=

.PHONY: install report report-only test bench clean-runs train-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to the CPU build (2.13.0): a newer one pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

report: install
	$(BIN)/zagreus run --profile $(PROFILE) --languages $(LANGUAGES) $(if $(REPORT_SOURCE),--report-source $(REPORT_SOURCE))

report-only: install
	$(BIN)/zagreus report --profile $(PROFILE) $(if $(REPORT_SOURCE),--report-source $(REPORT_SOURCE))

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_runner.py

clean-runs:
	rm -rf runs report/smoke report/full

# The training environment (nanotron, datatrove, flash-attn, torch) in its own venv, for GPU nodes:
#   make train-env TRAIN_ENV=<dir> [NANOTRON_SRC=<dir> DATATROVE_SRC=<dir> CPU_ONLY=1]
# (slurm/train-env/build.sh; CPU_ONLY=1 with local source folders is how CI builds it).
train-env:
	@test -n "$(TRAIN_ENV)" || { echo "usage: make train-env TRAIN_ENV=<dir> [NANOTRON_SRC=<dir> DATATROVE_SRC=<dir> CPU_ONLY=1]" >&2; exit 2; }
	PYTHON=$(PYTHON) NANOTRON_SRC=$(NANOTRON_SRC) DATATROVE_SRC=$(DATATROVE_SRC) CPU_ONLY=$(CPU_ONLY) slurm/train-env/build.sh $(TRAIN_ENV)
