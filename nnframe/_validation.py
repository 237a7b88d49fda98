"""Argument checks shared by every public entry point.

Each check runs before any work and raises `InputError` with a message that names the
argument, what was given, what was expected, and how to fix it.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import sys
from pathlib import Path

import numpy as np

from . import _parallel, ops
from ._text import brief
from .errors import InputError, NNFrameError

# Inputs of another dtype whose conversion would take more than this are converted one
# batch (or inference block) at a time instead of whole; memmaps always are.
LAZY_BYTES = 256 * 2**20
# The dtypes of weights and arithmetic: every module that needs the list takes it from here.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def dtype(value, name: str = "dtype") -> np.dtype:
    """``value`` (a type such as ``np.float32``, a dtype or a name) as one of `DTYPES`."""
    resolved = None
    # Only names and types: np.dtype() reads a nested list as a record layout, which for a
    # list sharing its sublists takes time exponential in its depth.
    if isinstance(value, (str, type, np.dtype)):
        try:
            resolved = np.dtype(value)
        except (TypeError, ValueError):
            resolved = None
    if resolved is None or resolved not in DTYPES:
        raise InputError(f"{name} must be np.float32 or np.float64, got {brief(value)}.")
    return resolved


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """An int >= ``minimum``, of any size (callers that allocate by it bound it themselves;
    a batch_size beyond the data means one batch of all of it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {minimum}, got "
                         f"{type(value).__name__} {brief(value)}.")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {brief(value)}.")
    return int(value)


