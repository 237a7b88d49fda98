"""What a new user tripped over (issue 12): option prefixes, an explicit --data-dir without
MNIST, numbers checked before anything is loaded, --help, --subset, --epochs 0, and the
small things (plugins --check columns, verbose training, plotting an empty history)."""

import re
import warnings

import numpy as np
import pytest
from test_cli import OFFLINE, nnframe_cli

from nnframe.datasets import load_sample

TIMEOUT = 300  # only turns a hang into a failure


# -- prefixes ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, prefix", [
    (["train", "--data-d", "mnist"], "--data-d"),  # --data is an option of its own now
    (["train", "--epoch", "3"], "--epoch"),
    (["train", "--learn", "0.5"], "--learn"),
    (["train", "--sam"], "--sam"),
    (["evaluate", "m.pkl", "--trust"], "--trust"),
    (["predict", "m.pkl", "x.png", "--save"], "--save"),
    (["data", "--fet"], "--fet"),
    (["plugins", "--che"], "--che"),
])
def test_an_option_prefix_is_refused(tmp_path, args, prefix):
    result = nnframe_cli(*args, cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments" in lines[0] and prefix in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_an_option_of_another_command_is_named_as_such(capsys):
    from nnframe.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "m.pkl", "--device", "cuda"])
    err = capsys.readouterr().err
    assert "evaluate has no --device (train has it; see `nnframe evaluate --help`)" in err
    assert "did you mean" not in err


@pytest.mark.parametrize("typed, meant", [
    ("--epoch", "--epochs"), ("--learningrate=0.5", "--learning-rate"),
    ("--batchsize", "--batch-size"), ("--zzz", None),
])
def test_a_mistyped_option_gets_the_closest_one(typed, meant, capsys):
    from nnframe.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["train", typed])
    err = capsys.readouterr().err
    assert exit.value.code == 2
    if meant is None:
        assert "did you mean" not in err
    else:
        assert f"; did you mean {meant}? (see `nnframe --help`)" in err


# -- an explicit --data-dir ----------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--no-download"]])
def test_an_explicit_data_dir_without_mnist_fails_instead_of_using_the_sample(tmp_path, extra):
    empty = tmp_path / "my-mnist"
    result = nnframe_cli("train", "--epochs", "1", "--hidden", "8", "--no-plot", "--out",
                         str(tmp_path / "out"), "--data-dir", str(empty), *extra, env=OFFLINE,
                         timeout=TIMEOUT)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnframe: error: full MNIST is not available")
    assert "train-images-idx3-ubyte" in lines[0] and str(empty) in lines[0]
    assert "sample" not in result.stdout and not (tmp_path / "out" / "model.pkl").exists()


def test_evaluate_with_an_explicit_data_dir_does_not_fall_back_either(tmp_path):
    from nnframe.network import NeuralNetwork

    NeuralNetwork(3, [784, 8, 10], [None, "relu", "softmax"], "cross_entropy",
                  seed=0).save(tmp_path / "m.pkl")
    result = nnframe_cli("evaluate", str(tmp_path / "m.pkl"), "--data-dir", str(tmp_path),
                         "--no-download", timeout=TIMEOUT)
    assert result.returncode == 1 and "full MNIST is not available" in result.stderr


