"""A first run without MNIST and without a network: one short note per command, and a failed
download is not retried by every command (issue 12)."""

import contextlib
import http.server
import threading
import time

import pytest
from test_cli import nnframe_cli

from nnframe import datasets

TIMEOUT = 300  # only turns a hang into a failure


@contextlib.contextmanager
def counting_mirror():
    """A local mirror that has no files: every request is counted and answered 404."""
    hits = []

    class Missing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Missing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hits
    finally:
        server.shutdown()
        server.server_close()


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nnframe: note")]


def test_the_fallback_note_is_short_and_a_failed_download_is_not_retried(tmp_path):
    data_dir = tmp_path / "cache"
    with counting_mirror() as (url, hits):
        env = {"NNFRAME_DATA_DIR": str(data_dir), "NNFRAME_MNIST_MIRRORS": url}
        first = nnframe_cli("train", "--epochs", "1", "--hidden", "8", "--no-plot", "--out",
                            str(tmp_path / "out"), env=env, timeout=TIMEOUT)
        assert first.returncode == 0, first.stderr
        tried = len(hits)
        assert tried >= 1  # the first command did try the mirror
        [note] = notes(first.stderr)
        assert len(note) <= 200 + len(str(data_dir)), note
        assert "urlopen" not in note and "Traceback" not in first.stderr
        assert str(data_dir) in note and "404" in note and "embedded" in note
        assert "nnframe data --fetch" in note

        second = nnframe_cli("evaluate", str(tmp_path / "out" / "model.pkl"), env=env,
                             timeout=TIMEOUT)
        assert second.returncode == 0, second.stderr
        assert len(hits) == tried, second.stderr  # within the hour: not contacted again
        [note] = notes(second.stderr)
        assert "a download failed" in note and "not retried" in note

        fetch = nnframe_cli("data", "--fetch", env=env, timeout=TIMEOUT)
        assert fetch.returncode == 1 and len(hits) > tried  # --fetch always tries


def test_the_failure_is_forgotten_after_the_window(tmp_path, monkeypatch):
    with counting_mirror() as (url, hits):
        monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", url)
        with pytest.warns(datasets.MNISTSampleWarning, match="404"):
            datasets.load_mnist(tmp_path)
        tried = len(hits)
        with pytest.warns(datasets.MNISTSampleWarning, match="a download failed"):
            datasets.load_mnist(tmp_path)
        assert len(hits) == tried
        old = time.time() - datasets.RETRY_AFTER - 60
        (tmp_path / datasets.FAILED_MARKER).write_text(f"{old:.0f}\n")
        with pytest.warns(datasets.MNISTSampleWarning, match="404"):
            datasets.load_mnist(tmp_path)
        assert len(hits) > tried
        tried = len(hits)
        with pytest.warns(datasets.MNISTSampleWarning, match="a download failed"):
            datasets.load_mnist(tmp_path, retry_after=3600)
        with pytest.warns(datasets.MNISTSampleWarning, match="404"):
            datasets.load_mnist(tmp_path, retry_after=0)
        assert len(hits) > tried
