# Two entry points: `make demo` (the exporter against the embedded Ollama simulator)
# and `make test` (install everything, lint, type-check and run the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test system-deps lint pytest bench manifests clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

# Debian packages the tests run for real: `prometheus` (prometheus + promtool),
# `prometheus-alertmanager` (amtool) and `systemd` (systemd-analyze verify for the unit
# file). Installed only when missing.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v amtool >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: install
	$(BIN)/ollama-probe-exporter demo

LINTED := exporter tests benchmarks deploy/prometheus

lint: install-test
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/mypy --strict deploy/prometheus/render_rules.py

pytest: install-test system-deps
	$(BIN)/pytest

test: lint pytest

bench: install
	$(BIN)/python -m benchmarks.accuracy

# Re-render the chart's copies of the rules/dashboard and the plain Kubernetes manifests.
manifests: install-test
	$(BIN)/python -m tests.deploy.chart --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
