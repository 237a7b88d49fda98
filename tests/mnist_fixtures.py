"""Tiny synthetic IDX files and a local HTTP server for the data tests (never the internet)."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import threading

import numpy as np

from nnframe.datasets import IdxFile


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_mnist(n_train=20, n_test=10, seed=0):
    """Return ({key: IdxFile}, {filename.gz: gzipped bytes}) for a fake 4x4-pixel MNIST."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    specs, files = {}, {}
    for key, array in arrays.items():
        raw = idx_bytes(array)
        specs[key] = IdxFile(names[key], hashlib.sha256(raw).hexdigest(), len(raw),
                             tuple(array.shape))
        files[names[key] + ".gz"] = gzip.compress(raw)
    return specs, files


@contextlib.contextmanager
def serve(directory):
    """Serve ``directory`` over HTTP on 127.0.0.1 (an ephemeral port); yield the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
