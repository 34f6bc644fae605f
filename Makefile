# Quick start: `make run` sets up .venv and starts the bot; `make test` sets up .venv and runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench screenshots

run: $(VENV)/.installed-run .env
	$(BIN)/python bot.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python bench/bench_plugin.py

# The README's console screenshots (docs/console-desktop.png, docs/console-phone.png), taken by the browser test.
screenshots: $(VENV)/.installed-test
	NAILONG_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/e2e/test_web_process.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: pip runs again only when pyproject.toml changes, and for the test set-up when the trainer does: the
# editable install keeps a copy of it as `nailong_trainer` (what the `nailong-trainer` command runs).
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(wildcard trainer/*.py) | $(BIN)/python
	$(BIN)/pip install -e '.[train,test]'
	touch $@

# Never overwrites an existing .env.
.env:
	cp .env.example .env
