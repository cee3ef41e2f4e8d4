# videopoet: install, test, lint. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
PYTEST_ARGS ?=

.PHONY: install test demo lint format clean
DEMO_OUT ?= runs/demo

install: $(STAMP)

# Re-installs only when pyproject.toml changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The whole pipeline on the shapes dataset (2-core CPU: about 13 minutes); re-running continues it.
demo: install
	$(BIN)/videopoet demo --out $(DEMO_OUT) --config configs/tiny.yaml

lint: install
	$(BIN)/ruff check videopoet tests

format: install
	$(BIN)/ruff check --fix videopoet tests
	$(BIN)/ruff format videopoet tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
