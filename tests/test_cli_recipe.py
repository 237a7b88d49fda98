"""nnframe train --recipe: a named set of options that typed options override."""

import json
import math
import subprocess
import sys

import nnframe


def train(out, *args):
    return subprocess.run([sys.executable, "-m", "nnframe", "train", "--sample", "--subset",
                           "300", "--epochs", "1", "--no-plot", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)


def test_the_accurate_recipe_sets_its_options(tmp_path):
    result = train(tmp_path, "--recipe", "Accurate", "--hidden", "32,16")  # typed: wins
    assert result.returncode == 0, result.stderr
    net = nnframe.load(tmp_path / "model.pkl")
    assert net.num_nodes == [784, 32, 16, 10]
    assert net.dropout == [0.2, 0.5, 0.5, 0.0]
    assert net.optimizer.hyperparameters == {"momentum": 0.9, "dampening": 0.0,
                                             "nesterov": True, "weight_decay": 0.0}
    assert net.schedule.name == "cosine" and net.schedule.hyperparameters["warmup"] == 1
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["batch_size"] == 128 and settings["learning_rate"] == 0.05
    assert settings["epochs"] == 1  # typed


def test_typing_one_option_of_a_group_keeps_the_recipes_others_out(tmp_path):
    result = train(tmp_path, "--recipe", "accurate", "--hidden", "16", "--optimizer", "adam",
                   "--learning-rate", "0.001")
    assert result.returncode == 0, result.stderr  # no "adam has no hyperparameter momentum"
    net = nnframe.load(tmp_path / "model.pkl")
    assert net.optimizer.name == "adam" and net.schedule.name == "cosine"


def test_the_fast_recipe_is_the_plain_defaults(tmp_path):
    result = train(tmp_path, "--recipe", "fast", "--hidden", "16")
    assert result.returncode == 0, result.stderr
    net = nnframe.load(tmp_path / "model.pkl")
    assert net.dropout == [0.0, 0.0, 0.0] and net.schedule is None
    assert net.optimizer.hyperparameters["momentum"] == 0.0


def test_recipe_and_resume_are_one_line_error(tmp_path):
    result = train(tmp_path, "--recipe", "accurate", "--resume", str(tmp_path / "c.pkl"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "give one of them" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_typed_hyperparameter_replaces_only_the_recipes_own(tmp_path):
    result = train(tmp_path, "--recipe", "accurate", "--hidden", "16", "--momentum", "0.95",
                   "--schedule-option", "warmup=2")
    assert result.returncode == 0, result.stderr
    net = nnframe.load(tmp_path / "model.pkl")
    assert net.optimizer.hyperparameters["momentum"] == 0.95
    assert net.optimizer.hyperparameters["nesterov"] is True  # the recipe's, kept
    assert net.schedule.name == "cosine" and net.schedule.hyperparameters["warmup"] == 2


def test_resuming_a_checkpoint_whose_optimizer_plugin_is_missing_is_one_line(tmp_path):
    from nnframe import persistence

    result = train(tmp_path, "--hidden", "8")
    assert result.returncode == 0, result.stderr
    checkpoint = tmp_path / "checkpoint.pkl"
    net = nnframe.load(checkpoint)
    payload = persistence.to_payload(net)
    payload["optimizer"].update(name="lamb", distribution="nnframe-lamb", version="0.3")
    persistence.save(persistence.from_payload(payload), checkpoint)
    result = subprocess.run([sys.executable, "-m", "nnframe", "train", "--resume",
                             str(checkpoint), "--epochs", "2", "--sample", "--no-plot"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pip install nnframe-lamb" in result.stderr
    assert "optimizer=" not in result.stderr and "without --resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def run_in(cwd, *args):
    return subprocess.run([sys.executable, "-m", "nnframe", "train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_resume_from_another_directory_writes_to_the_runs_own(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    first = run_in(tmp_path, "--sample", "--subset", "300", "--hidden", "8", "--epochs", "1",
                   "--no-plot", "--out", "run")
    assert first.returncode == 0, first.stderr
    again = run_in(tmp_path / "elsewhere", "--resume", "../run/checkpoint.pkl", "--epochs",
                   "2")
    assert again.returncode == 0, again.stderr
    assert nnframe.load(tmp_path / "run" / "model.pkl").epochs == 2
    assert not any((tmp_path / "elsewhere").iterdir())


def test_resume_to_a_new_total_stretches_the_schedule_and_says_so(tmp_path):
    first = run_in(tmp_path, "--sample", "--subset", "300", "--hidden", "8", "--epochs", "2",
                   "--schedule", "cosine", "--no-plot", "--out", "run")
    assert first.returncode == 0, first.stderr
    again = run_in(tmp_path, "--resume", "run/checkpoint.pkl", "--epochs", "4")
    assert again.returncode == 0, again.stderr
    assert "now spans epochs 1-4" in again.stderr
    rates = json.loads((tmp_path / "run" / "history.json").read_text())["learning_rate"]
    assert rates[2:] == [0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (2, 3)]
    done = run_in(tmp_path, "--resume", "run/checkpoint.pkl", "--epochs", "3")
    assert done.returncode == 0 and "nothing to train" in done.stderr