def seed(value, name: str = "seed"):
    """None, a non-negative int, or a ``numpy.random.Generator``."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InputError(f"{name} must be None or a non-negative integer such as 0, got "
                         f"{type(value).__name__} {brief(value)}.")
    return int(value)


def learning_rate(value, name: str = "learning_rate") -> float:
    expected = f"{name} must be a positive finite number such as 0.1"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{expected}, got {type(value).__name__} {brief(value)}.")
    try:
        converted = float(value)
    except (OverflowError, ValueError, TypeError):  # 10**400, a huge Fraction or Decimal
        raise InputError(f"{expected}, got {brief(value)}, which does not fit a float "
                         f"(at most {sys.float_info.max:.3g}).") from None
    if not math.isfinite(converted) or converted <= 0:
        raise InputError(f"{expected}, got {brief(value)}.")
    return converted


def parameter_bytes(num_nodes, dtype) -> int:
    """Bytes of the weights and biases of a network with layer sizes ``num_nodes``."""
    return sum((a + 1) * b for a, b in itertools.pairwise(num_nodes)) * np.dtype(dtype).itemsize


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def too_large_message(num_nodes, dtype, why: str) -> str:
    """The message for layer sizes whose weights do not fit in memory."""
    needed = parameter_bytes(num_nodes, dtype)
    return (f"num_nodes {brief(num_nodes)} needs {_bytes(needed)} for the weights and biases "
            f"in {np.dtype(dtype).name} (one per pair of connected units, plus a bias per "
            f"unit), and {why}; use smaller layers.")


def parameters_fit(num_nodes, dtype) -> None:
    """Refuse, before allocating, layer sizes whose weights could never be held: more than
    one array can index, or more than the machine's physical memory. (Allocating anyway
    raises MemoryError at best; at worst the system overcommits and the process is killed
    when the weights are first written.)"""
    itemsize = np.dtype(dtype).itemsize
    if any((a + 1) * b * itemsize > np.iinfo(np.intp).max
           for a, b in itertools.pairwise(num_nodes)):
        raise InputError(too_large_message(num_nodes, dtype,
                                           "that is more than one array can hold"))
    memory = _physical_memory()
    if memory is not None and parameter_bytes(num_nodes, dtype) > memory:
        raise InputError(too_large_message(num_nodes, dtype, f"this machine has "
                                           f"{_bytes(memory)} of memory"))


def _bytes(count: int) -> str:
    if count >= 1024**7:  # past EiB, and perhaps past what a float holds
        return f"more than 2**{count.bit_length() - 1} bytes"
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{count} bytes"  # pragma: no cover


def model_path(filename, *, name: str = "filename") -> Path:
    if not isinstance(filename, (str, Path)):
        raise InputError(f"{name} must be a path ending in .pkl, got "
                         f"{type(filename).__name__} {brief(filename)}.")
    path = Path(filename)
    if path.suffix != ".pkl":
        raise InputError(f"{name} {brief(str(filename), 300)} does not end in .pkl; nnframe "
                         "model files are .pkl files (for example "
                         f"{brief(str(path.with_suffix('.pkl')), 300)}).")
    return path


def _as_real_array(data, name: str) -> np.ndarray:
    if isinstance(data, (str, bytes)):
        raise InputError(f"{name} must be a numeric array, got {type(data).__name__}.")
    try:  # a memmap stays one, for inputs(lazy=True) to recognise
        array = data if isinstance(data, np.memmap) else np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} could not be read as a numeric array ({exc}); pass a "
                         "rectangular list or NumPy array of numbers.") from None
    _require_real(array, name)
    return array


def _require_real(array, name: str) -> None:
    """Refuse an array (NumPy's or a device's) that does not hold real numbers."""
    kind = array.dtype.kind
    if kind == "c":
        raise InputError(f"{name} is complex ({array.dtype}); nnframe works on real numbers. "
                         "Pass the real part (x.real) or the magnitude (abs(x)).")
    if kind not in "biuf":
        raise InputError(f"{name} has dtype {array.dtype} ({_kind_name(kind)}); it must hold "
                         "real numbers (bool, int, uint or float).")


def _kind_name(kind: str) -> str:
    return {"O": "Python objects", "U": "strings", "S": "bytes", "V": "records",
            "M": "datetimes", "m": "timedeltas"}.get(kind, "not numeric")


def _check_finite(array: np.ndarray, name: str, offset: int = 0) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        where = f"row {bad[0] + offset}" + (f", column {bad[1]}" if len(bad) > 1 else "")
        raise InputError(f"{name} contains NaN or infinity (first at {where}); clean or "
                         "impute the data first.")


class NonFiniteRows(NNFrameError):
    """Raised by `require_finite_rows` inside an inference pass; the caller turns it
    into the InputError of `explain_nonfinite`, which needs the original data."""


def _host(data):
    """``data`` itself, or a device array (`nnframe.backend`) copied to the host: explicitly,
    for checks and messages off the hot path."""
    from . import backend

    return backend.backend_of(data).to_host(data) if backend.is_device_array(data) else data


def inputs(data, width: int, dtype, *, name: str = "inputs", allow_1d: bool = False,
           check_finite: bool = True, lazy: bool = False, device=None):
    """Return ``(array, was_1d)``: a 2-D array of ``dtype`` with ``width`` columns.

    An array of the network's device (``device``, a `nnframe.backend.Backend`) is checked
    and converted there, and returned on it; a device array given to another device is
    copied to the host first.

    ``check_finite=False`` leaves the NaN/infinity check to the caller, for inference, which
    checks each row block just before using it (`require_finite_rows`). ``lazy=True``
    returns an array of another real dtype (uint8 images, a float64 ``np.memmap``) as it is,
    checked in row blocks, for the caller to convert one batch or block at a time, when it
    is an ``np.memmap`` or its conversion would take more than `LAZY_BYTES`: data larger than
    memory is never converted whole (smaller data is converted once, which is faster).
    """
    if device is not None and not device.is_host and device.owns(data):
        return _device_inputs(data, width, dtype, device, name=name, allow_1d=allow_1d,
                              check_finite=check_finite)
    array = _as_real_array(_host(data), name)
    was_1d = array.ndim == 1
    if was_1d and allow_1d:
        array = array.reshape(1, -1)
    _shape_checks(array.shape, width, name, allow_1d)
    if lazy and array.dtype != dtype and (isinstance(array, np.memmap) or array.shape[0]
                                          * array.shape[1] * np.dtype(dtype).itemsize
                                          > LAZY_BYTES):
        if check_finite and array.dtype.kind == "f":
            for start in range(0, len(array), ops.INFERENCE_CHUNK):
                block = array[start:start + ops.INFERENCE_CHUNK]
                with np.errstate(over="ignore"):
                    converted = np.asarray(block, dtype=dtype)
                if not _all_finite(converted):
                    explain_nonfinite(block, name, dtype, converted=converted, offset=start)
        return array, was_1d
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(array, dtype=dtype)
    if check_finite and not _all_finite(converted):
        explain_nonfinite(array, name, dtype)
    return converted, was_1d


def _shape_checks(shape: tuple, width: int, name: str, allow_1d: bool) -> None:
    if len(shape) != 2:
        expected = "(samples, features) or one 1-D sample" if allow_1d else "(samples, features)"
        raise InputError(f"{name} must be 2-D {expected}, got shape {shape}. "
                         "Flatten images first, e.g. x.reshape(len(x), -1).")
    if shape[0] == 0:
        raise InputError(f"{name} is empty (0 samples); pass at least one row.")
    if shape[1] != width:
        raise InputError(f"{name} has {shape[1]} features per sample but the network's "
                         f"input layer has {width} nodes; reshape the data or build the "
                         f"network with num_nodes[0] = {shape[1]}.")


def _device_inputs(data, width: int, dtype, device, *, name: str, allow_1d: bool,
                   check_finite: bool):
    """`inputs` for an array already on the network's device: checked and converted there."""
    _require_real(data, name)
    was_1d = data.ndim == 1
    if was_1d and allow_1d:
        data = data.reshape(1, -1)
    _shape_checks(data.shape, width, name, allow_1d)
    converted = device.xp.ascontiguousarray(data, dtype=dtype)
    if check_finite and not ops.all_finite(converted):
        explain_nonfinite(data, name, dtype)
    return converted, was_1d


