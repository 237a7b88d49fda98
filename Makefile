# `make demo` and `make test` each set everything up (a .venv with nnframe, its extras and
# the example plugin installed for real) and then run. Re-running skips the install unless
# its inputs changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.base
FULL := $(VENV)/.full
TORCH := $(VENV)/.torch
PLUGIN := plugins/nnframe-extras

# PyTorch is the benchmark's peer and the oracle of the tests that compare with it. It is a
# large install, so `make test` adds it only in CI (CI=true), where those tests must run;
# elsewhere they run once you `make torch`, and are skipped until then.
TEST_NEEDS := $(FULL) $(if $(filter true 1 yes,$(CI)),$(TORCH))

.PHONY: setup torch demo test docs bench clean

# What the main job needs: nnframe with plots and images (the MNIST sample ships inside
# nnframe), and the example plugin installed for real.
$(BASE): pyproject.toml $(PLUGIN)/pyproject.toml $(wildcard $(PLUGIN)/nnframe_extras/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[plot,images]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./$(PLUGIN)
	touch $(BASE)

# Plus what the tests, the docs build, the benchmark's scikit-learn peer and the
# distributed tests (MPI: mpi4py and an mpiexec) need.
$(FULL): $(BASE)
	$(BIN)/python -m pip install --quiet -e '.[plot,images,test,docs,bench,mpi]'
	touch $(FULL)

# Exactly this version: a CPU build on these machines.
$(TORCH): $(FULL)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	touch $(TORCH)

setup: $(FULL)

torch: $(TORCH)

# The main job: train on MNIST (full set if present or downloadable, else the embedded
# sample) and report test accuracy; the model, history and plot land in runs/mnist/.
demo: $(BASE)
	$(BIN)/nnframe train
	@echo
	@echo "Next: $(BIN)/nnframe evaluate runs/mnist/model.pkl   (per-digit accuracy, confusions)"
	@echo "      $(BIN)/nnframe predict runs/mnist/model.pkl YOUR_DIGIT.png"
	@echo "      or 'source $(BIN)/activate' and drop the $(BIN)/ prefix."

test: $(TEST_NEEDS)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -W error::RuntimeWarning

# The documentation site, served with live reload at http://127.0.0.1:8000. The variable
# silences mkdocs-material's end-of-life banner (a notice about the theme, not this site).
docs: $(FULL)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The performance benchmark (docs/performance.md): needs full MNIST in NNFRAME_DATA_DIR.
bench: $(TORCH)
	$(BIN)/python bench/bench_mlp.py --repeats 5 --json bench/results.json --plot docs/performance.png

clean:
	rm -rf $(VENV)
