"""MNIST: find it, verify it, download it, or fall back to a real embedded sample.

Where the data lives: the ``data_dir`` argument, else ``$NNFRAME_DATA_DIR``, else a per-user
cache (``$XDG_CACHE_HOME/nnframe/mnist``, by default ``~/.cache/nnframe/mnist``). Every file
is checked against the SHA-256 of its uncompressed contents before use; a truncated, corrupt
or tampered file is reported and never used, and decompression stops at the known size, so a
gzip bomb cannot fill memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataError

DATA_DIR_ENV = "NNFRAME_DATA_DIR"
MIRRORS_ENV = "NNFRAME_MNIST_MIRRORS"  # comma-separated base URLs, tried in order


@dataclass(frozen=True)
class IdxFile:
    name: str  # without .gz
    sha256: str  # of the uncompressed contents
    size: int  # uncompressed bytes
    shape: tuple[int, ...]


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte",
                            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                            47040016, (60000, 28, 28)),
    "train_labels": IdxFile("train-labels-idx1-ubyte",
                            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                            60008, (60000,)),
    "test_images": IdxFile("t10k-images-idx3-ubyte",
                           "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                           7840016, (10000, 28, 28)),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte",
                           "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                           10008, (10000,)),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_LIMIT = 64 * 2**20  # no MNIST .gz is near this; a larger answer is not MNIST
FAILED_MARKER = ".download-failed"  # in the data directory: when the last download failed
RETRY_AFTER = 3600.0  # seconds during which load_mnist does not retry a failed download

# A 5,000-image MNIST sample that ships inside nnframe, as the same four gzipped IDX files
# (800 KB): the first 400 images of each digit in the training file and the first 100 of each
# digit in the test file, in file order (tests/make_mnist_sample.py makes it from full MNIST).
SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "mnist_sample"
SAMPLE_FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte",
                            "1edb0376ad770d05deea6c696693f5882c993d72d1a2f8ea7f0e3f057f1cfb2f",
                            3136016, (4000, 28, 28)),
    "train_labels": IdxFile("train-labels-idx1-ubyte",
                            "eff120e01f651c4673776d501e2c9cb8986959930f915af888eeda19e96879f6",
                            4008, (4000,)),
    "test_images": IdxFile("t10k-images-idx3-ubyte",
                           "b97c8bfeb834d8e7999eaa2d69239abe06653dc09c1e5d7eb0c974c5965bc6a9",
                           784016, (1000, 28, 28)),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte",
                           "41cf2f530031915ba9fbb241407c369dba1acd7515053edff48cebeee8b260f4",
                           1008, (1000,)),
}
SAMPLE_SOURCE = "the embedded MNIST sample (4,000 training and 1,000 test images)"


class MNIST(NamedTuple):
    """MNIST as arrays: inputs are float32 in [0, 1], one 784-pixel row per image; labels
    are int64 class ids 0-9.

    Attributes:
        x_train: The training images, `(n, 784)`.
        y_train: Their digits, `(n,)`.
        x_test: The test images, `(m, 784)`.
        y_test: Their digits, `(m,)`.
        source: `"full MNIST in <dir>"`, or a description of the embedded sample.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "full MNIST in <dir>" or a description of the embedded sample