# -- numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, needle", [
    ("--learning-rate", "-1", "--learning-rate must be a positive finite number"),
    ("--learning-rate", "0", "--learning-rate must be a positive finite number"),
    ("--epochs", "-1", "--epochs must be an integer >= 1, got -1."),
    ("--epochs", "0", "--epochs must be an integer >= 1, got 0."),
    ("--batch-size", "0", "--batch-size must be an integer >= 1, got 0."),
    ("--subset", "-5", "--subset must be an integer >= 0"),
    ("--seed", "-3", "--seed must be an integer >= 0, got -3."),
])
def test_numbers_are_checked_before_any_data_is_loaded(tmp_path, option, value, needle):
    # The data directory is empty and downloads are off: had the data been loaded first,
    # the error would be about missing MNIST instead of the option.
    result = nnframe_cli("train", option, value, "--out", str(tmp_path / "out"), "--data-dir",
                         str(tmp_path / "nothing"), "--no-download", timeout=TIMEOUT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnframe: error: ") and needle in lines[0], \
        result.stderr
    assert "_" not in lines[0].split("got")[0]  # the option, not the Python argument
    assert not (tmp_path / "out").exists()


# -- --help ----------------------------------------------------------------------------------
def _options(help_text: str) -> dict[str, str]:
    """{option: its help text, joined over lines} from an argparse --help page."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        match = re.match(r"  (-\w, )?(--[\w-]+)", line)
        if match:
            current = match.group(2)
            entries[current] = line[match.end():]
        elif current and line.startswith("   "):
            entries[current] += " " + line
    return {k: " ".join(v.split()) for k, v in entries.items()}


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "data", "plugins"])
def test_help_has_a_line_for_every_option_and_each_default_once(command):
    from nnframe.cli import build_parser

    result = nnframe_cli(command, "--help")
    assert result.returncode == 0
    entries = _options(result.stdout)
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                text = entries.get(flag)
                assert text and re.search(r"[a-z]{3}", text), (flag, text)
                assert "(default: False)" not in text and "(default: None)" not in text
                assert text.count("default") <= 1, (flag, text)
                if action.default not in (None, False) and action.nargs != 0 and \
                        flag != "--help":
                    assert "default" in text, (flag, text)


# -- --subset --------------------------------------------------------------------------------
def test_subset_is_stratified_over_the_digits_and_reproducible():
    from nnframe.datasets import stratified_subset

    labels = load_sample().y_train  # sorted by digit: the first 1,000 rows are 0s and 1s
    rows = stratified_subset(labels, 1000, seed=7)
    counts = np.bincount(labels[rows], minlength=10)
    assert len(set(rows.tolist())) == 1000 and all(90 <= c <= 110 for c in counts), counts
    assert np.array_equal(rows, stratified_subset(labels, 1000, seed=7))
    assert not np.array_equal(rows, stratified_subset(labels, 1000, seed=8))
    odd = np.bincount(labels[stratified_subset(labels, 37, seed=0)], minlength=10)
    assert odd.sum() == 37 and odd.max() - odd.min() <= 1
    assert sorted(stratified_subset(labels, 10**6, seed=0).tolist()) == list(range(4000))


def test_train_subset_reports_each_digit(tmp_path):
    runs = []
    for seed in ("3", "3"):
        out = tmp_path / f"run{len(runs)}"
        result = nnframe_cli("train", "--sample", "--subset", "1000", "--seed", seed,
                             "--epochs", "1", "--hidden", "16", "--no-plot", "--out",
                             str(out), timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert "1,000 training (--subset: drawn at random with seed 3, 100 of each digit)" \
            in result.stdout
        runs.append((out / "history.json").read_text())
    import json

    assert json.loads(runs[0])["loss"] == json.loads(runs[1])["loss"]  # the same draw


# -- small things ------------------------------------------------------------------------------
def test_plugins_check_labels_name_their_kind_in_aligned_columns():
    result = nnframe_cli("plugins", "--check", timeout=TIMEOUT)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert len(lines) > 5
    labels = [line.split()[1] for line in lines]
    assert all(label.split(":")[0] in ("activation", "cost", "optimizer", "schedule")
               for label in labels), labels
    assert any(label.startswith("cost:") for label in labels)
    assert {"optimizer:adam", "optimizer:sgd"} <= set(labels)
    # where the label and the provider columns start, on every line
    starts = {(m.start(2), m.start(3))
              for m in (re.match(r"(ok  |FAIL) (\S+) +(\S)", line) for line in lines)}
    assert len(starts) == 1, lines


def test_verbose_training_prints_accuracy_as_a_percentage(capsys):
    from nnframe.network import NeuralNetwork

    data = load_sample()
    net = NeuralNetwork(3, [784, 8, 10], [None, "relu", "softmax"], "cross_entropy", seed=0)
    net.train(64, data.x_train[:200], data.y_train[:200], 1, 0.1, verbose=True,
              validation_data=(data.x_test[:50], data.y_test[:50]))
    line = capsys.readouterr().err.strip()
    assert re.search(r" acc=\d+\.\d\d% ", line), line
    assert re.search(r" val_acc=\d+\.\d\d%\]$", line), line
    assert re.search(r"^epoch 1/1: 100%\|.* loss=\d\.\d{4} ", line), line


def test_plotting_an_empty_history_does_not_warn(tmp_path):
    pytest.importorskip("matplotlib")
    from nnframe.plotting import plot_history

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_history({"loss": [], "accuracy": []}, tmp_path / "empty.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_epochs_zero_is_refused_and_writes_nothing(tmp_path):
    result = nnframe_cli("train", "--sample", "--epochs", "0", "--out", str(tmp_path / "out"),
                         timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.strip() == "nnframe: error: --epochs must be an integer >= 1, got 0."
    assert not (tmp_path / "out").exists()


def test_history_records_every_setting_that_shapes_the_run(tmp_path):
    import json

    from test_cli import nnframe_cli

    result = nnframe_cli("train", "--sample", "--subset", "300", "--dtype", "float64",
                         "--epochs", "1", "--hidden", "8", "--no-plot", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["subset"] == 300 and settings["dtype"] == "float64"


def test_out_that_is_a_file_is_one_clear_line(tmp_path):
    from test_cli import nnframe_cli

    (tmp_path / "taken").write_text("x")
    result = nnframe_cli("train", "--sample", "--epochs", "1", "--out", str(tmp_path / "taken"))
    assert result.returncode == 1
    assert result.stderr.startswith("nnframe: error: --out") and "Errno" not in result.stderr


def test_a_warning_is_one_line_on_the_command_line():
    from test_cli import nnframe_cli

    result = nnframe_cli("plugins", env={"NNFRAME_BUILTINS_ONLY": "maybe"})
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith("nnframe: warning: ")]
    assert any("NNFRAME_BUILTINS_ONLY" in line for line in lines)