def explain_nonfinite(data, name: str, dtype, *, converted: np.ndarray | None = None,
                      offset: int = 0) -> None:
    """Raise the InputError for data that is not finite once converted to ``dtype``; with
    ``converted`` (that conversion), return instead if it is finite after all. ``offset``:
    the row number of ``data``'s first row, for the message."""
    _check_finite(np.asarray(_host(data)), name, offset)  # NaN or inf in the data: say where
    if converted is not None and _all_finite(converted):
        return
    raise InputError(f"{name} has values too large for {np.dtype(dtype).name} (at most "
                     f"{np.finfo(dtype).max:.3g}); scale the data first.")


def overflow_message(name: str, row: int, layer: int, values: np.ndarray, dtype) -> str:
    """The message for finite inputs whose weighted sums overflow inside the network."""
    dtype = np.dtype(dtype)
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    return (f"{name} row {row} has values too large for the network's {dtype.name} "
            f"arithmetic (largest magnitude {largest:.3g}): the weighted sums of layer "
            f"{layer} overflow (beyond {np.finfo(dtype).max:.3g}). Scale the data first, "
            "e.g. to [0, 1] or to zero mean and unit variance.")


def require_finite_rows(rows: np.ndarray) -> None:
    if not ops.all_finite(rows):
        raise NonFiniteRows("inputs are not finite")


def _all_finite(array: np.ndarray) -> bool:
    """`nnframe.ops.all_finite`, for large arrays in row blocks on all cores."""
    if not isinstance(array, np.ndarray):  # a device array: one reduction there
        return ops.all_finite(array)
    return all(_parallel.map_rows(ops.all_finite, array))


def labels(data, num_samples: int, num_outputs: int, dtype, *, name: str = "labels"):
    """Return ``(targets, class_ids)``: target rows of ``dtype`` and an int class per row.

    Accepts integer class ids (1-D) or target rows (2-D, one column per output node); labels
    on a device are checked on the host (a copy: they are small).
    """
    array = _as_real_array(_host(data), name)
    if array.ndim == 0 or array.ndim > 2:
        raise InputError(f"{name} must be 1-D class ids or 2-D one-hot rows, got shape "
                         f"{array.shape}.")
    if array.shape[0] != num_samples:
        raise InputError(f"{name} has {array.shape[0]} rows but there are {num_samples} "
                         "input samples; pass one label per sample.")
    _check_finite(array, name)
    if array.ndim == 1:
        num_classes = max(num_outputs, 2)
        if array.dtype.kind == "f" and not np.all(array == np.round(array)):
            raise InputError(f"{name} is 1-D, so it must hold integer class ids, but it has "
                             "fractional values; pass ints, or one-hot rows (2-D).")
        low, high = array.min(), array.max()
        if low < 0 or high >= num_classes:
            raise InputError(f"{name} holds class ids from {low:g} to {high:g}, but the network "
                             f"has {num_classes} classes (0 to {num_classes - 1}); negative "
                             "ids are never wrapped around.")
        ids = array.astype(np.int64)
        return ops.one_hot(ids, num_outputs, dtype), ids
    if array.shape[1] != num_outputs:
        raise InputError(f"{name} has {array.shape[1]} columns but the network has "
                         f"{num_outputs} output nodes; pass one-hot rows of width "
                         f"{num_outputs} or 1-D class ids.")
    _require_probability_rows(array, name)
    targets = np.ascontiguousarray(array, dtype=dtype)
    return targets, ops.argmax_rows(targets)


PROBABILITY_TOLERANCE = 1e-4  # on a row's sum: float32 rounding of a softmax over 1,000 units


def _require_probability_rows(array: np.ndarray, name: str) -> None:
    """2-D targets are probability rows: every value in [0, 1] and, with two or more
    columns, every row summing to 1 (the class of a row is its argmax, and the costs are
    losses only for such rows: cross-entropy is 0 for an all-zero row and negative for
    negative values). One column holds the probability of class 1 itself."""
    tolerance = PROBABILITY_TOLERANCE
    if array.dtype.kind == "f":
        tolerance = max(tolerance, 4 * float(np.finfo(array.dtype).eps))  # float16 labels
    out_of_range = (array < 0) | (array > 1)
    bad = out_of_range.any(axis=1)
    sums = None
    if array.shape[1] > 1:
        sums = array.sum(axis=1, dtype=np.float64)
        bad |= np.abs(sums - 1.0) > tolerance
    if not bad.any():
        return
    row = int(np.argmax(bad))
    shown = brief(array[row].tolist())
    if out_of_range[row].any():
        problem = "has a value outside [0, 1]"
    else:
        problem = f"sums to {sums[row]:.6g}"
    if array.shape[1] == 1:
        raise InputError(f"{name} row {row} is {shown}, which {problem}; with one output "
                         "unit each label is the probability of class 1: 0 or 1 (or a value "
                         "between). Pass 1-D class ids 0/1 or a column of such values.")
    raise InputError(f"{name} row {row} is {shown}, which {problem}; 2-D labels must be "
                     "probability rows: every value in [0, 1] and every row summing to 1, "
                     "such as one-hot rows (np.eye(num_classes)[ids]). Pass 1-D class ids "
                     "instead, or normalise the rows.")
