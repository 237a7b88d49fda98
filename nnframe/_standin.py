"""A stand-in for a GPU array library, so that the device path is tested on any CPU.

For tests only (the device name ``"standin"`` of `nnframe.backend`, never a user's choice).
`StandinArray` wraps a NumPy array and behaves as a CuPy array does where it matters for
nnframe and its plugins:

- NumPy's dispatch protocols: ``np.exp(z)``, ``np.where(...)``, ``np.zeros_like(p)`` on a
  stand-in return stand-ins (``__array_ufunc__``, ``__array_function__``), reductions give
  0-d arrays, and no floating-point warning is ever raised (a GPU has none);
- no implicit conversion: ``np.asarray(x)``, ``np.array(x)`` and anything that calls
  ``__array__`` raise TypeError, as CuPy does; ``x.get()`` is the explicit copy to the host;
- no mixing: a host ``numpy.ndarray`` as an operand, an index or an assigned value raises
  TypeError (CuPy refuses NumPy arrays as operands), and so does a ufunc's ``where=``, which
  CuPy's ufuncs do not take.

So a training step that converts to NumPy on the way, or combines a device array with a
host one, fails a CPU test as it would fail (or silently copy) on a GPU. `namespace` is the
matching array module (``asarray``, ``zeros``, ``random.default_rng`` ...). The explicit
copies are counted (`transfers`), so that a test can bound them too: an explicit round trip
per batch is as slow on a GPU as an implicit one.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

# Explicit copies between host and device since the last reset (tests reset it).
transfers = {"to_device": 0, "to_host": 0}

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed (device array stand-in, as "
            "CuPy). Please use `.get()` to construct a NumPy array explicitly.")


class StandinArray(NDArrayOperatorsMixin):
    """A device array on the host: a NumPy array that refuses to be one implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None  # as an ndarray: mutable

    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    # -- conversion: explicit only ------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def get(self) -> np.ndarray:
        """A NumPy copy on the host (CuPy's ``ndarray.get``)."""
        transfers["to_host"] += 1
        return self._a.copy()

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self) -> float:
        return float(self._a.reshape(-1)[0]) if self._a.size == 1 else float(self._a)

    def __int__(self) -> int:
        return int(self._a.reshape(-1)[0]) if self._a.size == 1 else int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __repr__(self) -> str:
        return f"StandinArray({self._a!r})"

    # -- the dispatch protocols ----------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "where" in kwargs:
            raise TypeError(f"{ufunc.__name__}: ufuncs on the device take no where= argument "
                            "(CuPy's do not); use np.where(condition, x, y) instead.")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_operand(o, f"{ufunc.__name__}(out=)", out=True)
                                  for o in out)
        args = [_operand(x, f"{ufunc.__name__}") for x in inputs]
        with np.errstate(all="ignore"):
            result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", str(func))
        out = kwargs.get("out")
        args = _unwrap_all(args, name)
        kwargs = {k: _unwrap_all(v, name) for k, v in kwargs.items()}
        with np.errstate(all="ignore"):
            result = func(*args, **kwargs)
        if out is not None:
            return out
        return _wrap(result)

    # -- indexing --------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value) -> None:
        self._a[_index(key)] = _operand(value, "assignment")

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    # -- attributes --------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StandinArray(self._a.T))
    real = property(lambda self: StandinArray(self._a.real))
    imag = property(lambda self: StandinArray(self._a.imag))

    def astype(self, dtype, copy: bool = True, **kwargs):
        return StandinArray(self._a.astype(dtype, copy=copy, **kwargs))

    def copy(self, order: str = "C"):
        return StandinArray(self._a.copy(order=order))

    def fill(self, value) -> None:
        self._a.fill(_operand(value, "fill"))

    def __getattr__(self, name: str):
        if name not in _METHODS:
            raise AttributeError(f"'StandinArray' object has no attribute {name!r} (the "
                                 "device array stand-in offers what CuPy arrays offer)")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            out = kwargs.get("out")
            with np.errstate(all="ignore"):
                result = method(*_unwrap_all(args, name),
                                **{k: _unwrap_all(v, name) for k, v in kwargs.items()})
            return out if out is not None else _wrap(result)

        return call

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):  # as CuPy arrays pickle: through the host, explicitly
        return (_from_host, (self._a.copy(),))


