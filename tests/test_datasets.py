import gzip
import warnings

import numpy as np
import pytest
from mnist_fixtures import serve, tiny_mnist

from nnframe import datasets
from nnframe.datasets import MNISTSampleWarning, load_mnist
from nnframe.errors import DataError

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: connection refused at once


@pytest.fixture
def tiny(monkeypatch):
    specs, files = tiny_mnist()
    monkeypatch.setattr(datasets, "FILES", specs)
    return specs, files


def write(directory, files, gzipped=True):
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if gzipped:
            (directory / name).write_bytes(data)
        else:
            (directory / name[:-3]).write_bytes(gzip.decompress(data))


@pytest.mark.parametrize("gzipped", [True, False])
def test_reads_verified_idx_files_gzipped_or_raw(tmp_path, tiny, gzipped):
    _, files = tiny
    write(tmp_path, files, gzipped)
    data = load_mnist(tmp_path, download_missing=False, fallback=False)
    assert data.x_train.shape == (20, 784) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.y_train.dtype == np.int64 and data.y_test.shape == (10,)
    raw = gzip.decompress(files["train-images-idx3-ubyte.gz"])
    expected = np.frombuffer(raw, np.uint8, offset=16).reshape(20, 784) / 255
    np.testing.assert_allclose(data.x_train, expected, rtol=1e-6)
    assert str(tmp_path) in data.source


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NNFRAME_DATA_DIR", raising=False)
    assert datasets.resolve_data_dir() == tmp_path / "cache" / "nnframe" / "mnist"
    monkeypatch.setenv("NNFRAME_DATA_DIR", str(tmp_path / "env"))
    assert datasets.resolve_data_dir() == tmp_path / "env"
    assert datasets.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-10], "truncated"),
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "SHA-256"),
    (lambda raw: raw + b"\x00" * 10_000_000, "gzip bomb"),
])
def test_truncated_tampered_and_oversized_files_are_refused(tmp_path, tiny, damage, message):
    _, files = tiny
    write(tmp_path, files)
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(gzip.compress(damage(gzip.decompress(files[name]))))
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path, download_missing=False)  # never falls back on a bad file


