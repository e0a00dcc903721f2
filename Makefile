# Two entry points: `make demo` (the exporter against the embedded Ollama simulator)
# and `make test` (install everything, lint, type-check and run the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test system-deps lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

# Debian packages the tests run for real: `prometheus` (prometheus + promtool) and
# `systemd` (systemd-analyze verify for the unit file). Installed only when missing.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: install
	$(BIN)/ollama-probe-exporter demo

lint: install-test
	$(BIN)/ruff format --check exporter tests benchmarks
	$(BIN)/ruff check exporter tests benchmarks
	$(BIN)/mypy

pytest: install-test system-deps
	$(BIN)/pytest

test: lint pytest

bench: install
	$(BIN)/python -m benchmarks.accuracy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
