# Touchpoint — the commands you need. `make test` and `make demo` are the two that matter.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the ports `make demo` (and its `touchpoint dev`) uses: make demo API_PORT=8080
TEMPORAL_PORT  ?= 7233
API_PORT       ?= 8000
UI_PORT        ?= 8233
DASHBOARD_PORT ?= 8400
METRICS_PORT   ?= 9464

.PHONY: install test chaos lint demo graphs bench schema histories clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install Touchpoint with its dev extras

test: $(STAMP)  ## run the whole test suite
	$(BIN)/pytest

chaos: $(STAMP)  ## the fault tests longer than a minute (kill -9 mid-send); `make test` has the rest
	$(BIN)/pytest tests/faults/chaos_*.py

lint: $(STAMP)  ## ruff (format check + lint) and mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: $(STAMP)  ## validate the examples, then run Max's journeys on the real stack
	$(BIN)/touchpoint validate
	$(BIN)/python demo/run.py --temporal-port $(TEMPORAL_PORT) --api-port $(API_PORT) --ui-port $(UI_PORT) \
		--dashboard-port $(DASHBOARD_PORT) --metrics-port $(METRICS_PORT)

graphs: $(STAMP)  ## draw every example journey as Mermaid (not the *.test.yaml files)
	@for j in journeys/*.yaml; do \
		case $$j in *.test.yaml) continue;; esac; \
		echo; $(BIN)/touchpoint graph $$j || exit 1; \
	done

schema: $(STAMP)  ## regenerate schema/*.schema.json (a test checks they are current)
	$(BIN)/touchpoint schema journey > schema/journey.schema.json
	$(BIN)/touchpoint schema config > schema/touchpoint.schema.json

histories: $(STAMP)  ## re-record the replay corpus in tests/histories (after a patched change)
	RECORD_HISTORIES=1 $(BIN)/pytest -m records_history tests/test_devserver.py tests/test_recorded_stories.py tests/test_deployments.py

bench: $(STAMP)  ## benchmarks on the embedded stack, each a ratio against a same-run baseline (BENCHMARKS.md)
	@for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
