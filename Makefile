# `make demo` and `make test` each set everything up (a .venv with nnframe and the example
# plugin installed) and then run. Re-running skips the install unless its inputs changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGIN := plugins/nnframe-extras

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml $(wildcard $(PLUGIN)/nnframe_extras/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./$(PLUGIN)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/nnframe plugins

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -W error::RuntimeWarning

clean:
	rm -rf $(VENV)