class MNISTSampleWarning(UserWarning):
    """Full MNIST was unavailable, so the embedded 5,000-image sample is used."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnframe" / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else ``$NNFRAME_DATA_DIR``, else the per-user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return default_cache_dir()


def mirrors() -> list[str]:
    configured = os.environ.get(MIRRORS_ENV, "").strip()
    if configured:
        return [m.strip() for m in configured.split(",") if m.strip()]
    return list(MIRRORS)


# -- reading and verifying -----------------------------------------------------------------
def find_file(directory: Path, spec: IdxFile) -> Path | None:
    for candidate in (directory / f"{spec.name}.gz", directory / spec.name):
        if candidate.is_file():
            return candidate
    return None


def _decompressed(path: Path, limit: int) -> bytes:
    """The file's contents, gunzipped if needed, never more than ``limit + 1`` bytes."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            data = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is corrupt or truncated ({exc}); delete it and run "
                        "`nnframe data --fetch`, or copy a good file there.") from None
    return data


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Read one verified IDX file as a uint8 array of ``spec.shape``."""
    data = _decompressed(path, spec.size)
    if len(data) > spec.size:
        raise DataError(f"{path} decompresses to more than the {spec.size:,} bytes of "
                        f"{spec.name}; refusing it (tampered file or gzip bomb). Delete it and "
                        "run `nnframe data --fetch`.")
    digest = hashlib.sha256(data).hexdigest()
    if len(data) < spec.size or digest != spec.sha256:
        what = (f"is truncated ({len(data):,} of {spec.size:,} bytes)" if len(data) < spec.size
                else "fails its SHA-256 check (corrupt or tampered)")
        raise DataError(f"{path} {what}; it was not used. Delete it and run "
                        "`nnframe data --fetch`, or copy a good file there.")
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if magic >> 8 != 0x08 or dims != spec.shape:  # 0x08: unsigned bytes
        raise DataError(f"{path} has an unexpected IDX header {hex(magic)} {dims}.")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(spec.shape)


def status(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """For each MNIST file in the resolved directory: 'ok', 'missing' or the problem."""
    directory = resolve_data_dir(data_dir)
    report = {}
    for spec in FILES.values():
        path = find_file(directory, spec)
        if path is None:
            report[spec.name] = "missing"
            continue
        try:
            read_idx(path, spec)
            report[spec.name] = f"ok ({path.name})"
        except DataError as exc:
            report[spec.name] = str(exc)
    return report


def _load_full(directory: Path, files: dict[str, IdxFile] | None = None,
               source: str | None = None) -> MNIST:
    arrays = {}
    for key, spec in (files or FILES).items():
        path = find_file(directory, spec)
        if path is None:
            raise FileNotFoundError(spec.name)
        arrays[key] = read_idx(path, spec)
    return MNIST(_scale(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
                 _scale(arrays["test_images"]), arrays["test_labels"].astype(np.int64),
                 source or f"full MNIST in {directory}")


def _scale(images: np.ndarray) -> np.ndarray:
    out = images.reshape(len(images), -1).astype(np.float32)
    out *= np.float32(1 / 255)
    return out


# -- downloading ---------------------------------------------------------------------------
DOWNLOAD_DEADLINE = 300.0  # seconds for one file from one mirror, however the server trickles


def download(data_dir: str | os.PathLike | None = None, *,
             mirror_urls: Sequence[str] | None = None, progress: bool = False,
             timeout: float = 15.0, deadline: float = DOWNLOAD_DEADLINE) -> Path:
    """Fetch every missing or bad MNIST file into the data directory.

    Each file is tried from each mirror in turn, verified, then moved into place atomically.

    Args:
        data_dir: The data directory; `None` means `$NNFRAME_DATA_DIR`, else the per-user
            cache (`~/.cache/nnframe/mnist`).
        mirror_urls: Base URLs to try in order; `None` means `$NNFRAME_MNIST_MIRRORS`
            (comma-separated), else the built-in mirrors.
        progress: Draw a progress bar on standard error.
        timeout: Seconds each network wait may take.
        deadline: Seconds one file from one mirror may take as a whole, so a server that
            trickles bytes or stalls after its headers counts as failed and the next mirror
            is tried.

    Returns:
        The data directory.

    Raises:
        DataError: A file could not be downloaded and verified from any mirror.
        ValueError: `deadline` is not positive.
    """
    if not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
    directory = resolve_data_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    urls = list(mirror_urls) if mirror_urls is not None else mirrors()
    for spec in FILES.values():
        existing = find_file(directory, spec)
        if existing is not None:
            try:
                read_idx(existing, spec)
                continue
            except DataError:
                pass  # replaced below by a verified download
        failures, reasons = [], []
        for base in urls:
            url = base.rstrip("/") + f"/{spec.name}.gz"
            try:
                _fetch_verified(url, directory / f"{spec.name}.gz", spec, progress, timeout,
                                deadline)
                if existing is not None and existing.suffix != ".gz":
                    existing.unlink()
                break
            except (OSError, DataError, ValueError, http.client.HTTPException) as exc:
                failures.append(f"{url}: {_short(exc) or type(exc).__name__}")
                reasons.append(_reason(exc))
        else:
            error = DataError(f"could not download {spec.name}.gz from any mirror ("
                              + "; ".join(failures) + f"). Copy the MNIST files into "
                              f"{directory} or set {DATA_DIR_ENV}.")
            error.reason_short = reasons[-1] if reasons else "no mirrors configured"
            raise error
    _clear_failed(directory)
    return directory


class _Watchdog:
    """Shuts down every socket of one download when its deadline passes.

    A read blocked on a server that stalls (before or after its headers) then returns at
    once instead of after each per-read timeout, so the deadline holds however the server
    trickles. Sockets are found through the connection class given to urllib's handlers.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self.sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, done: int) -> None:
        if self.expired or self.left() <= 0:
            self.expired = True
            raise DataError(f"gave up after the {self.seconds:g} s deadline with {done:,} "
                            "bytes received (the server is too slow or stalled)")

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _watch(self, sock) -> None:
        with self._lock:
            self.sockets.append(sock)
            expired = self.expired
        if expired:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def bound_timeouts(self, timeout: float) -> None:
        """Each socket waits at most ``timeout`` and never past the deadline."""
        wait = max(0.01, min(timeout, self.left()))
        with self._lock:
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.settimeout(wait)

    def opener(self) -> urllib.request.OpenerDirector:
        watchdog = self

        def watched(base):
            class Watched(base):
                def connect(self):
                    super().connect()
                    watchdog._watch(self.sock)
            return Watched

        class HTTP(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(watched(http_class), req, **kwargs)

        class HTTPS(urllib.request.HTTPSHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(watched(http_class), req, **kwargs)

        return urllib.request.build_opener(HTTP(), HTTPS())


def _fetch_verified(url: str, target: Path, spec: IdxFile, progress: bool,
                    timeout: float, deadline: float = DOWNLOAD_DEADLINE) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    drawn = False
    done = 0
    try:
        with _Watchdog(deadline) as watchdog:
            try:
                with os.fdopen(fd, "wb") as out, \
                        watchdog.opener().open(url, timeout=min(timeout, deadline)) as resp:
                    total = int(resp.headers.get("Content-Length") or 0)
                    if total > DOWNLOAD_LIMIT:
                        raise DataError(f"the server offers {total:,} bytes, too many for MNIST")
                    if progress:
                        _draw(spec.name, done, total)
                        drawn = True
                    while True:
                        watchdog.check(done)
                        watchdog.bound_timeouts(timeout)
                        chunk = resp.read1(1 << 16)
                        if not chunk:
                            break
                        done += len(chunk)
                        if done > DOWNLOAD_LIMIT:
                            raise DataError("the download exceeds any MNIST file's size")
                        out.write(chunk)
                        if progress:
                            _draw(spec.name, done, total)
                    watchdog.check(done)  # a shut-down socket reads as the end: not success
                    out.flush()
                    os.fsync(out.fileno())
            except DataError:
                raise
            except (OSError, ValueError, http.client.HTTPException) as exc:
                watchdog.check(done)  # the deadline, not the error it caused, is the reason
                raise exc from None
        read_idx(Path(tmp), spec)  # verify before it takes the real name
        os.replace(tmp, target)
    finally:
        if drawn:
            print(file=sys.stderr, flush=True)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _draw(name: str, done: int, total: int) -> None:
    if total:
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        text = f"\r{name:<24} [{bar}] {done / 2**20:5.1f}/{total / 2**20:.1f} MiB"
    else:
        text = f"\r{name:<24} {done / 2**20:5.1f} MiB"
    print(text, end="", file=sys.stderr, flush=True)


# -- the embedded sample -------------------------------------------------------------------
def sample_path() -> Path:
    """The directory of the embedded sample (inside the installed nnframe package)."""
    return SAMPLE_DIR


def load_sample() -> MNIST:
    """The embedded 5,000-image MNIST sample: 4,000 training and 1,000 test images, 400 and
    100 of each digit, verified like full MNIST."""
    try:
        return _load_full(SAMPLE_DIR, SAMPLE_FILES, SAMPLE_SOURCE)
    except FileNotFoundError as exc:
        raise DataError(f"the embedded MNIST sample is incomplete: {exc} is missing from "
                        f"{SAMPLE_DIR}; reinstall nnframe.") from None


# -- the one entry point -------------------------------------------------------------------
def load_mnist(data_dir: str | os.PathLike | None = None, *, download_missing: bool = True,
               fallback: bool = True, progress: bool = False,
               retry_after: float = RETRY_AFTER) -> MNIST:
    """Load MNIST: 60,000 training and 10,000 test images, verified.

    A corrupt local file is always an error, never a fallback. A failed download is
    remembered in the data directory (the file `FAILED_MARKER`, with the time): for
    `retry_after` seconds later calls do not try the network again, so the commands of a
    first, offline run do not each wait on the mirrors; [download][nnframe.datasets.download]
    (`nnframe data --fetch`) always tries, and clears the mark on success.

    Args:
        data_dir: The data directory; `None` means `$NNFRAME_DATA_DIR`, else the per-user
            cache (`~/.cache/nnframe/mnist`).
        download_missing: Download missing files into the data directory.
        fallback: When full MNIST is still unavailable, return the embedded 5,000-image
            sample (4,000 training and 1,000 test images) with an `MNISTSampleWarning`
            instead of raising.
        progress: Show download progress on standard error.
        retry_after: Seconds after a failed download during which no new attempt is made
            (an hour by default).

    Returns:
        The images and labels, and where they came from (`source`).

    Raises:
        DataError: A file is corrupt, or full MNIST is unavailable and `fallback` is false.
    """
    directory = resolve_data_dir(data_dir)
    try:
        return _load_full(directory)
    except FileNotFoundError as exc:
        missing = str(exc)
    reason = "downloads are off"
    if download_missing:
        failed_ago = _failed_ago(directory)
        if failed_ago is not None and failed_ago < retry_after:
            reason = (f"a download failed {_ago(failed_ago)} ago; not retried for "
                      f"{_ago(retry_after)}")
        else:
            try:
                download(directory, progress=progress)
                return _load_full(directory)
            except (DataError, OSError) as exc:
                reason = getattr(exc, "reason_short", None) or _short(exc, 80)
                _mark_failed(directory)
    if not fallback:
        raise DataError(f"full MNIST is not available: {missing} is not in {directory} "
                        f"({reason}). Copy the four MNIST files there, set {DATA_DIR_ENV}, "
                        "or run `nnframe data --fetch`.")
    data = load_sample()
    warnings.warn(f"full MNIST not found in {directory} and not downloadable ({reason}); using "
                  "the embedded MNIST sample (5,000 images). `nnframe data --fetch` to get it.",
                  MNISTSampleWarning, stacklevel=2)
    return data



def _failed_ago(directory: Path) -> float | None:
    """Seconds since a download into ``directory`` last failed, or None (never, or unknown)."""
    try:
        when = float((directory / FAILED_MARKER).read_text().strip())
    except (OSError, ValueError):
        return None
    ago = time.time() - when
    return max(ago, 0.0) if ago > -60 else None  # far in the future (clock change): retry


def _mark_failed(directory: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only directory: simply retry next time
        (directory / FAILED_MARKER).write_text(f"{time.time():.3f}\n")


def _clear_failed(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / FAILED_MARKER).unlink(missing_ok=True)


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _reason(exc: BaseException) -> str:
    """A few words on why one download attempt failed: no URL, no wrapper text."""
    import urllib.error

    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        text = getattr(exc, "strerror", None) or str(getattr(exc, "reason", exc))
    else:
        text = str(exc)
    return _short(text or type(exc).__name__, 80)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def stratified_subset(labels: np.ndarray, n: int, seed: int | None = 0) -> np.ndarray:
    """Indices of ``n`` rows drawn at random (``seed``) with each class in its share.

    Each class gets ``n`` times its share of ``labels`` (so about n/10 of each digit in
    MNIST), the remainder going to the classes with the largest fractions; within a class
    the rows are a random choice. The indices come back shuffled. ``n`` at least
    ``len(labels)`` gives every row.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if n >= len(labels):
        return rng.permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / len(labels)
    quota = np.floor(exact).astype(np.int64)
    left = n - int(quota.sum())
    if left:  # largest fractions first, ties broken at random
        order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
        quota[order[:left]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
              for c, q in zip(classes, quota, strict=True)]
    return rng.permutation(np.concatenate(picked))
