# videopoet: install, test, lint. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
PYTEST_ARGS ?=
LOCK := requirements.lock
# `make lock` takes the newest releases uploaded before this day (uv's --exclude-newer): a release made
# today waits a day, and the day is written into the lock's header, so a re-lock can be repeated.
LOCK_DATE ?= $(shell date -u +%Y-%m-%d)

.PHONY: install lock test test-fast demo lint format clean
DEMO_OUT ?= runs/demo

install: $(STAMP)

# Installs exactly the lock (pip and every runtime and dev package), then the package itself, editable,
# without resolving anything again. Re-runs when the lock or pyproject.toml changes.
$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "videopoet needs Python 3.11 or newer (the lock is tested on 3.11): make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep -E '^pip==' $(LOCK))"
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolves every package to its newest release within pyproject.toml's ranges, for every platform and
# Python >= 3.11. `make lock UPGRADE=` keeps every existing pin and only adds what pyproject.toml newly
# asks for. Check a new lock before committing it: make install test demo (docs/install.md).
UPGRADE ?= --upgrade
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 $(UPGRADE) \
		--exclude-newer $(LOCK_DATE) --quiet -o $(LOCK)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (DeepSpeed runs, the demo, fresh processes).
test-fast: install
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

# The whole pipeline on the shapes dataset (2-core CPU: 13 minutes with AVX512-BF16, about 25 in fp32); re-running continues it.
demo: install
	$(BIN)/videopoet demo --out $(DEMO_OUT) --config configs/tiny.yaml

# Style (ruff) and the layer rule (import-linter's contracts in pyproject.toml; docs/design.md).
lint: install
	$(BIN)/ruff check videopoet tests
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix videopoet tests
	$(BIN)/ruff format videopoet tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
