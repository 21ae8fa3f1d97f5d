# Every target installs what it needs first (idempotent; seconds when ready).
VENV := .venv
PYTEST_ARGS ?=

.PHONY: setup setup-test run test lint unit bench test-kernels

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

run: setup
	$(VENV)/bin/inotrace serve

test: setup-test
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

unit: setup-test
	$(VENV)/bin/python -m pytest -m "not bpf" $(PYTEST_ARGS)

lint: setup-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# Benchmarks (root; they raise fs.inotify limits for the run and restore them).
bench: setup-test
	$(VENV)/bin/python bench/accounting.py
	$(VENV)/bin/python bench/opens.py
	$(VENV)/bin/python bench/burst.py
	$(VENV)/bin/python bench/scrapes.py

# Kernel-matrix lane: Debian's 5.10, 6.1 and 6.12 in VMs, tests per backend (kernels/README.md).
test-kernels: setup-test
	@kernels/run
