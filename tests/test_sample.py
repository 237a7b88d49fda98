"""The 5,000-image MNIST sample that ships inside nnframe (no other package needed)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from make_mnist_sample import make
from test_mnist_full import full_mnist_dir

from nnframe import datasets


def test_sample_is_balanced_and_not_sorted_by_class():
    data = datasets.load_sample()
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert np.bincount(data.y_train).tolist() == [400] * 10
    assert np.bincount(data.y_test).tolist() == [100] * 10
    # In file order, like MNIST itself: any prefix holds every digit.
    assert set(data.y_train[:100]) == set(range(10))
    assert set(data.y_test[:100]) == set(range(10))
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() <= data.x_train.max() <= 1


def test_sample_is_package_data_of_nnframe_not_of_another_distribution():
    assert datasets.sample_path().is_relative_to(Path(datasets.__file__).parent)
    code = ("import sys; sys.modules['mlxtend'] = None\n"
            "from nnframe.datasets import load_sample; print(len(load_sample().x_train))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "4000", result.stderr


def test_a_changed_sample_file_is_refused(tmp_path, monkeypatch):
    for path in datasets.SAMPLE_DIR.glob("*.gz"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    import gzip
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setattr(datasets, "SAMPLE_DIR", tmp_path)
    try:
        datasets.load_sample()
    except datasets.DataError as exc:
        assert "SHA-256" in str(exc)
    else:
        raise AssertionError("a changed sample file was used")


def test_shipped_sample_is_exactly_what_the_script_makes_from_full_mnist():
    made = make(Path(full_mnist_dir()))
    shipped = {p.name: p.read_bytes() for p in datasets.SAMPLE_DIR.glob("*.gz")}
    assert made == shipped

