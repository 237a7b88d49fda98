"""The main job end to end on full MNIST: the default recipe reaches >= 98.0% test accuracy.

Needs the four MNIST files in $NNFRAME_DATA_DIR (or the per-user cache). Without them the
test is skipped on a developer machine and fails in CI (CI=true), where .ci/run provides them.
"""

import json
import os

import pytest
from test_cli import nnframe_cli

from nnframe import datasets


def full_mnist_dir():
    directory = datasets.resolve_data_dir()
    report = datasets.status(directory)
    if all(state.startswith("ok") for state in report.values()):
        return directory
    problem = f"full MNIST is not in {directory}: {report}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{problem}; CI must set NNFRAME_DATA_DIR (see .ci/run)")
    pytest.skip(f"{problem}; set NNFRAME_DATA_DIR to run it")


@pytest.mark.slow
def test_default_recipe_reaches_98_percent_on_full_mnist(tmp_path):
    directory = full_mnist_dir()
    result = nnframe_cli("train", "--no-plot", "--out", str(tmp_path),
                         env={"NNFRAME_DATA_DIR": str(directory),
                              "NNFRAME_MNIST_MIRRORS": "http://127.0.0.1:9/"})
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["data"].startswith("full MNIST")
    assert len(history["loss"]) == 20
    assert history["test_accuracy"] >= 98.0, history["val_accuracy"]
