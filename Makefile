PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELHOUSE := .wheelhouse
# llama.cpp (the CPU engine of LLM endpoints) is built for AVX2, not -march=native: VMs that report
# AMX without enabling it fault on the native build's AMX kernels.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[dev,llm,ray]'
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
