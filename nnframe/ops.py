"""The array kernels of training and inference that NumPy has no single call for.

Products fused with their bias or their weight update (through `nnframe._blas`), sums as
BLAS products, class ids and one-hot rows, a fast finiteness check, and the weight
initialisation. The rest of the maths is plain NumPy in the network, the built-in plugins
and the optimizers.

Every function also takes device arrays (CuPy's, see `nnframe.backend`): for them the BLAS
shortcuts are skipped (``a @ W + b``, ``a.sum(axis=1)``), and nothing leaves the device.
"""

from __future__ import annotations

import numpy as np

from . import _blas

INFERENCE_CHUNK = 16384  # rows per forward pass in inference: bounds memory
# Below this many weights the saved pass is worth less than the cost of the ctypes call
# (128 x 10 at batch 256: 12.5 us through ctypes, 8.5 us in NumPy; 256 x 128: 71 vs 83 us).
FUSED_UPDATE_MIN_SIZE = 8192
# From this many outputs on, writing the bias first and letting gemm add the product saves
# more than the call costs (256 x 256 at batch 256: 0.41 against 0.42 ms; 5,000 x 256 on one
# thread: 13.7 against 14.3 ms).
FUSED_AFFINE_MIN_SIZE = 65536


def init_weights(rng: np.random.Generator, fan_in: int, fan_out: int, scheme: str,
                 dtype) -> np.ndarray:
    """He (normal, std sqrt(2/fan_in)) for relu-like units, Glorot (uniform) otherwise."""
    if scheme == "he":
        return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(dtype)


def affine(a: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``a @ W + b``. For large outputs the bias is written first and the product added to
    it by BLAS (saving a pass over the output); otherwise the bias is added in place."""
    if not isinstance(a, np.ndarray):  # a device array: no host BLAS
        z = a @ weights
        z += bias
        return z
    rows, units = len(a), weights.shape[1]
    if rows * units >= FUSED_AFFINE_MIN_SIZE:
        z = np.empty((rows, units), dtype=weights.dtype)
        z[...] = bias
        if _blas.gemm_accumulate(a, weights, z):
            return z
    z = a @ weights
    z += bias
    return z


def weight_step(a: np.ndarray, delta: np.ndarray, learning_rate: float, weights: np.ndarray,
                bias: np.ndarray) -> None:
    """Gradient descent on one layer: ``W -= lr * a.T @ delta`` and ``b -= lr * sum(delta)``.

    With NumPy's own BLAS reachable (see `nnframe._blas`) the update is folded into the
    matrix product (``gemm`` with ``alpha=-lr, beta=1``), so the weights are read and written
    once and no gradient array is allocated; otherwise NumPy computes and subtracts it.
    """
    if weights.size < FUSED_UPDATE_MIN_SIZE or not _blas.gemm_update(a, delta, weights,
                                                                     learning_rate):
        weights -= (a.T @ delta) * learning_rate
    bias -= column_sums(delta) * learning_rate


def row_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=1, keepdims=True)`` as a matrix-vector product: NumPy reduces each short
    row on its own (about 0.05 us a row), BLAS does all rows at once (256 x 10: 1.8 against
    4.7 us)."""
    if not isinstance(a, np.ndarray):
        return a.sum(axis=1, keepdims=True)
    return a @ np.ones((a.shape[1], 1), dtype=a.dtype)


def column_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=0)`` as a vector-matrix product (256 x 256: 4.5 against 9.4 us)."""
    if not isinstance(a, np.ndarray):
        return a.sum(axis=0)
    return np.ones(len(a), dtype=a.dtype) @ a


def argmax_rows(a: np.ndarray) -> np.ndarray:
    """Class id per row: argmax, or a 0.5 threshold for a single output unit."""
    if a.shape[1] == 1:
        return (a[:, 0] >= 0.5).astype(np.int64)
    return a.argmax(axis=1)


def one_hot(ids: np.ndarray, width: int, dtype) -> np.ndarray:
    """One-hot rows of ``width`` columns; a single column holds the 0/1 id itself."""
    if width == 1:
        return ids.astype(dtype).reshape(-1, 1)
    out = np.zeros((len(ids), width), dtype=dtype)
    out[np.arange(len(ids)), ids] = 1
    return out


def all_finite(*arrays: np.ndarray) -> bool:
    """True when every value is finite. A sum is one fast pass with no temporary array; it
    is non-finite whenever any value is (or, rarely, when finite values overflow it, which
    the exact check then settles)."""
    return all(sum_is_finite(x) or bool(np.isfinite(x).all()) for x in arrays)


def sum_is_finite(array: np.ndarray) -> bool:
    """True when the sum of ``array`` is finite; False whenever any value is not (and,
    rarely, when finite values overflow the sum). Quiet either way."""
    if not isinstance(array, np.ndarray):  # a device array: one reduction, one sync
        return bool(np.isfinite(array.sum()))
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(array, axis=None)))
