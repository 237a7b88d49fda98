"""`nnframe train --optimizer NAME --momentum M --weight-decay W --optimizer-option NAME=VALUE`:
the optimizer chosen on the command line is the one that trains and is saved, its
hyperparameters are checked as `nnframe.get_optimizer` checks them, and every mistake is one
line before any data is loaded."""

import json
import os

import pytest
from test_cli import OFFLINE, nnframe_cli
from test_optimizer_registry import LION

import nnframe
from nnframe.cli import _optimizer_option, _option_value

TIMEOUT = 300  # only turns a hang into a failure
TINY = ["--sample", "--subset", "200", "--epochs", "1", "--hidden", "16", "--no-plot"]

SGD = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def _train(out, *args, env=None):
    result = nnframe_cli("train", *TINY, "--out", str(out), *args, env=env, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result


# -- the optimizer reaches training ----------------------------------------------------------
@pytest.mark.parametrize("args, name, expected", [
    ([], "sgd", SGD),
    (["--momentum", "0.9"], "sgd", {**SGD, "momentum": 0.9}),
    (["--optimizer", "adam", "--learning-rate", "0.001"], "adam", ADAM),
    (["--optimizer", "adamw", "--weight-decay", "1e-4"], "adamw",
     {**ADAM, "weight_decay": 1e-4}),
    (["--optimizer-option", "momentum=0.9", "--optimizer-option", "nesterov=TRUE"], "sgd",
     {**SGD, "momentum": 0.9, "nesterov": True}),
    (["--optimizer", "RMSprop", "--optimizer-option", "alpha=0.9", "--momentum", "0.5",
      "--weight-decay", "0", "--learning-rate", "0.01"], "rmsprop",
     {"alpha": 0.9, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.5}),
    (["--optimizer", "adagrad", "--optimizer-option", "eps=1e-6"], "adagrad",
     {"eps": 1e-6, "weight_decay": 0.0}),
])
def test_the_optimizer_and_its_hyperparameters_train_and_are_saved(tmp_path, args, name,
                                                                   expected):
    result = _train(tmp_path, *args)
    model = nnframe.load(tmp_path / "model.pkl")
    assert model.optimizer.name == name
    saved = model.optimizer.hyperparameters
    assert saved == expected
    assert {k: type(v) for k, v in saved.items()} == {k: type(v) for k, v in expected.items()}
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["optimizer"] == name
    assert settings["optimizer_hyperparameters"] == expected
    shown = ", ".join(f"{k}={v!r}" for k, v in expected.items())
    assert f"\noptimizer: {name}({shown}), learning rate " in result.stdout


def test_hyperparameters_change_the_training(tmp_path):
    losses = []
    for run, args in enumerate([[], ["--momentum", "0.9"], ["--weight-decay", "0.5"],
                                ["--optimizer", "adam", "--learning-rate", "0.001"]]):
        _train(tmp_path / str(run), *args)
        losses.append(json.loads((tmp_path / str(run) / "history.json").read_text())["loss"])
    assert len({tuple(loss) for loss in losses}) == len(losses), losses


def test_history_records_the_run_settings_with_the_optimizer(tmp_path):
    _train(tmp_path, "--optimizer", "adam", "--learning-rate", "0.002", "--batch-size", "32",
           "--optimizer-option", "beta2=0.99")
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["learning_rate"] == 0.002 and settings["batch_size"] == 32
    assert settings["optimizer"] == "adam"
    assert settings["optimizer_hyperparameters"] == {**ADAM, "beta2": 0.99}


# -- values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-4", 1e-4), ("1E3", 1000.0),
    ("true", True), ("False", False), ("TRUE", True), ("yes", True), ("No", False),
    ("on", True), ("OFF", False), ("cosine", "cosine"), ("0.9x", "0.9x"),
])
def test_values_are_plain_python_values(text, value):
    parsed = _option_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_an_option_is_name_and_value():
    assert _optimizer_option("beta2=0.99") == ("beta2", 0.99, "beta2=0.99")
    assert _optimizer_option(" eps = 1e-6 ")[:2] == ("eps", 1e-6)
    assert _optimizer_option("name=a=b")[:2] == ("name", "a=b")


