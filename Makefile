# Two commands matter: `make run` (embedded pipeline on :8080) and `make test` (everything, real Kafka).
# Both build the environment from uv.lock first, so every clone installs the same versions.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .cache/uv/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV_CACHE_DIR := $(CURDIR)/.cache/uv-cache

.PHONY: run run-kafka test lint typecheck kafka-jars system-tools sdk-bundles env clean

$(UV):
	$(PYTHON) -m venv .cache/uv
	.cache/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON) --quiet
	touch $@

env: $(VENV)/.synced

run: env
	$(VENV)/bin/klantreis up

kafka-jars: env
	$(VENV)/bin/klantreis kafka fetch

run-kafka: kafka-jars
	$(VENV)/bin/python deploy/run_kafka_stack.py

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	node --check services/metrics/static/dashboard.js

typecheck: env
	$(VENV)/bin/mypy

# Debian programs the suite runs for real: headless Chromium for the tracker's tests, nginx as
# the edge in front of the collector, Prometheus and promtool for the alerting rules. Installed
# when missing.
SYSTEM_TOOLS := chromium:chromium chromedriver:chromium-driver nginx:nginx prometheus:prometheus promtool:prometheus
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The official browser SDKs at the versions tests/integration/browser/sdks/package-lock.json pins,
# bundled for the browser tests (no CDN).
sdk-bundles: system-tools
	cd tests/integration/browser/sdks && npm ci --no-audit --no-fund --silent && \
		node build.mjs $(CURDIR)/.cache/sdk-bundles && touch $(CURDIR)/.cache/sdk-bundles/.built

test: kafka-jars system-tools sdk-bundles lint typecheck
	$(VENV)/bin/python -m pytest -ra --durations=15

clean:
	rm -rf $(VENV) .cache var .mypy_cache .ruff_cache .pytest_cache
