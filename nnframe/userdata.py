"""Your own data for `nnframe train/evaluate/predict --data FILE`.

Three layouts are read, each checked so that a bad file fails with one line naming the
problem:

- ``.npz`` with ``x_train`` and ``y_train`` and optionally ``x_test`` and ``y_test`` (the
  ``keras.datasets`` layout), read with ``allow_pickle=False``;
- a pair of ``.npy`` files given as ``X.npy,Y.npy`` (inputs, then labels);
- ``.csv`` with the label in the first column (as the popular MNIST CSVs), a header row
  detected when the first row is not numeric.

Inputs may have any shape per sample (``(n, 28, 28)`` images are flattened to rows of 784);
labels are integer class ids from 0. Inputs come back as float32 rows, labels as int64.
"""

from __future__ import annotations

import io
import os
import zlib
from typing import NamedTuple

import numpy as np

from ._files import read_regular
from .errors import DataError

DATA_LIMIT = 2 * 2**30  # bytes per file: far above MNIST as CSV (about 110 MB)


class UserData(NamedTuple):
    """A dataset read from the user's file(s); ``x_test``/``y_test`` are None without a
    test part. ``crc32`` identifies the raw file bytes."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str
    crc32: int


def _read(path: str) -> bytes:
    data = read_regular(path, limit=DATA_LIMIT, what="data file", error=DataError)
    if not data.strip():
        raise DataError(f"{path!r} is empty; give a file with data rows.")
    return data


def _npy(path: str, data: bytes, what: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{path!r} holds Python objects (an object array); nnframe reads "
                            f"only numeric arrays, save {what} with a numeric dtype.") from None
        raise DataError(f"{path!r} is not a readable .npy file ({exc}).") from None
    except Exception as exc:
        raise DataError(f"{path!r} is not a readable .npy file ({type(exc).__name__}: "
                        f"{str(exc)[:160]}).") from None


def _inputs(array: np.ndarray, name: str, where: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} in {where} has dtype {array.dtype}, not numbers; save it as "
                        "a numeric array (such as uint8 or float32).")
    if array.ndim < 2:
        raise DataError(f"{name} in {where} has shape {array.shape}; it needs one row (or one "
                        "image) per sample, such as (n, 784) or (n, 28, 28).")
    if len(array) == 0:
        raise DataError(f"{name} in {where} has no samples.")
    rows = np.ascontiguousarray(array.reshape(len(array), -1), dtype=np.float32)
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{name} in {where} has a non-finite value ({rows[r, c]}) in sample "
                        f"{r}, column {c}; remove or fix it.")
    return rows


def _labels(array: np.ndarray, name: str, where: str, count: int) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype.kind not in "biuf" or array.ndim != 1:
        raise DataError(f"{name} in {where} has shape {array.shape} and dtype {array.dtype}; "
                        "labels must be one integer class id per sample.")
    if len(array) != count:
        raise DataError(f"{name} in {where} has {len(array):,} labels for {count:,} samples; "
                        "give one label per sample.")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name} in {where} has the label {float(array[i]):g} at sample {i}; "
                            "labels must be integer class ids (0, 1, 2, ...).")
    if array.min() < 0:
        i = int(np.argmin(array))
        raise DataError(f"{name} in {where} has the negative label {array[i]:g} at sample {i}; "
                        "labels must be class ids from 0.")
    return array.astype(np.int64)


def _pair(x, y, names: tuple[str, str], where: str) -> tuple[np.ndarray, np.ndarray]:
    rows = _inputs(x, names[0], where)
    return rows, _labels(y, names[1], where, len(rows))


def _npz_arrays(path: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{path!r} holds Python objects (an object array); nnframe reads "
                            "only numeric arrays.") from None
        raise DataError(f"{path!r} is not a readable .npz file ({exc}).") from None
    except Exception as exc:
        raise DataError(f"{path!r} is not a readable .npz file ({type(exc).__name__}: "
                        f"{str(exc)[:160]}).") from None


def _load_npz(path: str, data: bytes) -> tuple:
    arrays = _npz_arrays(path, data)
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        present = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"{path!r} has no {' or '.join(missing)} (its arrays: {present}); an "
                        ".npz needs x_train and y_train, and optionally x_test and y_test.")
    x_train, y_train = _pair(arrays["x_train"], arrays["y_train"], ("x_train", "y_train"), path)
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path!r} has {have} but no {lack}; give both or neither.")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = _pair(arrays["x_test"], arrays["y_test"], ("x_test", "y_test"), path)
        if x_test.shape[1] != x_train.shape[1]:
            raise DataError(f"{path!r}: x_test has {x_test.shape[1]} values per sample but "
                            f"x_train has {x_train.shape[1]}; they must match.")
    return x_train, y_train, x_test, y_test


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_csv(path: str, data: bytes) -> np.ndarray:
    """The numeric table of a CSV file (header row, if any, skipped) as float64."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path!r} is not a UTF-8 text CSV file.") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError(f"{path!r} is empty; give a file with data rows.")
    header = not all(_is_number(cell) for cell in lines[first].split(","))
    start = first + 1 if header else first
    if not any(line.strip() for line in lines[start:]):
        raise DataError(f"{path!r} has a header row but no data rows.")
    try:  # the fast path: NumPy's C parser
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=start, ndmin=2,
                           dtype=np.float64)
    except ValueError:
        table = None
    if table is None:  # find the first bad row or cell, for a message that points at it
        width = None
        for number, line in enumerate(lines[start:], start=start + 1):
            if not line.strip():
                continue
            cells = line.split(",")
            if width is None:
                width = len(cells)
            elif len(cells) != width:
                raise DataError(f"{path!r} line {number} has {len(cells)} columns but the first "
                                f"data row has {width}; every row needs the same columns.")
            for column, cell in enumerate(cells, start=1):
                if not _is_number(cell):
                    raise DataError(f"{path!r} line {number}, column {column} is {cell.strip()!r}, "
                                    "not a number; every cell after the header must be numeric.")
        raise DataError(f"{path!r} could not be read as a numeric CSV table.")
    bad = ~np.isfinite(table)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path!r} data row {r + 1}, column {c + 1} is {table[r, c]}, not a "
                        "finite number; remove or fix it.")
    return table


