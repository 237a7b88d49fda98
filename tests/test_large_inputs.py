"""Inputs larger than memory: an np.memmap or uint8 images are converted one batch (or one
inference block) at a time, never whole; results equal those of converted arrays."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnframe
from nnframe import InputError


def network(seed=0):
    return nnframe.NeuralNetwork(3, [20, 16, 3], [None, "relu", "softmax"], "cross_entropy",
                                 seed=seed)


def data(n=300):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 20), dtype=np.uint8)
    return x, (x[:, 0] > x[:, 1]).astype(int) + (x[:, 2] > 200)


@pytest.mark.parametrize("kind", ["memmap_uint8", "memmap_float64"])
def test_a_memmap_trains_and_predicts_as_the_converted_array(tmp_path, kind):
    x, ids = data()
    dtype = np.uint8 if kind == "memmap_uint8" else np.float64
    mm = np.memmap(tmp_path / "x.dat", dtype=dtype, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    lazy, eager = network(), network()
    lazy.train(32, mm, ids, 2, 0.001, seed=1, validation_data=(mm, ids))
    eager.train(32, x.astype(np.float32), ids, 2, 0.001, seed=1,
                validation_data=(x.astype(np.float32), ids))
    assert all(np.array_equal(p, q) for p, q in zip(lazy.parameters(), eager.parameters(),
                                                    strict=True))
    assert lazy.history == eager.history
    assert np.array_equal(lazy.predict(None, mm), eager.predict(None, x.astype(np.float32)))
    assert lazy.check_accuracy(None, mm, ids) == eager.check_accuracy(None, x, ids)


def test_a_small_memmap_of_another_dtype_is_never_converted_whole(tmp_path):
    from nnframe import _validation

    mm = np.memmap(tmp_path / "x.dat", dtype=np.float64, mode="w+", shape=(50, 4))
    assert _validation.LAZY_BYTES > mm.nbytes
    array, _ = _validation.inputs(mm, 4, np.float32, lazy=True)
    assert isinstance(array, np.memmap) and array.dtype == np.float64


def test_nan_in_a_lazily_checked_memmap_names_its_row(tmp_path, monkeypatch):
    from nnframe import _validation, ops

    monkeypatch.setattr(ops, "INFERENCE_CHUNK", 64)  # so the bad row is in a later block
    x, ids = data()
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float64, mode="w+", shape=x.shape)
    mm[:] = x
    mm[200, 3] = np.nan
    assert isinstance(mm, np.memmap) and _validation.LAZY_BYTES > mm.nbytes
    with pytest.raises(InputError, match="row 200, column 3"):
        network().train(32, mm, ids, 1, 0.01)


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import nnframe

    def anon_mb():
        with open("/proc/self/status") as f:
            line = next(l for l in f if l.startswith("RssAnon:"))
        return int(line.split()[1]) / 1024

    rows = 400_000
    x = np.memmap(sys.argv[1], dtype=np.uint8, mode="w+", shape=(rows, 784))
    x[::997] = 7
    x.flush()
    del x
    x = np.memmap(sys.argv[1], dtype=np.uint8, mode="r", shape=(rows, 784))
    ids = np.arange(rows) % 10
    net = nnframe.NeuralNetwork(3, [784, 16, 10], [None, "relu", "softmax"],
                                "cross_entropy", seed=0)
    import threading
    import time

    before, peak, done = anon_mb(), [0.0], threading.Event()

    def watch():  # the peak, sampled: a whole conversion would be freed by the end
        while not done.is_set():
            peak[0] = max(peak[0], anon_mb())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    net.train(4096, x, ids, 1, 0.001, seed=0)
    net.check_accuracy(None, x, ids)
    done.set()
    watcher.join()
    print(peak[0] - before)
""")


def test_training_and_checking_a_large_uint8_memmap_adds_little_anonymous_memory(tmp_path):
    # 400,000 x 784 uint8 is 314 MB on disk; converted whole to float32 it would add 1.25 GB.
    script = tmp_path / "measure.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "x.dat")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    added = float(result.stdout.strip().splitlines()[-1])
    assert added < 200, f"training and check_accuracy added {added:.0f} MB of anonymous memory"
