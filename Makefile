# shardkit: `make demo` runs the whole job on a small built-in example; `make test` runs the test suite.
# Both install what they need into .venv first (CPU TensorFlow), so they work from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,convert,train,dask,test

.PHONY: install demo test bench docker lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info demo-out runs
