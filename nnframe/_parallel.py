"""Row-parallel inference: large batches are split into row blocks, one per core.

NumPy's BLAS already spreads each matrix product over the cores, but the element-wise work
between the products (bias, activation, the finiteness check) runs on one core. For a big
batch (``predict`` over 10,000 images) every block instead runs the whole pass on its own
core, with BLAS limited to one thread meanwhile, so the element-wise work is parallel too.
Small batches (training's) are not split: handing work to a thread costs more than it saves
there, and NumPy's small operations contend for the GIL.

The BLAS thread count is process-wide, so while a split pass runs, BLAS calls from other
threads of the program also use one thread (they stay correct, only slower); the count is
restored when the last split pass ends. The count is read and set through threadpoolctl
(what scikit-learn uses), on the BLAS libraries loaded in the process; where it finds none
it can control, or with ``NNFRAME_NUM_THREADS=1``, everything runs in the calling thread,
with the same results.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from . import _env

MIN_BLOCK_ROWS = 2048  # below this many rows per block, one thread is faster
MAX_THREADS = 8

_pool: dict = {"executor": None, "size": 0}
_blas_limit: dict = {"depth": 0, "previous": None}
_lock = threading.Lock()
_inside = threading.local()
_libraries: dict = {"blas": None}


def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (NumPy's),
    found once: finding them walks the loaded libraries (about 1 ms); using them is a call
    into each library."""
    if _libraries["blas"] is None:
        _libraries["blas"] = ThreadpoolController().select(user_api="blas").lib_controllers
    return _libraries["blas"]


def get_blas_threads() -> int | None:
    """The number of threads NumPy's BLAS may use, or None when no BLAS can be controlled."""
    libraries = _blas_libraries()
    return max(lib.num_threads for lib in libraries) if libraries else None


def set_blas_threads(count: int) -> int | None:
    """Set the number of BLAS threads (process-wide); the previous number, or None (nothing
    changed) when no BLAS can be controlled."""
    previous = get_blas_threads()
    if previous is not None:
        for lib in _blas_libraries():
            lib.set_num_threads(int(count))
    return previous


def can_limit_blas_threads() -> bool:
    return bool(_blas_libraries())


def num_threads() -> int:
    """Threads a large inference pass may use: ``$NNFRAME_NUM_THREADS``, or as many as
    NumPy's BLAS may use (so ``OPENBLAS_NUM_THREADS=1`` or a threadpoolctl limit keeps
    nnframe on one core too), at most the usable cores."""
    configured = _env.positive_int("NNFRAME_NUM_THREADS")
    if configured is not None:
        return min(configured, MAX_THREADS)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, get_blas_threads() or 1, MAX_THREADS))


def blocks_for(rows: int) -> int:
    """How many row blocks a pass over ``rows`` rows is split into (1: not split)."""
    if rows < 2 * MIN_BLOCK_ROWS or not can_limit_blas_threads():
        return 1
    return max(1, min(num_threads(), rows // MIN_BLOCK_ROWS))


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread for as long as any split pass runs (nested and concurrent ones
    included); then the previous thread count again."""
    with _lock:
        if _blas_limit["depth"] == 0:
            _blas_limit["previous"] = set_blas_threads(1)
        _blas_limit["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _blas_limit["depth"] -= 1
            if _blas_limit["depth"] == 0 and _blas_limit["previous"] is not None:
                set_blas_threads(_blas_limit["previous"])


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool with at least ``workers`` threads. A pool is never shut down: another thread
    may hold it and be about to submit (shutting it down made that submit raise). One too
    small is replaced, and the old one is simply dropped; when its last holder lets go it
    is garbage, and ThreadPoolExecutor then wakes its idle threads to exit."""
    with _lock:
        if _pool["executor"] is None or _pool["size"] < workers:
            _pool.update(executor=ThreadPoolExecutor(workers, "nnframe"), size=workers)
        return _pool["executor"]


def _after_fork_in_child() -> None:
    """A forked child inherits the pool but not its threads, and perhaps a BLAS limit set
    by a pass that was running in another thread: start clean."""
    global _lock
    _lock = threading.Lock()
    _pool.update(executor=None, size=0)
    if _blas_limit["depth"] and _blas_limit["previous"] is not None:
        set_blas_threads(_blas_limit["previous"])
    _blas_limit.update(depth=0, previous=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_block(fn, block):
    """Run one block, marking this thread as inside one, so that a split pass started from
    within a block (a plugin calling predict, say) runs in place instead of waiting for
    workers that are all busy."""
    _inside.active = True
    try:
        return fn(block)
    finally:
        _inside.active = False


def map_rows(fn: Callable[[np.ndarray], object], x: np.ndarray) -> list:
    """``[fn(block) for block in row blocks of x]``, the blocks run in parallel.

    Each block runs in a copy of the caller's context (so ``np.errstate`` applies there
    too). Every block has finished when this returns or raises; the first block's error,
    in row order, is the one raised.
    """
    count = blocks_for(len(x))
    if count == 1 or getattr(_inside, "active", False):
        return [fn(x)]
    edges = np.linspace(0, len(x), count + 1).astype(int)
    blocks = [x[start:stop] for start, stop in itertools.pairwise(edges)]
    executor = _executor(count - 1)
    with _one_blas_thread():
        futures = [executor.submit(contextvars.copy_context().run, _run_block, fn, block)
                   for block in blocks[1:]]
        try:
            first = _run_block(fn, blocks[0])
        finally:
            for future in futures:  # never leave a block running on the caller's arrays
                future.exception()
    return [first, *(future.result() for future in futures)]