# -- mistakes --------------------------------------------------------------------------------
def _refused(tmp_path, *args, status):
    """Run train with an empty data directory and downloads off: had the data been loaded
    before the optimizer was built, the error would be about missing MNIST."""
    result = nnframe_cli("train", "--out", str(tmp_path / "out"), "--data-dir",
                         str(tmp_path / "nothing"), "--no-download", *args, env=OFFLINE,
                         timeout=TIMEOUT)
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["--optimizer", "adm"], ["Unknown optimizer 'adm'", "Did you mean 'adam'?",
                              "Available optimizers: adagrad, adam, adamw, ", " sgd"]),
    (["--optimizer", "adam", "--momentum", "0.9"],
     ["optimizer 'adam' has no hyperparameter 'momentum'",
      "it accepts: beta1, beta2, eps, weight_decay."]),
    (["--optimizer", "adagrad", "--optimizer-option", "beta1=0.9"],
     ["optimizer 'adagrad' has no hyperparameter 'beta1'", "it accepts: eps, weight_decay."]),
    (["--optimizer-option", "momentun=0.9"],
     ["no hyperparameter 'momentun'", "did you mean 'momentum'?"]),
    (["--momentum", "0.9", "--optimizer-option", "momentum=0.5"],
     ["hyperparameter momentum is given twice", "--momentum 0.9",
      "--optimizer-option momentum=0.5"]),
    (["--weight-decay", "1e-4", "--optimizer-option", "weight_decay=0"],
     ["weight_decay is given twice", "--weight-decay 0.0001",
      "--optimizer-option weight_decay=0"]),
    (["--optimizer-option", "eps=1e-6", "--optimizer-option", "eps=1e-7", "--optimizer",
      "adam"], ["eps is given twice", "eps=1e-6", "eps=1e-7"]),
    (["--weight-decay", "-1"], ["optimizer 'sgd': weight_decay must be a number in [0, inf]",
                                "got -1.0"]),
    (["--optimizer", "adam", "--optimizer-option", "beta1=2"],
     ["optimizer 'adam': beta1 must be a number in [0, 1), got 2"]),
    (["--optimizer-option", "nesterov=maybe"],
     ["optimizer 'sgd': nesterov must be True or False, got 'maybe'"]),
    (["--optimizer-option", "momentum=nan"], ["momentum must be a finite number, got nan"]),
])
def test_an_optimizer_mistake_is_one_line_before_any_data(tmp_path, args, needles):
    line = _refused(tmp_path, *args, status=1)
    assert line.startswith("nnframe: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)


@pytest.mark.parametrize("args, needle", [
    (["--optimizer-option", "beta2"], "expected NAME=VALUE, such as beta2=0.99"),
    (["--optimizer-option", "=0.9"], "got '=0.9'"),
    (["--optimizer-option", "beta2="], "got 'beta2='"),
    (["--optimizer-option", " =1"], "expected NAME=VALUE"),
    (["--momentum", "abc"], "argument --momentum: invalid float value: 'abc'"),
    (["--weight-decay", "1e-4x"], "argument --weight-decay: invalid float value"),
    (["--optimizer"], "argument --optimizer: expected one argument"),
])
def test_a_malformed_option_is_a_usage_error(tmp_path, args, needle):
    line = _refused(tmp_path, *args, status=2)
    assert line.startswith("nnframe train: error: argument --") and needle in line, line


# -- plugins ---------------------------------------------------------------------------------
# The Lion under another name, failing its own way for one setting.
SIGNUM = LION.replace('name = "lion"', 'name = "signum"').replace(
    "class Lion(", "class Signum(").replace("register(Lion)", "register(Signum)").replace(
    "super().__init__(beta1=beta1, beta2=beta2, weight_decay=weight_decay)",
    "super().__init__(beta1=beta1, beta2=beta2, weight_decay=weight_decay)\n"
    "        if beta2 == 0.5:\n"
    "            raise ZeroDivisionError(\"a plugin's own failure\")")


@pytest.fixture
def signum_env(make_plugin):
    make_plugin("nnframe-signum", SIGNUM, version="2.5")
    path = os.pathsep.join(p for p in (str(make_plugin.site), os.environ.get("PYTHONPATH"))
                           if p)
    return {"PYTHONPATH": path}


def test_plugins_lists_every_optimizer_with_its_provider(signum_env):
    result = nnframe_cli("plugins", env=signum_env, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("\nOptimizers:\n")[1].splitlines()
    section = section[:next((i for i, line in enumerate(section) if not line.startswith("  ")),
                            len(section))]  # up to the next heading
    rows = {line.split()[0]: line for line in section}
    for name in ("adagrad", "adam", "adamw", "rmsprop", "sgd"):
        assert rows[name].split()[1:] == ["nnframe", "0.1.0", "(builtin_optimizers)"], rows
    assert rows["signum"].split()[1:3] == ["nnframe-signum", "2.5"], rows


def test_a_plugin_optimizer_trains_from_the_command_line(tmp_path, signum_env):
    result = _train(tmp_path, "--optimizer", "signum", "--learning-rate", "0.001",
                    "--optimizer-option", "beta1=0.8", "--weight-decay", "0", env=signum_env)
    assert "optimizer: signum(beta1=0.8, beta2=0.99, weight_decay=0.0)" in result.stdout
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["optimizer_hyperparameters"] == {"beta1": 0.8, "beta2": 0.99,
                                                     "weight_decay": 0.0}


def test_a_plugin_optimizer_that_raises_when_built_is_one_line(tmp_path, signum_env):
    result = nnframe_cli("train", *TINY, "--out", str(tmp_path / "out"), "--optimizer", "signum",
                         "--optimizer-option", "beta2=0.5", env=signum_env, timeout=TIMEOUT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "the optimizer 'signum' (nnframe-signum 2.5) raised ZeroDivisionError" in lines[0]
    assert "a plugin's own failure" in lines[0] and "beta2" in lines[0]


def test_the_guide_lists_each_built_in_optimizer_with_its_defaults():
    import re
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "guide" / "cli.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", guide, re.M))
    for name in ("sgd", "adam", "rmsprop", "adagrad"):
        documented = dict(re.findall(r"`(\w+)` ([^\s,]+)", rows[name]))
        actual = nnframe.get_optimizer(name).hyperparameters
        assert list(documented) == list(actual), name
        for key, value in actual.items():
            text = documented[key]
            assert (text == str(value).lower() if isinstance(value, bool)
                    else float(text) == value), (name, key, text, value)
    assert nnframe.get_optimizer("adamw").weight_decay == 0.01 and "0.01" in rows["adamw"]