def test_corrupt_gzip_stream_is_refused(tmp_path, tiny):
    _, files = tiny
    write(tmp_path, files)
    name = "t10k-images-idx3-ubyte.gz"
    (tmp_path / name).write_bytes(files[name][: len(files[name]) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_mnist(tmp_path, download_missing=False)


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    import resource

    spec = datasets.IdxFile("bomb", "0" * 64, 1000, (1000,))
    path = tmp_path / "bomb.gz"
    member = gzip.compress(b"\x00" * (1 << 20), compresslevel=9)
    path.write_bytes(member * 2048)  # 2 GiB of zeros in a file of about 2 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="gzip bomb"):
        datasets.read_idx(path, spec)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000


def test_downloads_from_the_first_mirror_that_serves_a_verified_file(tmp_path, tiny):
    _, files = tiny
    good, bad = tmp_path / "good", tmp_path / "bad"
    write(good, files)
    tampered = {n: gzip.compress(gzip.decompress(d)[:-1] + b"\x07") for n, d in files.items()}
    write(bad, tampered)
    target = tmp_path / "cache"
    with serve(good) as good_url, serve(bad) as bad_url:
        mirrors = [UNREACHABLE, bad_url + "/", good_url + "/missing/", good_url + "/"]
        datasets.download(target, mirror_urls=mirrors)
    assert sorted(p.name for p in target.iterdir()) == sorted(files)  # no temporaries left
    for name, data in files.items():
        assert (target / name).read_bytes() == data
    assert load_mnist(target, download_missing=False).x_test.shape == (10, 784)


def test_load_mnist_downloads_missing_files(tmp_path, tiny, monkeypatch):
    _, files = tiny
    write(tmp_path / "server", files)
    with serve(tmp_path / "server") as url:
        monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", f"{UNREACHABLE},{url}")
        data = load_mnist(tmp_path / "cache", fallback=False)
    assert data.x_train.shape == (20, 784)


def test_download_that_fails_everywhere_names_every_attempt(tmp_path, tiny):
    with pytest.raises(DataError) as info:
        datasets.download(tmp_path, mirror_urls=[UNREACHABLE, "http://127.0.0.1:9/other/"])
    assert UNREACHABLE in str(info.value) and "other" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_network_and_no_copy_falls_back_to_the_embedded_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", UNREACHABLE)
    with pytest.warns(MNISTSampleWarning, match="embedded MNIST sample.*nnframe data --fetch"):
        data = load_mnist(tmp_path / "empty")
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert data.x_train.dtype == np.float32 and data.x_train.max() == 1.0
    assert "embedded MNIST sample" in data.source


def test_fallback_can_be_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", UNREACHABLE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="full MNIST is not available"):
            load_mnist(tmp_path, fallback=False)


def test_status_reports_each_file(tmp_path, tiny):
    _, files = tiny
    write(tmp_path, {k: v for k, v in files.items() if "t10k" not in k})
    report = datasets.status(tmp_path)
    assert report["train-images-idx3-ubyte"].startswith("ok")
    assert report["t10k-labels-idx1-ubyte"] == "missing"


def test_the_checksums_in_the_code_are_the_published_ones():
    # Guard against a typo in the constants: these are the well-known MNIST digests.
    assert datasets.FILES["train_images"].sha256.startswith("ba891046e650")
    assert datasets.FILES["test_labels"].sha256.startswith("ff7bcfd416de")
    assert sum(spec.size for spec in datasets.FILES.values()) == 54950048


# -- slow and stalled mirrors (issue 11, item 15) ------------------------------------------
import contextlib  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402

DEADLINE = 1.0  # seconds per file per mirror in these tests; the default is 300


@contextlib.contextmanager
def misbehaving_server(mode):
    """A server on 127.0.0.1 that answers every GET badly, in a bounded way.

    ``trickle``: headers for 1,000 bytes, then one byte every 0.2 s (at most 150 bytes).
    ``stall``: headers, then nothing until the test ends (at most 30 s).
    ``silent``: accepts the connection and never answers (at most 30 s).
    """
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            try:
                if mode == "silent":
                    done.wait(30)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.flush()
                if mode == "stall":
                    done.wait(30)
                    return
                for _ in range(150):
                    if done.wait(0.2):
                        return
                    self.wfile.write(b"\x1f")
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up: that is the point

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        done.set()
        server.shutdown()
        server.server_close()
        thread.join(35)


@pytest.mark.parametrize("mode", ["trickle", "stall", "silent"])
def test_a_slow_or_stalled_mirror_fails_at_its_deadline(tmp_path, tiny, mode):
    with misbehaving_server(mode) as url, pytest.raises(DataError) as info:
        datasets.download(tmp_path, mirror_urls=[url], deadline=DEADLINE)
    message = str(info.value)
    assert url in message and "1 s deadline" in message, message
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


def test_after_a_slow_mirror_the_next_one_is_tried(tmp_path, tiny):
    _, files = tiny
    write(tmp_path / "server", files)
    with misbehaving_server("trickle") as slow, serve(tmp_path / "server") as good:
        datasets.download(tmp_path / "cache", mirror_urls=[slow, good], deadline=DEADLINE)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(files)


def test_the_final_error_names_each_mirror_and_why(tmp_path, tiny):
    with misbehaving_server("trickle") as slow, misbehaving_server("stall") as stalled, \
            pytest.raises(DataError) as info:
        datasets.download(tmp_path, mirror_urls=[slow, UNREACHABLE, stalled],
                          deadline=DEADLINE)
    parts = str(info.value).split("; ")
    assert slow in parts[0] and "deadline" in parts[0] and "bytes received" in parts[0]
    assert UNREACHABLE in parts[1] and "refused" in parts[1].lower()
    assert stalled in parts[2] and "deadline" in parts[2]


def test_progress_is_drawn_while_a_slow_mirror_trickles(tmp_path, tiny, capsys):
    with misbehaving_server("trickle") as url, pytest.raises(DataError):
        datasets.download(tmp_path, mirror_urls=[url], deadline=DEADLINE, progress=True)
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "MiB" in err
    assert err.endswith("\n")  # the error that follows starts on a line of its own


@pytest.mark.parametrize("deadline", [0, -1, float("nan")])
def test_a_nonsense_deadline_is_refused(tmp_path, deadline):
    with pytest.raises(ValueError, match="deadline"):
        datasets.download(tmp_path, mirror_urls=[UNREACHABLE], deadline=deadline)