_METHODS = frozenset({
    "reshape", "ravel", "flatten", "transpose", "swapaxes", "squeeze", "view", "sum", "mean",
    "max", "min", "argmax", "argmin", "any", "all", "prod", "std", "var", "cumsum", "clip",
    "dot", "take", "repeat", "nonzero", "round", "sort", "argsort", "diagonal", "trace",
    "conj",
})


def _from_host(array: np.ndarray) -> StandinArray:
    return StandinArray(array)


def _wrap(value):
    if isinstance(value, np.ndarray):
        return StandinArray(value)
    if isinstance(value, np.generic):  # reductions on the device give 0-d arrays
        return StandinArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _refuse_host(where: str) -> TypeError:
    return TypeError(f"{where}: a host numpy.ndarray cannot be combined with device arrays "
                     "(CuPy: unsupported type numpy.ndarray); move it to the device first "
                     "(backend.asarray), or build it from a device array (np.zeros_like).")


def _operand(x, where: str, *, out: bool = False):
    if isinstance(x, StandinArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _refuse_host(where)
    if out:
        raise TypeError(f"{where}: out= must be a device array, got {type(x).__name__}")
    if isinstance(x, (numbers.Number, np.generic)) or x is None:
        return x
    raise TypeError(f"{where}: unsupported operand type {type(x).__name__} on the device "
                    "(CuPy takes device arrays and scalars only)")


def _unwrap_all(value, where: str):
    """Arguments of a dispatched function: stand-ins unwrapped, host arrays refused."""
    if isinstance(value, StandinArray):
        return value._a
    if isinstance(value, np.ndarray):
        raise _refuse_host(where)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap_all(v, where) for v in value)
    return value


def _index(key):
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, StandinArray):
        return key._a
    if isinstance(key, np.ndarray):
        raise _refuse_host("an index")
    return key


# -- the array module ------------------------------------------------------------------------
def asarray(obj, dtype=None) -> StandinArray:
    """To the device: a stand-in (a copy of host data, as a transfer is)."""
    if isinstance(obj, StandinArray):
        return obj if dtype is None or obj.dtype == dtype else obj.astype(dtype)
    transfers["to_device"] += 1
    return StandinArray(np.array(obj, dtype=dtype, copy=True))


def ascontiguousarray(obj, dtype=None) -> StandinArray:
    array = asarray(obj, dtype)
    return StandinArray(np.ascontiguousarray(array._a))


def asnumpy(obj) -> np.ndarray:
    """To the host (CuPy's ``asnumpy``)."""
    return obj.get() if isinstance(obj, StandinArray) else np.asarray(obj)


class _Generator:
    """A device random generator: draws as the NumPy generator it wraps does, so that a
    stand-in run's dropout masks equal the CPU run's."""

    def __init__(self, generator: np.random.Generator) -> None:
        self._generator = generator

    def random(self, size=None, dtype=np.float64) -> StandinArray:
        return StandinArray(self._generator.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64) -> StandinArray:
        return StandinArray(self._generator.standard_normal(size, dtype=dtype))


def _default_rng(seed=None) -> _Generator:
    if isinstance(seed, np.random.Generator):
        return _Generator(seed)
    return _Generator(np.random.default_rng(seed))


def _creation(name: str):
    fn = getattr(np, name)

    def create(*args, **kwargs):
        return _wrap(fn(*_unwrap_all(args, name),
                        **{k: _unwrap_all(v, name) for k, v in kwargs.items()}))

    create.__name__ = name
    return create


def _synchronize() -> None:
    """Nothing to wait for: the stand-in computes at once."""


namespace = SimpleNamespace(
    ndarray=StandinArray, asarray=asarray, ascontiguousarray=ascontiguousarray,
    asnumpy=asnumpy, random=SimpleNamespace(default_rng=_default_rng),
    cuda=SimpleNamespace(Device=lambda *a: SimpleNamespace(synchronize=_synchronize)),
    **{name: _creation(name) for name in (
        "empty", "zeros", "ones", "full", "arange", "eye", "empty_like", "zeros_like",
        "ones_like", "concatenate", "stack", "where", "isfinite", "count_nonzero",
        "maximum", "minimum", "exp", "log", "sqrt", "abs", "sum")},
)
