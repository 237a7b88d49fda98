"""nnframe train's training options: --schedule, --dropout, --validation-split,
--early-stopping, the checkpoint after every epoch and the plot's curves."""

import inspect
import json
import subprocess
import sys

import pytest

import nnframe


def train(out, *args):
    return subprocess.run([sys.executable, "-m", "nnframe", "train", "--sample", "--subset",
                           "500", "--hidden", "16", "--no-plot", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, needle", [
    (["--validation-split", "1.5"], "--validation-split must be a fraction between 0 and 1"),
    (["--validation-split", "0"], "--validation-split must be a fraction between 0 and 1"),
    (["--early-stopping", "3"], "--early-stopping needs --validation-split F"),
    (["--early-stopping", "-1", "--validation-split", "0.1"], "a patience in epochs (>= 0)"),
    (["--dropout", "1.0"], "--dropout takes rates in [0, 1)"),
    (["--dropout", "x"], "--dropout takes rates in [0, 1)"),
    (["--hidden", "8,8,8", "--dropout", "0.1,0.2,0.3"], "--dropout has 3 rates for 3 hidden"),
    (["--schedule-option", "gamma=0.5"], "--schedule-option needs --schedule NAME"),
    (["--schedule", "cosin"], "Did you mean 'cosine'"),
    (["--schedule", "step"], "step_size"),
    (["--schedule", "step", "--schedule-option", "step_size=2", "--schedule-option",
      "step_size=3"], "step_size is given twice"),
])
def test_bad_training_options_are_one_line_before_any_data(tmp_path, args, needle):
    result = train(tmp_path, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "checkpoint.pkl").exists()


def test_schedule_option_is_parsed_as_optimizer_option(tmp_path):
    result = train(tmp_path, "--epochs", "3", "--schedule", "step", "--schedule-option",
                   "step_size=2", "--schedule-option", "gamma=0.5")
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["learning_rate"] == [0.1, 0.1, 0.05]
    assert history["settings"]["schedule_hyperparameters"] == {"step_size": 2, "gamma": 0.5,
                                                               "warmup": 0}


def test_validation_split_holds_out_training_images_and_early_stopping_watches_them(tmp_path):
    # A huge learning rate makes the validation loss rise at once: patience 1 then stops.
    result = train(tmp_path, "--epochs", "30", "--validation-split", "0.2",
                   "--early-stopping", "1", "--learning-rate", "3")
    assert result.returncode == 0, result.stderr
    assert "validation: 100 training images held out" in result.stdout
    assert "400 training" in result.stdout
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["validation"].startswith("100 training images held out")
    stopped = len(history["val_loss"])
    assert stopped < 30 and "early stopping:" in result.stdout
    best = history["val_loss"].index(min(history["val_loss"])) + 1
    assert stopped == best + 1  # patience 1
    model = nnframe.load(tmp_path / "model.pkl")
    saved_best = nnframe.load(tmp_path / "best.pkl")
    assert saved_best.epochs == best
    for a, b in zip(model.parameters(), saved_best.parameters(), strict=True):
        assert (a == b).all()  # the best epoch's weights are kept
    assert "test_loss" in history and 0 <= history["test_accuracy"] <= 100
    # finished: resuming it trains nothing more
    again = subprocess.run([sys.executable, "-m", "nnframe", "train", "--resume",
                            str(tmp_path / "checkpoint.pkl")], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert nnframe.load(tmp_path / "model.pkl").epochs == stopped


def test_without_a_split_the_test_set_is_validated_each_epoch_and_says_so(tmp_path):
    result = train(tmp_path, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["validation"] == "the test set (no --validation-split)"
    assert len(history["val_loss"]) == 2 and " test_acc=" in result.stderr
    assert nnframe.load(tmp_path / "checkpoint.pkl").epochs == 2


@pytest.mark.skipif("dropout" not in inspect.signature(nnframe.NeuralNetwork).parameters,
                    reason="NeuralNetwork(dropout=...) is not in this tree yet")
@pytest.mark.parametrize("rates, expected", [
    ("0.5", [0.0, 0.5, 0.5, 0.0]),
    ("0.2,0.5", [0.2, 0.5, 0.5, 0.0]),
    ("0.1,0.2,0.3", [0.1, 0.2, 0.3, 0.0]),
])
def test_dropout_rates_per_layer(tmp_path, rates, expected):
    result = train(tmp_path, "--epochs", "1", "--hidden", "16,8", "--dropout", rates)
    assert result.returncode == 0, result.stderr
    assert list(nnframe.load(tmp_path / "model.pkl").dropout) == pytest.approx(expected)


def test_the_plot_shows_train_and_validation_curves(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from nnframe.plotting import plot_history

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    history = {"loss": [1.0, 0.5], "accuracy": [50.0, 70.0], "val_loss": [1.1, 0.7],
               "val_accuracy": [45.0, 60.0]}
    plot_history(history, tmp_path / "h.png", validation_label="validation")
    labels = [[t.get_text() for t in ax.get_legend().get_texts()]
              for ax in figures[0].axes]
    assert labels == [["train", "validation"], ["train", "validation"]]
