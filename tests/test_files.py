"""The one file-reading path (regular files only, size-capped) and the one writing path
(atomic, umask-respecting, short temporary names)."""

import os
import stat
import threading

import numpy as np
import pytest

import nnframe
from nnframe import ModelFileError, _files


def _net():
    return nnframe.NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", seed=0)


@pytest.fixture
def umask():
    def set_umask(value):
        previous = os.umask(value)
        restore.append(previous)
    restore = []
    yield set_umask
    if restore:
        os.umask(restore[0])


@pytest.mark.parametrize("mask", [0o077, 0o022, 0o027])
def test_new_model_file_gets_0666_less_umask(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "m.pkl"
    _net().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_replacing_keeps_the_existing_mode(tmp_path, umask):
    path = tmp_path / "m.pkl"
    _net().save(path)
    path.chmod(0o640)
    umask(0o000)
    _net().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_history_and_text_writes_respect_umask(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "history.json"
    _files.atomic_write(target, b"{}", error=nnframe.NNFrameError)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("length", [251, 255])
def test_longest_legal_names_save(tmp_path, length):
    path = tmp_path / ("m" * (length - 4) + ".pkl")
    _net().save(path)
    assert nnframe.load(path).num_nodes == [3, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.pkl"
    _net().save(path)
    before = path.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(ModelFileError, match="unchanged"):
        _net().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pkl"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_symlink_to_a_device_is_refused_without_reading(tmp_path, device):
    link = tmp_path / "model.pkl"
    link.symlink_to(device)
    with pytest.raises(ModelFileError, match="character device"):
        nnframe.load(link)


def _with_timeout(fn, seconds=10):
    result = {}

    def run():
        try:
            fn()
        except BaseException as exc:
            result["exc"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked on a special file"
    return result.get("exc")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pkl"
    os.mkfifo(fifo)
    exc = _with_timeout(lambda: nnframe.load(fifo))
    assert isinstance(exc, ModelFileError) and "FIFO" in str(exc)


def test_symlink_to_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "m.pkl"
    link.symlink_to(fifo)
    exc = _with_timeout(lambda: nnframe.load(link))
    assert isinstance(exc, ModelFileError) and "FIFO" in str(exc)


def test_size_cap_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.pkl"
    with open(path, "wb") as f:
        f.truncate(10_000)  # sparse: costs no disk
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(ModelFileError, match="over the 9,999-byte limit for model files"):
        _files.read_regular(path, limit=9_999, what="model file", error=ModelFileError)
    assert reads == []


def test_read_regular_reads_whole_file(tmp_path):
    path = tmp_path / "f.bin"
    data = np.random.default_rng(0).bytes(100_000)
    path.write_bytes(data)
    assert _files.read_regular(path, limit=100_000, what="file", error=ModelFileError) == data
