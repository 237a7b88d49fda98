"""`nnframe train` checkpoints after every epoch; a run killed with SIGKILL in the middle of
an epoch and continued with `--resume` ends with the weights of an uninterrupted run, bit for
bit. The kill is real: a plugin activation (tanh, exactly) stops the child at a chosen batch
and waits there until it is killed, so no test depends on timing."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nnframe
import nnframe.registry

BATCH = 37  # a size no other forward pass uses: the blocking plugin counts training batches
PLUGIN = """
import os
import time

import numpy as np

import nnframe
import nnframe.registry


class BlockingTanh(nnframe.Activation):
    '''tanh; with $BLOCK_AT set, the BLOCK_AT-th training batch writes $BLOCK_SIGNAL and
    waits there forever.'''

    name = "blocking_tanh"
    batches = 0

    def forward(self, z):
        if len(z) == {batch} and os.environ.get("BLOCK_AT"):
            type(self).batches += 1
            if type(self).batches == int(os.environ["BLOCK_AT"]):
                with open(os.environ["BLOCK_SIGNAL"], "w") as f:
                    f.write("blocked")
                while True:
                    time.sleep(1)
        return np.tanh(z)

    def backward(self, z, a, grad):
        return grad * (1 - a * a)


@nnframe.hookimpl
def register_activations(register):
    register(BlockingTanh())
"""


@pytest.fixture
def site(_site, monkeypatch):
    """The plugin's directory, also on this process's path (to load the models here)."""
    monkeypatch.syspath_prepend(str(_site))
    importlib.invalidate_caches()
    nnframe.registry._registry = None
    yield _site
    sys.modules.pop("nnframe_blocking", None)
    nnframe.registry._registry = None


@pytest.fixture(scope="module")
def _site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "nnframe_blocking.py").write_text(textwrap.dedent(PLUGIN).replace("{batch}",
                                                                              str(BATCH)))
    info = site / "nnframe_blocking-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnframe-blocking\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text("[nnframe]\nblocking = nnframe_blocking\n")
    return site


def command(out, *extra):
    return [sys.executable, "-m", "nnframe", "train", "--sample", "--subset", "600",
            "--hidden", "24", "--activation", "blocking_tanh", "--batch-size", str(BATCH),
            "--epochs", "4", "--no-plot", "--optimizer", "adam", "--learning-rate", "0.01",
            "--schedule", "cosine", "--out", str(out), *extra]


def environment(site, **extra):
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run(args, env, timeout=600):
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def wait_for(path, process, limit=600.0):
    """Poll until ``path`` exists (the child blocked where asked), failing if it exits."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the child never reached the blocking batch"
        time.sleep(0.05)


def assert_same_model(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert a.history == b.history and a.epochs == b.epochs


@pytest.mark.parametrize("extra, rows", [
    ([], 600),
    (["--validation-split", "0.2", "--early-stopping", "1"], 480),
    (["--dropout", "0.2,0.5"], 600),
], ids=["plain", "early-stopping", "dropout"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, site, extra, rows):
    full_batches = rows // BATCH  # per epoch (the last, smaller one is not counted)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run(command(whole, *extra), environment(site))
    signal_file = tmp_path / "blocked"
    child = subprocess.Popen(command(killed, *extra), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env=environment(site, BLOCK_AT=str(2 * full_batches + 5),
                                             BLOCK_SIGNAL=str(signal_file)))
    try:
        wait_for(signal_file, child)  # epoch 3, batch 5: in the middle of an epoch
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "model.pkl").exists()
    checkpoint = nnframe.load(killed / "checkpoint.pkl")
    assert checkpoint.epochs == 2  # written atomically after epochs 1 and 2
    result = run([sys.executable, "-m", "nnframe", "train", "--resume",
                  str(killed / "checkpoint.pkl")], environment(site))
    assert "resuming" in result.stdout and "after epoch 2 of 4" in result.stdout
    assert_same_model(nnframe.load(killed / "model.pkl"), nnframe.load(whole / "model.pkl"))
    assert_same_model(nnframe.load(killed / "checkpoint.pkl"),
                      nnframe.load(whole / "checkpoint.pkl"))
    if "--early-stopping" in extra:
        assert_same_model(nnframe.load(killed / "best.pkl"), nnframe.load(whole / "best.pkl"))
    history = json.loads((killed / "history.json").read_text())
    assert history == json.loads((whole / "history.json").read_text()) | {
        "settings": history["settings"]}
    assert len(history["loss"]) == nnframe.load(whole / "model.pkl").epochs


def test_resume_runs_on_to_a_new_epochs_total(tmp_path, site):
    two = tmp_path / "two"
    run([*command(two), "--epochs", "2"], environment(site))  # the last --epochs counts
    assert nnframe.load(two / "model.pkl").epochs == 2
    # The schedule was started for 2 epochs, so the weights differ from a 4-epoch run's; what
    # matters is that it continues: 2 more epochs, with the saved settings.
    result = run([sys.executable, "-m", "nnframe", "train", "--resume",
                  str(two / "checkpoint.pkl"), "--epochs", "4"], environment(site))
    assert "after epoch 2 of 4" in result.stdout
    resumed = nnframe.load(two / "model.pkl")
    assert resumed.epochs == 4 and resumed.activation_function[1] == "blocking_tanh"


@pytest.mark.parametrize("args, needle", [
    (["--hidden", "8"], "so --hidden cannot be given; drop it"),
    (["--learning-rate", "1", "--seed", "3"], "so --learning-rate, --seed cannot be given"),
])
def test_resume_refuses_to_change_saved_settings(tmp_path, site, args, needle):
    run([*command(tmp_path), "--epochs", "1"], environment(site))
    result = subprocess.run([sys.executable, "-m", "nnframe", "train", "--resume",
                             str(tmp_path / "checkpoint.pkl"), *args], capture_output=True,
                            text=True, env=environment(site), timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr


def test_resume_needs_a_checkpoint_of_nnframe_train(tmp_path):
    net = nnframe.NeuralNetwork(3, [784, 4, 10], [None, "relu", "softmax"], "cross_entropy")
    net.save(tmp_path / "plain.pkl")
    result = subprocess.run([sys.executable, "-m", "nnframe", "train", "--resume",
                             str(tmp_path / "plain.pkl")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "holds no `nnframe train` settings" in result.stderr
