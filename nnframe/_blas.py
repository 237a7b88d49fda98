"""Optional shortcuts to the BLAS that NumPy itself ships, for what NumPy lacks: matrix
products that accumulate into an existing array (``gemm`` with ``beta=1``): the weight update
``W -= scale * a.T @ step`` and the biased product ``out += a @ W`` (``out`` pre-filled with
the bias). (The number of BLAS threads is controlled with threadpoolctl, in
`nnframe._parallel`.)

Folding the weight update into the matrix product saves a full pass over every weight
matrix per batch (about 50 ms per MNIST epoch at batch size 64). Everything here is
best-effort: if the library or symbol is not found, if a self-test disagrees with NumPy, if
``NNFRAME_NO_BLAS=1`` is set, or if an array is not C-contiguous, the caller falls back to
plain NumPy, which computes the same update.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from . import _env

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_gemm: dict = {}
_state: dict = {"ready": False}


def _candidates():
    root = os.path.dirname(os.path.dirname(np.__file__))
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        yield from sorted(glob.glob(os.path.join(root, folder, "*openblas*")))


def _load() -> None:
    _state["ready"] = True
    if _env.flag("NNFRAME_NO_BLAS"):
        return
    # Symbol names, with the integer type their library was built with: NumPy's wheels ship
    # a 64-bit-integer OpenBLAS with prefixed symbols; older ones used the "64_" suffix only;
    # a 32-bit-integer build has plain names.
    variants = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("cblas_{}gemm64_", ctypes.c_int64),
                ("scipy_cblas_{}gemm", ctypes.c_int))
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, integer in variants:
            found = {}
            for letter, scalar, dtype in (("s", ctypes.c_float, np.float32),
                                          ("d", ctypes.c_double, np.float64)):
                fn = getattr(lib, pattern.format(letter), None)
                if fn is None:
                    break
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer,
                               integer, scalar, ctypes.c_void_p, integer, ctypes.c_void_p,
                               integer, scalar, ctypes.c_void_p, integer]
                found[np.dtype(dtype)] = fn
            if len(found) == 2 and _self_test(found):
                _gemm.update(found)
                return


def _self_test(found) -> bool:
    rng = np.random.default_rng(0)
    for dtype, fn in found.items():
        a = rng.standard_normal((5, 3)).astype(dtype)
        step = rng.standard_normal((5, 4)).astype(dtype)
        weights = rng.standard_normal((3, 4)).astype(dtype)
        out = rng.standard_normal((5, 4)).astype(dtype)
        updated, accumulated = weights - a.T @ step, out + a @ weights
        _call_accumulate(fn, a, weights, out)
        _call(fn, a, step, weights)
        if not (np.allclose(weights, updated, rtol=1e-5, atol=1e-5)
                and np.allclose(out, accumulated, rtol=1e-5, atol=1e-5)):
            return False
    return True


def _call(fn, a, step, weights, scale: float = 1.0) -> None:
    k, m = a.shape
    n = step.shape[1]
    fn(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, -scale, a.ctypes.data, m, step.ctypes.data, n,
       1.0, weights.ctypes.data, n)


def _call_accumulate(fn, a, weights, out) -> None:
    m, k = a.shape
    n = weights.shape[1]
    fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0, a.ctypes.data, k, weights.ctypes.data, n,
       1.0, out.ctypes.data, n)


def _loaded() -> dict:
    """The library's state, found and self-tested on first use."""
    if not _state["ready"]:
        _load()
    return _state


def _usable(target: np.ndarray, *operands: np.ndarray):
    """The gemm for these arrays, or None: one dtype, C-contiguous, a writeable target."""
    if not (isinstance(target, np.ndarray)
            and all(isinstance(x, np.ndarray) for x in operands)):
        return None  # device arrays (nnframe.backend): the caller's plain product
    _loaded()
    fn = _gemm.get(target.dtype)
    if (fn is None or not (target.flags.c_contiguous and target.flags.writeable)
            or any(x.dtype != target.dtype or not x.flags.c_contiguous for x in operands)):
        return None
    return fn


def gemm_update(a: np.ndarray, step: np.ndarray, weights: np.ndarray,
                scale: float = 1.0) -> bool:
    """``weights -= scale * a.T @ step`` in one BLAS call; False when it cannot (use NumPy)."""
    fn = _usable(weights, a, step)
    if (fn is None or a.shape[0] != step.shape[0]
            or weights.shape != (a.shape[1], step.shape[1])):
        return False
    _call(fn, a, step, weights, scale)
    return True


def gemm_accumulate(a: np.ndarray, weights: np.ndarray, out: np.ndarray) -> bool:
    """``out += a @ weights`` in one BLAS call; False when it cannot (use NumPy)."""
    fn = _usable(out, a, weights)
    if (fn is None or a.shape[1] != weights.shape[0]
            or out.shape != (a.shape[0], weights.shape[1])):
        return False
    _call_accumulate(fn, a, weights, out)
    return True


def gemm_at_b(a: np.ndarray, step: np.ndarray, out: np.ndarray, alpha: float = 1.0,
              beta: float = 0.0) -> bool:
    """``out = alpha * a.T @ step + beta * out`` in one BLAS call (with ``beta=0`` the old
    contents of ``out`` are ignored, NaN included); False when it cannot (use NumPy)."""
    fn = _usable(out, a, step)
    if (fn is None or a.shape[0] != step.shape[0]
            or out.shape != (a.shape[1], step.shape[1])):
        return False
    k, m = a.shape
    n = step.shape[1]
    fn(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, a.ctypes.data, m, step.ctypes.data, n,
       beta, out.ctypes.data, n)
    return True


def available() -> bool:
    _loaded()
    return bool(_gemm)
