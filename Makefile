# The exact commands the README, CI and pre-commit run. uv is installed if missing.
UV := $(shell command -v uv 2>/dev/null || { python3 -m pip install --quiet uv >&2 && command -v uv; })

.PHONY: run test lint typecheck fmt check stack bench chromium screenshots

run:  ## install (from uv.lock) and start the service on SQLite + the in-process worker
	$(UV) run --locked promptledger serve

test: chromium  ## install (from uv.lock, and Chromium for the browser tests) and run the whole test suite
	$(UV) run --locked pytest

chromium:  ## Debian's Chromium for the browser tests, when /usr/bin/chromium is missing
	@sh .ci/install-chromium

screenshots: chromium  ## refresh docs/ui/*.png from the browser tests
	PROMPTLEDGER_UI_SCREENSHOTS=docs/ui $(UV) run --locked pytest tests/ui/test_ui_browser.py -q -p no:randomly

lint:
	$(UV) run --locked ruff check src tests
	$(UV) run --locked ruff format --check src tests

typecheck:
	$(UV) run --locked mypy

fmt:
	$(UV) run --locked ruff format src tests
	$(UV) run --locked ruff check --fix src tests

check: lint typecheck test

stack:  ## 2 API processes + 2 Celery workers on PostgreSQL and a private Redis (docs/production.md)
	$(UV) run --locked python -m prompt_ledger.testing.stack

.PHONY: reliability
reliability:  ## fault injection, full fuzzing, hostile input, secrets and the ~10 min soak (SOAK_SECONDS)
	RELIABILITY_PROFILE=full $(UV) run --locked pytest tests/reliability -m ""

bench:  ## the benchmark (bench/README.md): `make bench`, or `make bench ARGS="--smoke"`
	$(UV) run --locked python bench/run.py $(ARGS)
