PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELHOUSE := .wheelhouse

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	bash scripts/install-system-deps.sh
	$(BIN)/pip download -q -d $(WHEELHOUSE) flask boto3
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check shipyard tests
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest -q

demo: install
	bash scripts/demo.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(WHEELHOUSE)
