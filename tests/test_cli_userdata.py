"""`nnframe train/evaluate/predict --data FILE`: the .npz, .npy pair and CSV layouts, the
stored --scale, and one clear line for each kind of bad file."""

import json

import numpy as np
import pytest

from nnframe.cli import main
from nnframe.datasets import load_sample
from nnframe.userdata import load_data_file


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Sample digits as uint8 images in the three layouts."""
    d = load_sample()
    folder = tmp_path_factory.mktemp("userdata")
    x = np.round(d.x_train[:1500] * 255).astype(np.uint8)
    xt = np.round(d.x_test[:300] * 255).astype(np.uint8)
    np.savez(folder / "digits.npz", x_train=x.reshape(-1, 28, 28), y_train=d.y_train[:1500],
             x_test=xt.reshape(-1, 28, 28), y_test=d.y_test[:300])
    np.save(folder / "x.npy", x[:400])
    np.save(folder / "y.npy", d.y_train[:400])
    np.save(folder / "xt.npy", xt[:20])
    table = np.column_stack([d.y_train[:400], x[:400]]).astype(int)
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    np.savetxt(folder / "digits.csv", table, fmt="%d", delimiter=",", header=header,
               comments="")
    return folder, d.y_test[:20]


def test_npz_trains_with_max_scaling_and_evaluate_predict_apply_it(files, capsys, tmp_path):
    folder, truth = files
    code, out, err = run(capsys, "train", "--data", str(folder / "digits.npz"), "--scale",
                         "max", "--epochs", "4", "--hidden", "32", "--no-plot", "--out",
                         str(tmp_path))
    assert code == 0, err
    assert "784 -> 32 relu -> 10 softmax" in out
    assert "test accuracy:" in out and "on 300 test samples" in out
    accuracy = json.loads((tmp_path / "history.json").read_text())["test_accuracy"]
    assert accuracy > 70  # unscaled 0-255 inputs at lr 0.1 would not learn this
    code, out, err = run(capsys, "evaluate", str(tmp_path / "model.pkl"), "--data",
                         str(folder / "digits.npz"))
    assert code == 0, err
    assert f"accuracy: {accuracy:.2f}%" in out  # the same scaling as in training
    code, out, err = run(capsys, "predict", str(tmp_path / "model.pkl"), "--data",
                         str(folder / "xt.npy"))
    assert code == 0, err
    predicted = np.array([int(line) for line in out.split()])
    assert len(predicted) == 20 and (predicted == truth).mean() >= 0.6


def test_npy_pair_and_resume_with_the_same_data(files, capsys, tmp_path):
    folder, _ = files
    pair = f"{folder / 'x.npy'},{folder / 'y.npy'}"
    code, out, err = run(capsys, "train", "--data", pair, "--scale", "max", "--epochs", "1",
                         "--hidden", "16", "--no-plot", "--out", str(tmp_path))
    assert code == 0, err
    assert "has no test part" in out  # 10% held out automatically
    assert "validation accuracy:" in out and "not a test accuracy" in out
    assert "test accuracy:" not in out
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "checkpoint.pkl"),
                         "--epochs", "2", "--out", str(tmp_path))
    assert code == 0, err
    assert "resuming" in out and "after epoch 1 of 2" in out
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "checkpoint.pkl"),
                         "--epochs", "3", "--sample")
    assert code == 1 and "was trained on --data" in err and "without --data-dir and --sample" in err


def test_early_stopping_watches_the_automatic_hold_out_and_never_a_test_part(files, capsys,
                                                                           tmp_path):
    folder, _ = files
    pair = f"{folder / 'x.npy'},{folder / 'y.npy'}"
    code, out, err = run(capsys, "train", "--data", pair, "--scale", "max", "--epochs", "2",
                         "--early-stopping", "1", "--hidden", "16", "--no-plot", "--out",
                         str(tmp_path / "pair"))
    assert code == 0, err
    assert "has no test part" in out and "val_loss" in err
    code, out, err = run(capsys, "train", "--data", str(folder / "digits.npz"),
                         "--early-stopping", "1", "--epochs", "2", "--no-plot", "--out",
                         str(tmp_path / "npz"))
    assert code == 1 and "--early-stopping needs --validation-split F" in err
    assert not (tmp_path / "npz" / "model.pkl").exists()


def test_predict_reads_an_npz_of_inputs_alone(files, capsys, tmp_path):
    folder, _ = files
    code, out, err = run(capsys, "train", "--data", str(folder / "digits.npz"), "--scale",
                         "max", "--epochs", "1", "--hidden", "16", "--no-plot", "--out",
                         str(tmp_path))
    assert code == 0, err
    x = np.load(folder / "x.npy")[:7]
    for key in ("x_test", "x_train"):
        np.savez(tmp_path / f"{key}.npz", **{key: x})
        code, out, err = run(capsys, "predict", str(tmp_path / "model.pkl"), "--data",
                             str(tmp_path / f"{key}.npz"))
        assert code == 0, err
        assert len(out.split()) == 7
    np.savez(tmp_path / "none.npz", labels=np.arange(3))
    code, out, err = run(capsys, "predict", str(tmp_path / "model.pkl"), "--data",
                         str(tmp_path / "none.npz"))
    assert code == 1 and "has no x_test or x_train (its arrays: labels)" in err


def test_unscaled_pixels_get_a_note_naming_scale(files, capsys, tmp_path):
    folder, _ = files
    pair = f"{folder / 'x.npy'},{folder / 'y.npy'}"
    for scale, noted in (("none", True), ("max", False)):
        code, out, err = run(capsys, "train", "--data", pair, "--scale", scale, "--epochs",
                             "1", "--hidden", "8", "--no-plot", "--out", str(tmp_path / scale))
        assert code == 0, err
        assert ("note: the inputs reach 255 and are not scaled" in err) == noted
        assert "training samples held out" in out and "each class in its share" in out


def test_csv_with_header_trains_on_a_validation_split(files, capsys, tmp_path):
    folder, _ = files
    data = load_data_file(str(folder / "digits.csv"))
    assert data.x_train.shape == (400, 784) and data.x_test is None
    code, out, err = run(capsys, "train", "--data", str(folder / "digits.csv"), "--scale",
                         "standard", "--validation-split", "0.2", "--epochs", "1", "--hidden",
                         "16", "--no-plot", "--out", str(tmp_path))
    assert code == 0, err
    assert "on the 80 held-out samples" in out
    history = json.loads((tmp_path / "history.json").read_text())
    assert "validation_accuracy" in history and "test_accuracy" not in history


def test_classes_and_width_come_from_the_data(capsys, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "three.csv"
    rows = np.column_stack([np.arange(60) % 3, rng.random((60, 5))])
    np.savetxt(path, rows, delimiter=",")
    code, out, err = run(capsys, "train", "--data", str(path), "--epochs", "1", "--hidden",
                         "8", "--no-plot", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "5 -> 8 relu -> 3 softmax" in out


BAD = {
    "missing.npz": ("npz", {"x": np.zeros((3, 2))}, "has no x_train or y_train (its arrays: x)"),
    "lengths.npz": ("npz", {"x_train": np.zeros((3, 2)), "y_train": np.zeros(2)},
                    "has 2 labels for 3 samples"),
    "negative.npz": ("npz", {"x_train": np.zeros((3, 2)), "y_train": np.array([0, -1, 1])},
                     "negative label -1"),
    "fraction.npz": ("npz", {"x_train": np.zeros((3, 2)), "y_train": np.array([0, 0.5, 1])},
                     "has the label 0.5"),
    "nan.npz": ("npz", {"x_train": np.array([[0, np.nan]] * 2), "y_train": np.array([0, 1])},
                "non-finite value"),
    "objects.npz": ("npz", {"x_train": np.array([[1, "a"]], dtype=object),
                            "y_train": np.array([0])}, "Python objects"),
    "ragged.csv": ("csv", "label,a,b\n1,2,3\n0,4\n", "line 3 has 2 columns"),
    "cell.csv": ("csv", "1,2,3\n0,x,5\n", "line 2, column 2 is 'x', not a number"),
    "empty.csv": ("csv", "", "is empty"),
    "header.csv": ("csv", "label,a\n", "no data rows"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_is_one_line_and_exit_1(name, capsys, tmp_path):
    kind, content, expected = BAD[name]
    path = tmp_path / name
    if kind == "npz":
        np.savez(path, **content)
    else:
        path.write_text(content)
    code, _, err = run(capsys, "train", "--data", str(path), "--epochs", "1", "--no-plot",
                         "--out", str(tmp_path / "run"))
    assert code == 1
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_data_excludes_the_mnist_options_and_scale_needs_data(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data", "a.npz", "--sample")
    assert code == 1 and "give one of them" in err
    code, _, err = run(capsys, "train", "--sample", "--scale", "max")
    assert code == 1 and "--scale is for your own data" in err


def test_evaluate_refuses_data_of_another_width(files, capsys, tmp_path):
    path = tmp_path / "narrow.npz"
    np.savez(path, x_train=np.zeros((4, 3)), y_train=np.array([0, 1, 0, 1]))
    folder, _ = files
    code, _, err = run(capsys, "train", "--data", f"{folder / 'x.npy'},{folder / 'y.npy'}",
                       "--epochs", "1", "--hidden", "8", "--no-plot", "--out",
                       str(tmp_path / "run"))
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "run" / "model.pkl"), "--data",
                       str(path))
    assert code == 1 and "takes 784 inputs but" in err


def test_a_missing_data_file_is_named_and_nothing_is_written(tmp_path):
    from test_cli import nnframe_cli

    result = nnframe_cli("train", "--data", "my.npz", "--out", str(tmp_path / "run"),
                         cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == ("nnframe: error: no data file at 'my.npz'; check the "
                                     "path.")
    assert list(tmp_path.iterdir()) == []  # --data is read before --out is made
