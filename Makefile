# The exact commands the README, CI and pre-commit run. uv is installed if missing.
UV := $(shell command -v uv 2>/dev/null || { python3 -m pip install --quiet uv >&2 && command -v uv; })

.PHONY: run test lint typecheck fmt check

run:  ## install (from uv.lock) and start the service on SQLite + the in-process worker
	$(UV) run --locked promptledger serve

test:  ## install (from uv.lock) and run the whole test suite
	$(UV) run --locked pytest

lint:
	$(UV) run --locked ruff check src tests
	$(UV) run --locked ruff format --check src tests

typecheck:
	$(UV) run --locked mypy

fmt:
	$(UV) run --locked ruff format src tests
	$(UV) run --locked ruff check --fix src tests

check: lint typecheck test
