# Two entry points: `make demo` (the exporter against the embedded Ollama simulator)
# and `make test` (install everything, lint, type-check and run the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Bytecode caches under the venv, not beside the sources, and written even where the
# environment says PYTHONDONTWRITEBYTECODE: without them every pytest worker and every
# exporter the tests start compiles (and pytest re-rewrites) the same modules again.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help demo test test-fast install install-test system-deps lint pytest bench manifests clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Editable installs: code changes need no reinstall, so pip runs again only when
# pyproject.toml changes (the stamp files record the last install).
install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian packages the tests run for real: `prometheus` (prometheus + promtool),
# `prometheus-alertmanager` (amtool) and `systemd` (systemd-analyze verify for the unit
# file). Installed only when missing.
system-deps: ## install the Debian packages the tests run (needs root; skipped tests otherwise)
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v amtool >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	elif [ -n "$$CI" ]; then \
		echo "missing Debian packages:$$missing; CI needs them: run as root or install them first" >&2; exit 1; \
	else \
		echo "not root: the tests that need$$missing will be skipped;"; \
		echo "  to run them: sudo apt-get install$$missing   (then make test again)"; \
	fi

demo: install ## run the exporter against the embedded Ollama simulator
	$(BIN)/ollama-probe-exporter demo

LINTED := exporter tests benchmarks tools

lint: install-test ## ruff format + check, mypy (strict on exporter/ and tools/)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy

# Four workers on two cores: the suite mostly waits on loopback I/O. The tests that compare
# measured times (marker `timing`) form one xdist group: one worker runs them one after the
# other while the others run the rest. Each compares against a baseline measured beside it,
# in the same test, so the load of the other workers is in both.
pytest: install-test system-deps
	$(BIN)/pytest -n 4 --dist loadgroup

test: lint pytest ## install everything, lint, type-check and run the whole suite (CI)

test-fast: install-test ## the edit loop: unit, simulator and config tests (no processes, no tools)
	$(BIN)/pytest -q -n 3 -m "not e2e and not deploy and not slow"

# One table, every number beside a baseline run in the same invocation (docs/performance.md):
# CPU per chunk against the classic requests loop, plain httpx and the bare-protocol floor;
# TTFT and tokens/s errors against the simulator's truth; scrapes of 2,000 jobs against
# prometheus-client rendering the same samples. About 5 minutes on 2 cores.
bench: install-test ## run the benchmark suite and print one table of errors and ratios
	$(BIN)/python -m benchmarks

# The generated files: the chart's files/ copies of the rules file and the dashboard, and the
# chart rendered into deploy/kubernetes/. Run after editing any of their sources; the tests
# name each stale file. `$(BIN)/python -m tools.manifests --check` only lists them.
manifests: install-test ## regenerate the chart's copies and the rendered manifests
	$(BIN)/python -m tools.manifests

clean: ## remove the venv and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