def _load_csv(path: str, data: bytes) -> tuple:
    table = parse_csv(path, data)
    if table.shape[1] < 2:
        raise DataError(f"{path!r} has one column; the first column is the label and the "
                        "others the inputs.")
    x, y = _pair(table[:, 1:], table[:, 0], ("the inputs (columns 2 on)",
                                             "the labels (column 1)"), path)
    return x, y, None, None


def _npy_pair(spec: str) -> tuple[str, str] | None:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 2 and all(p.lower().endswith(".npy") for p in parts):
        return parts[0], parts[1]
    return None


def load_data_file(spec: str) -> UserData:
    """The data named by ``--data``: ``FILE.npz``, ``FILE.csv`` or ``X.npy,Y.npy``.

    Raises:
        DataError: one line naming the file and what is wrong with it.
    """
    pair = _npy_pair(spec)
    if pair is not None:
        xb, yb = _read(pair[0]), _read(pair[1])
        x_train, y_train = _pair(_npy(pair[0], xb, "the inputs"), _npy(pair[1], yb, "the labels"),
                                 (os.path.basename(pair[0]), os.path.basename(pair[1])),
                                 spec)
        x_test = y_test = None
        crc = zlib.crc32(yb, zlib.crc32(xb))
    else:
        suffix = os.path.splitext(spec)[1].lower()
        if suffix not in (".npz", ".csv"):
            raise DataError(f"--data {spec!r}: give a .npz file (x_train, y_train, optional "
                            "x_test, y_test), a .csv file (label first) or X.npy,Y.npy.")
        data = _read(spec)
        crc = zlib.crc32(data)
        loader = _load_npz if suffix == ".npz" else _load_csv
        x_train, y_train, x_test, y_test = loader(spec, data)
    test = (f" and {len(y_test):,} test samples" if y_test is not None else
            ", no test part")
    source = (f"{spec} ({len(y_train):,} training samples of {x_train.shape[1]} values"
              f"{test})")
    return UserData(x_train, y_train, x_test, y_test, source, crc)


def load_inputs(spec: str, width: int) -> np.ndarray:
    """Rows to predict from ``--data``: a ``.npy`` of inputs, a ``.csv`` of inputs (or of a
    label then inputs: a first column beyond ``width`` values is taken as a label and
    dropped), or a ``.npz`` (``x_test``, else ``x_train``)."""
    suffix = os.path.splitext(spec)[1].lower()
    if suffix == ".npy":
        rows = _inputs(_npy(spec, _read(spec), "the inputs"), "the array", spec)
    elif suffix == ".csv":
        table = parse_csv(spec, _read(spec))
        if table.shape[1] == width + 1:
            table = table[:, 1:]
        rows = _inputs(table, "the rows", spec)
    elif suffix == ".npz":  # inputs only: no labels needed to predict
        arrays = _npz_arrays(spec, _read(spec))
        key = next((k for k in ("x_test", "x_train") if k in arrays), None)
        if key is None:
            present = ", ".join(sorted(arrays)) or "none"
            raise DataError(f"{spec!r} has no x_test or x_train (its arrays: {present}); "
                            "predict reads the rows of x_test, else of x_train.")
        rows = _inputs(arrays[key], key, spec)
    else:
        raise DataError(f"--data {spec!r}: predict reads a .npy or .csv of input rows, or a "
                        ".npz (x_test, else x_train).")
    if rows.shape[1] != width:
        raise DataError(f"{spec!r} has {rows.shape[1]} values per sample but the model takes "
                        f"{width}; give data shaped as the model was trained on.")
    return rows


# -- input scaling stored with the model ---------------------------------------------------
SCALES = ("none", "max", "standard")
SCALE_KEY = "nnframe_scale"


def fit_scale(kind: str, x: np.ndarray) -> dict:
    """The plain-data record of ``--scale kind`` fitted on the training inputs ``x``."""
    if kind == "max":
        peak = float(np.abs(x).max())
        return {"kind": "max", "divisor": peak if peak > 0 else 1.0}
    if kind == "standard":
        std = x.std(axis=0, dtype=np.float64)
        return {"kind": "standard", "mean": x.mean(axis=0, dtype=np.float64).tolist(),
                "std": np.where(std > 0, std, 1.0).tolist()}
    return {"kind": "none"}


def apply_scale(record: dict | None, x: np.ndarray) -> np.ndarray:
    """``x`` scaled as a model's stored record says (unchanged without one)."""
    if not isinstance(record, dict) or record.get("kind") in (None, "none"):
        return x
    if record["kind"] == "max":
        return (x / np.float32(record["divisor"])).astype(np.float32)
    if record["kind"] == "standard":
        mean = np.asarray(record["mean"], dtype=np.float32)
        std = np.asarray(record["std"], dtype=np.float32)
        if mean.shape != (x.shape[1],):
            raise DataError(f"the model's stored scaling is for {mean.size} inputs, the data "
                            f"has {x.shape[1]}.")
        return ((x - mean) / std).astype(np.float32)
    raise DataError(f"the model's stored input scaling {record['kind']!r} is unknown to this "
                    "nnframe.")
