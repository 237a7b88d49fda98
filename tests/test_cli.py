import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SCRIPTS = Path(sysconfig.get_path("scripts"))


def nnframe_cli(*args, env=None, **kwargs):
    """Run the installed `nnframe` console script (the real entry point)."""
    exe = SCRIPTS / "nnframe"
    assert exe.exists(), f"the nnframe console script is not installed at {exe}"
    full_env = {**os.environ, **(env or {})}
    kwargs.setdefault("timeout", 600)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env,
                          **kwargs)


def test_plugins_lists_every_name_with_its_distribution():
    result = nnframe_cli("plugins")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "nnframe 0.1.0" in lines["relu"]
    assert "nnframe-extras" in lines["gelu"]
    assert "nnframe" in lines["cross_entropy"]


def test_python_dash_m_works_too():
    result = subprocess.run([sys.executable, "-m", "nnframe", "plugins"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "softmax" in result.stdout


def test_plugins_shows_failed_plugins(tmp_path):
    site = tmp_path / "site"
    info = site / "nnframe_broken-0.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnframe-broken\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text("[nnframe]\nbroken = nnframe_broken_mod\n")
    (site / "nnframe_broken_mod.py").write_text("raise ImportError('needs scipy')\n")
    result = nnframe_cli("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    assert "Failed to load:" in result.stdout
    assert "nnframe-broken 0.9" in result.stdout and "needs scipy" in result.stdout


def test_bad_option_is_one_line_without_traceback():
    result = nnframe_cli("plugins", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--help"]])
def test_help(args):
    result = nnframe_cli(*args)
    assert result.returncode == 0 and "usage:" in result.stdout


# -- the main job and the other commands --------------------------------------------------
import json  # noqa: E402

import numpy as np  # noqa: E402

OFFLINE = {"NNFRAME_MNIST_MIRRORS": "http://127.0.0.1:9/"}


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory):
    """A model trained by `nnframe train` on the embedded sample (a few seconds)."""
    out = tmp_path_factory.mktemp("run")
    result = nnframe_cli("train", "--sample", "--epochs", "8", "--hidden", "64", "--out",
                         str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_model_history_and_plot_and_reports_accuracy(sample_model):
    out, result = sample_model
    assert "test accuracy:" in result.stdout
    accuracy = float(result.stdout.split("test accuracy:")[1].split("%")[0])
    history = json.loads((out / "history.json").read_text())
    assert history["test_accuracy"] == pytest.approx(accuracy, abs=0.01)
    assert accuracy > 80  # 8 epochs on 4,000 real MNIST digits
    assert len(history["loss"]) == 8 and len(history["val_accuracy"]) == 8
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("model.pkl", "history.json", "history.png"):
        assert str(out / name) in result.stdout
    assert result.stderr.count("epoch") == 8  # one progress line per epoch off a terminal


def test_train_falls_back_to_the_sample_with_a_one_line_notice(tmp_path):
    # Only the default location falls back ($NNFRAME_DATA_DIR here); see test_cli_options
    # for an explicit --data-dir, which never does.
    result = nnframe_cli("train", "--epochs", "1", "--hidden", "16", "--out", str(tmp_path),
                         "--no-plot", env={**OFFLINE,
                                           "NNFRAME_DATA_DIR": str(tmp_path / "nothing")})
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("nnframe: note")]
    assert len(notes) == 1 and "embedded MNIST sample" in notes[0]
    assert "nnframe data --fetch" in notes[0]


def test_train_accepts_plugin_activations_and_per_layer_names(tmp_path):
    result = nnframe_cli("train", "--sample", "--subset", "500", "--epochs", "1", "--hidden",
                         "32,16", "--activation", "gelu,leaky_relu", "--no-plot", "--out",
                         str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "784 -> 32 gelu -> 16 leaky_relu -> 10 softmax" in result.stdout


@pytest.mark.parametrize("args, needle", [
    (["train", "--activation", "rleu"], "Did you mean 'relu'"),
    (["train", "--cost", "nope"], "Unknown cost 'nope'"),
    (["train", "--hidden", "12,x"], "--hidden takes comma-separated sizes"),
    (["train", "--hidden", "8,8", "--activation", "relu,relu,relu"], "3 names for 2 hidden"),
    (["train", "--learning-rate", "-1", "--sample"], "--learning-rate must be a positive"),
    (["train", "--epochs", "many"], "invalid int value"),
    (["evaluate", "missing.pkl"], "no model file at 'missing.pkl'"),
    (["evaluate", "model.txt"], "does not end in .pkl"),
    (["predict", "missing.pkl", "x.png"], "no model file"),
    (["frobnicate"], "invalid choice"),
])
def test_user_mistakes_are_one_line_on_stderr_without_traceback(tmp_path, args, needle):
    result = nnframe_cli(*args, "--out", str(tmp_path)) if args[0] == "train" \
        else nnframe_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_evaluate_prints_accuracy_per_class_and_confusion_matrix(sample_model):
    out, _ = sample_model
    result = nnframe_cli("evaluate", str(out / "model.pkl"), "--sample")
    assert result.returncode == 0, result.stderr
    history = json.loads((out / "history.json").read_text())
    assert f"accuracy: {history['test_accuracy']:.2f}%" in result.stdout
    assert "per-class accuracy" in result.stdout and "confusion matrix" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()[-10:]]
    matrix = np.array([[int(v) for v in row[1:]] for row in rows])
    assert matrix.shape == (10, 10) and matrix.sum() == 1000
    assert 100 * np.trace(matrix) / 1000 == pytest.approx(history["test_accuracy"])


def test_evaluate_refuses_a_malicious_model(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    result = nnframe_cli("evaluate", str(tmp_path / "evil.pkl"), "--sample")
    assert result.returncode == 1 and "refusing to load" in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_predict_reads_png_and_jpeg_digits(sample_model, tmp_path):
    from PIL import Image

    from nnframe.datasets import load_sample

    out, _ = sample_model
    data = load_sample()
    paths, expected = [], []
    for i, fmt in [(0, "PNG"), (150, "JPEG"), (420, "PNG")]:
        digit = (data.x_test[i].reshape(28, 28) * 255).astype(np.uint8)
        # as a person would draw it: dark ink on white paper, larger than 28x28, in colour
        image = Image.fromarray(255 - digit).resize((84, 84)).convert("RGB")
        path = tmp_path / f"digit{i}.{fmt.lower()}"
        image.save(path, fmt)
        paths.append(str(path))
        expected.append(int(data.y_test[i]))
    result = nnframe_cli("predict", str(out / "model.pkl"), *paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert sum(p == e for p, e in zip(predicted, expected, strict=True)) >= 2


def test_predict_names_a_bad_image(sample_model, tmp_path):
    out, _ = sample_model
    (tmp_path / "notes.png").write_text("not an image")
    result = nnframe_cli("predict", str(out / "model.pkl"), str(tmp_path / "notes.png"))
    assert result.returncode == 1 and "is not an image Pillow can read" in result.stderr
    result = nnframe_cli("predict", str(out / "model.pkl"), str(tmp_path / "absent.png"))
    assert result.returncode == 1 and "no PNG or JPEG image file" in result.stderr


def test_data_shows_status_and_fetches_from_a_mirror(tmp_path):
    from mnist_fixtures import serve

    result = nnframe_cli("data", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0
    assert "missing" in result.stdout and "nnframe data --fetch" in result.stdout
    assert "embedded sample:" in result.stdout
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    with serve(tmp_path / "server") as url:
        result = nnframe_cli("data", "--fetch", "--data-dir", str(tmp_path / "d"),
                             env={"NNFRAME_MNIST_MIRRORS": url})
    assert result.returncode == 1 and "could not download" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "plugins", "data"])
def test_every_command_has_help(command):
    result = nnframe_cli(command, "--help")
    assert result.returncode == 0 and "usage: nnframe " + command in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_data_fetch_gives_up_on_a_trickling_mirror_in_one_line(tmp_path):
    from test_datasets import misbehaving_server

    with misbehaving_server("trickle") as url:
        result = nnframe_cli("data", "--fetch", "--deadline", "1", "--data-dir",
                             str(tmp_path / "d"), env={"NNFRAME_MNIST_MIRRORS": url},
                             timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "1 s deadline" in lines[0], result.stderr


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan"])
def test_data_refuses_a_nonsense_deadline(value):
    result = nnframe_cli("data", "--deadline", value)
    assert result.returncode == 2 and "positive number of seconds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
