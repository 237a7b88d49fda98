"""The plugin conformance kit.

``check_activation(obj)``, ``check_cost(obj)`` and ``check_optimizer(cls)`` run every
contract check and raise ``AssertionError`` with a precise message at the first failure.
Among them, ``stateless`` fails any call that leaves something on the object (an attribute
set, replaced or changed in place, on the instance, in its ``__slots__`` or on its class),
and calls interleaved over batches of different shapes that do not give the serial
results; for optimizers, ``state_per_parameter`` does the same with the per-parameter
state, and ``save_and_load`` resumes a run from its saved record. Each check is also
available on its own (``ACTIVATION_CHECKS``, ``COST_CHECKS``, ``OPTIMIZER_CHECKS``), which
is how the pytest plugin reports every check as its own test item::

    # tests/test_conformance.py of a plugin package: the whole file
    from nnframe.testing import conformance_test
    test_conformance = conformance_test("nnframe-extras")

With ``device="cuda"`` the three functions also run the plugin on the GPU (CuPy arrays in,
CuPy arrays out, nothing converted to NumPy on the way) and compare every result with the
CPU's.
"""

from __future__ import annotations

import contextlib
import copy
import io
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import dill
import numpy as np

from ._text import brief
from .base import Activation, Cost
from .errors import PluginContractError
from .optimizers import Gradients, Optimizer
from .registry import check_contract
from .schedules import Schedule

DTYPES = (np.float32, np.float64)
EXTREME = 1e3
GRADIENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Check:
    """One contract check: ``run(obj)`` raises AssertionError when ``obj`` fails it."""

    name: str
    kind: str  # "activation", "cost" or "optimizer"
    run: Callable[[object], None]
    description: str


# -- helpers ------------------------------------------------------------------------------
def _fail(obj: object, message: str) -> AssertionError:
    return AssertionError(f"{type(obj).__name__} (name={brief(getattr(obj, 'name', None))}): "
                          f"{message}")


@contextlib.contextmanager
def _strict_numerics() -> Iterator[None]:
    """Any overflow, division by zero, invalid operation or RuntimeWarning raises."""
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"), \
            warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _call(obj, what: str, fn, *args):
    try:
        with _strict_numerics():
            return fn(*args)
    except (FloatingPointError, RuntimeWarning) as exc:
        raise _fail(obj, f"{what} is numerically unsafe: {exc}. Rewrite the formula so no "
                         "intermediate overflows (e.g. exp(-abs(z)) instead of exp(-z)).") \
            from exc
    except AssertionError:
        raise
    except Exception as exc:
        raise _fail(obj, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _check_array(obj, what: str, out, like: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise _fail(obj, f"{what} returned {type(out).__name__}, expected a NumPy array")
    if out.shape != like.shape:
        raise _fail(obj, f"{what} returned shape {out.shape}, expected {like.shape} "
                         "(the input's shape; work element- or row-wise over the whole batch)")
    if out.dtype != like.dtype:
        raise _fail(obj, f"{what} returned dtype {out.dtype} for {like.dtype} input; keep the "
                         "input dtype (avoid float64 arrays such as np.array(...) or "
                         "np.float64(...) in the formula)")


def _check_unchanged(obj, what: str, before: np.ndarray, after: np.ndarray, arg: str) -> None:
    if not np.array_equal(before, after, equal_nan=True):
        raise _fail(obj, f"{what} modified its argument {arg!r} in place; compute into a new "
                         "array instead (no `z *= ...`, no out=z)")


def _relative_error(numeric: np.ndarray, analytic: np.ndarray) -> float:
    scale = max(np.linalg.norm(numeric), np.linalg.norm(analytic), 1e-12)
    return float(np.linalg.norm(numeric - analytic) / scale)


def _numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        up = f(x)
        x[index] = old - h
        down = f(x)
        x[index] = old
        grad[index] = (up - down) / (2 * h)
    return grad


def _roundtrip(obj, probe: Callable[[object], np.ndarray]) -> None:
    try:
        clone = dill.loads(dill.dumps(obj, recurse=True))  # as nnframe.save embeds objects
    except Exception as exc:
        raise _fail(obj, f"does not survive a dill round trip ({type(exc).__name__}: {exc}); "
                         "keep only plain attributes (numbers, strings, arrays) on the object") \
            from exc
    if not np.allclose(probe(obj), probe(clone), equal_nan=True):
        raise _fail(obj, "gives different results after a dill round trip")


def _contract(kind: str) -> Callable[[object], None]:
    def run(obj) -> None:
        try:
            check_contract(obj, kind)
        except PluginContractError as exc:
            raise AssertionError(str(exc)) from exc

    return run


def _batch(seed: int, dtype, shape=(5, 7)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- state kept between calls ---------------------------------------------------------------
# One registered object serves every layer and network that names it (two hidden layers of
# one network share it), and large inputs run as row blocks in parallel threads. Anything a
# call leaves behind for a later call (a stored output, a buffer, values kept by shape, the
# last prediction) is therefore overwritten by other callers.
_ABSENT = object()
_FINGERPRINT_DEPTH = 4
_STATE_ROWS = (7, 4, 7)  # batches 1 and 3 share a shape, batch 2 has fewer rows
_LATER = "the array {} returned, read again after the later calls"


def _stateless_fix(obj: object) -> str:
    source = ("gradient receives a and y" if isinstance(obj, Cost)
              else "backward receives z and a = forward(z)")
    return ("plugins must keep no state between calls: one object serves every layer and "
            "network that uses it, and row blocks in parallel threads. Compute every result "
            f"from the arguments alone ({source}), and set constants in __init__ or as class "
            "attributes")


def _watched(obj: object) -> dict[str, object]:
    """Everything a call could keep state in, by label: the instance's ``__dict__``
    (``self.x``), its ``__slots__`` and the ``__dict__`` of each of its classes
    (``Class.x``)."""
    found: dict[str, object] = {}
    instance_dict = getattr(obj, "__dict__", None)
    if isinstance(instance_dict, dict):
        found.update((f"self.{name}", value) for name, value in instance_dict.items())
    for cls in type(obj).__mro__:
        if cls is object:
            continue
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            if slot.startswith("__") and not slot.endswith("__"):  # name-mangled
                slot = f"_{cls.__name__.lstrip('_')}{slot}"
            found[f"self.{slot}"] = getattr(obj, slot, _ABSENT)
        found.update((f"{cls.__name__}.{name}", value) for name, value in vars(cls).items())
    return found


def _fingerprint(value: object, depth: int = 0) -> object:
    """A comparable summary of ``value``: arrays by identity, shape, dtype and bytes;
    containers and plain objects by identity and contents (a few levels deep)."""
    if value is _ABSENT or value is None or isinstance(
            value, (bool, int, float, complex, str, bytes, np.generic)):
        return (type(value).__name__, repr(value))
    if isinstance(value, np.ndarray):
        return ("array", id(value), value.shape, value.dtype.str, value.tobytes())
    if (depth >= _FINGERPRINT_DEPTH or callable(value) or hasattr(type(value), "__get__")
            or isinstance(value, types.ModuleType)):  # code, classes, descriptors, modules
        return ("object", type(value).__name__, id(value))
    if isinstance(value, dict):
        return ("dict", id(value), tuple((_fingerprint(k, depth + 1), _fingerprint(v, depth + 1))
                                         for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("sequence", id(value), tuple(_fingerprint(v, depth + 1) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", id(value), len(value), frozenset(repr(v) for v in value))
    inner = getattr(value, "__dict__", None)  # plain objects, threading.local() included
    return ("object", type(value).__name__, id(value),
            _fingerprint(dict(inner), depth + 1) if isinstance(inner, dict) else None)


def _state(obj: object) -> dict[str, object]:
    return {label: (value, _fingerprint(value)) for label, value in _watched(obj).items()}


def _describe(value: object) -> str:
    if value is _ABSENT:
        return "unset"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _state_change(before: dict, after: dict) -> str | None:
    for label in {**before, **after}:
        old, old_fingerprint = before.get(label, (_ABSENT, None))
        now, now_fingerprint = after.get(label, (_ABSENT, None))
        if old is _ABSENT and now is not _ABSENT:
            return f"set {label} (to {_describe(now)})"
        if now is _ABSENT and old is not _ABSENT:
            return f"deleted {label}"
        if now is not old:
            return f"replaced {label} ({_describe(old)} before the call, {_describe(now)} after)"
        if now_fingerprint != old_fingerprint:
            return f"changed the contents of {label} ({_describe(now)})"
    return None


class _CallFailed(Exception):
    def __init__(self, what: str, exc: Exception):
        super().__init__(what)
        self.what, self.exc = what, exc


def _watched_call(obj, what: str, fn, *args):
    """``fn(*args)``; fails if the call left anything behind on the object or its classes.
    Other exceptions come out as ``_CallFailed``, naming the call, for ``_interleaved``."""
    before = _state(obj)
    try:
        result = fn(*args)
    except AssertionError:
        raise
    except Exception as exc:
        raise _CallFailed(what, exc) from exc
    change = _state_change(before, _state(obj))
    if change is not None:
        raise _fail(obj, f"{what} {change}; {_stateless_fix(obj)}.")
    return result


def _clone(obj):
    """A copy of ``obj`` for reference results that no other call has touched."""
    for make in (copy.deepcopy, lambda o: dill.loads(dill.dumps(o, recurse=True))):
        try:
            return make(obj)
        except Exception:
            continue
    return obj


def _shapes(arg: str, columns: int) -> str:
    first, second, _ = _STATE_ROWS
    return (f"{arg}1 and {arg}3 are {first} x {columns}, {arg}2 is {second} x {columns}, all "
            "with different values")


def _interleaved(obj, order: list[str], shapes: str,
                 calls: Callable[[], Iterator[tuple[str, object]]], expected: dict) -> None:
    """Compare each result that ``calls`` yields (running the calls in ``order`` on ``obj``)
    with ``expected``, the same call's result with each batch run alone."""
    checked = (f"checked: {', '.join(order)} ({shapes}) must give what the same calls give "
               "one batch at a time, on a fresh copy of the object")
    advice = (f"so it keeps state between calls, perhaps outside the object (a module-level "
              f"cache or buffer); {_stateless_fix(obj)}")
    results = calls()
    while True:
        try:
            what, value = next(results)
        except StopIteration:
            return
        except _CallFailed as failed:
            exc = failed.exc
            raise _fail(obj, f"{failed.what} raised {type(exc).__name__}: {exc} when calls on "
                             f"different batches are interleaved, though each batch alone "
                             f"works ({checked}), {advice}.") from exc
        want = expected[what]
        if not (np.shape(value) == np.shape(want)
                and np.allclose(value, want, rtol=1e-10, atol=1e-12, equal_nan=True)):
            raise _fail(obj, f"{what} differs when calls on different batches are interleaved "
                             f"({checked}), {advice}.")


# -- activation checks ---------------------------------------------------------------------
def _activation_shape_and_dtype(obj: Activation) -> None:
    for dtype in DTYPES:
        z, grad = _batch(1, dtype), _batch(2, dtype)
        a = _call(obj, f"forward(z) for {dtype.__name__}", obj.forward, z)
        _check_array(obj, f"forward(z) for {dtype.__name__}", a, z)
        dz = _call(obj, f"backward(z, a, grad) for {dtype.__name__}", obj.backward, z, a, grad)
        _check_array(obj, f"backward(z, a, grad) for {dtype.__name__}", dz, z)


def _activation_inputs_untouched(obj: Activation) -> None:
    for dtype in DTYPES:
        z, grad = _batch(3, dtype), _batch(4, dtype)
        z0, grad0 = z.copy(), grad.copy()
        a = _call(obj, "forward(z)", obj.forward, z)
        _check_unchanged(obj, "forward(z)", z0, z, "z")
        a0 = a.copy()
        _call(obj, "backward(z, a, grad)", obj.backward, z, a, grad)
        _check_unchanged(obj, "backward(z, a, grad)", z0, z, "z")
        _check_unchanged(obj, "backward(z, a, grad)", a0, a, "a")
        _check_unchanged(obj, "backward(z, a, grad)", grad0, grad, "grad")


def _activation_rows_independent(obj: Activation) -> None:
    z = _batch(5, np.float64)
    a = _call(obj, "forward(z)", obj.forward, z)
    for row in (0, 3):
        alone = _call(obj, "forward(one row)", obj.forward, z[row:row + 1].copy())
        if not np.allclose(alone, a[row:row + 1], rtol=1e-10, atol=1e-12):
            raise _fail(obj, f"forward of row {row} alone differs from the same row inside a "
                             "batch; compute per element or per row (axis=1), never across "
                             "the batch")


def _activation_thread_safe(obj: Activation) -> None:
    # Large inputs are split into row blocks that run in parallel threads, so calls must not
    # share state: an earlier result must survive a later call, and concurrent calls on
    # different data must give what the same calls give one after the other.
    batches = [_batch(seed, np.float32, shape=(2048, 16)) for seed in (11, 12)]
    serial = [_call(obj, "forward(z)", obj.forward, z) for z in batches]
    first = serial[0].copy()
    _call(obj, "forward(z)", obj.forward, batches[1])
    _call(obj, "forward_inplace(z)", obj.forward_inplace, batches[1].copy())
    if not np.array_equal(serial[0], first) or np.shares_memory(serial[0], serial[1]):
        raise _fail(obj, "a later forward call changed the array an earlier call returned; "
                         "return a new array from every call (no buffers kept on self)")
    serial = [_call(obj, "forward_inplace(z)", obj.forward_inplace, z.copy()) for z in batches]
    results: list = [None, None]

    def run(k: int) -> None:
        try:
            for _ in range(20):
                out = obj.forward_inplace(batches[k].copy())
                if not np.array_equal(out, serial[k]):
                    results[k] = "differs"
                    return
            results[k] = "ok"
        except Exception as exc:  # reported below, naming the plugin
            results[k] = f"raised {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in results:
        if outcome != "ok":
            raise _fail(obj, f"forward_inplace called from two threads at once {outcome} "
                             "(compared with the same calls one after the other); keep "
                             "no mutable state between calls")


def _activation_stateless(obj: Activation) -> None:
    """No state kept between calls. On batches z1, z2, z3 (7, 4 and 7 rows, different values)
    the calls forward(z1..z3), backward(z1..z3), forward_inplace(z1..z3), in that order on
    ``obj``, must each give what the same calls give one batch at a time on a fresh copy, and
    the arrays forward returned must still hold those values at the end. Around every call,
    the object's ``__dict__``, its ``__slots__`` and its classes' attributes are compared:
    anything set, replaced, deleted or changed in place fails."""
    # z1 and z3 share a shape (exposes values kept by shape), z2 has fewer rows (exposes an
    # array kept from another batch); every batch has its own values.
    batches = [(k, _batch(20 + k, np.float64, (rows, 3)), _batch(30 + k, np.float64, (rows, 3)))
               for k, rows in enumerate(_STATE_ROWS, start=1)]
    expected: dict[str, np.ndarray] = {}
    for k, z, g in batches:  # serial: one batch at a time, each on a fresh copy
        alone = _clone(obj)
        a = np.array(_call(obj, f"forward(z{k})", alone.forward, z.copy()))
        expected[f"forward(z{k})"] = expected[_LATER.format(f"forward(z{k})")] = a
        expected[f"backward(z{k}, a{k}, g{k})"] = np.array(_call(
            obj, f"backward(z{k}, a{k}, g{k})", alone.backward, z.copy(), a.copy(), g.copy()))
        expected[f"forward_inplace(z{k})"] = np.array(_call(
            obj, f"forward_inplace(z{k})", alone.forward_inplace, z.copy()))

    def calls() -> Iterator[tuple[str, np.ndarray]]:  # every forward, then every backward
        outputs = {}
        for k, z, _ in batches:
            outputs[k] = _watched_call(obj, f"forward(z{k})", obj.forward, z)
            yield f"forward(z{k})", np.array(outputs[k])
        for k, z, g in batches:
            what = f"backward(z{k}, a{k}, g{k})"
            yield what, np.array(_watched_call(obj, what, obj.backward, z, outputs[k], g))
        for k, z, _ in batches:
            what = f"forward_inplace(z{k})"
            yield what, np.array(_watched_call(obj, what, obj.forward_inplace, z.copy()))
        for k, a in outputs.items():
            yield _LATER.format(f"forward(z{k})"), np.array(a)

    order = ([f"forward(z{k})" for k, _, _ in batches]
             + [f"backward(z{k}, a{k}, g{k})" for k, _, _ in batches]
             + [f"forward_inplace(z{k})" for k, _, _ in batches])
    _interleaved(obj, order, _shapes("z", 3), calls, expected)


def _activation_finite_at_extremes(obj: Activation) -> None:
    for dtype in DTYPES:
        z = np.array([[-EXTREME, -1.0, 0.0, 1.0, EXTREME],
                      [EXTREME, EXTREME, -EXTREME, 0.5, -EXTREME]], dtype=dtype)
        a = _call(obj, f"forward(±{EXTREME:g}) in {dtype.__name__}", obj.forward, z)
        if not np.all(np.isfinite(a)):
            raise _fail(obj, f"forward gives non-finite values for inputs of ±{EXTREME:g} "
                             f"({dtype.__name__}): {a.tolist()}")
        dz = _call(obj, f"backward(±{EXTREME:g}) in {dtype.__name__}", obj.backward, z, a,
                   np.ones_like(z))
        if not np.all(np.isfinite(dz)):
            raise _fail(obj, f"backward gives non-finite values for inputs of ±{EXTREME:g} "
                             f"({dtype.__name__}): {dz.tolist()}")


def _activation_gradient(obj: Activation) -> None:
    rng = np.random.default_rng(6)
    z = rng.uniform(-3.0, 3.0, (4, 6))
    z[np.abs(z) < 1e-3] = 0.5  # stay clear of kinks such as relu's at 0
    weights = rng.standard_normal((4, 6))
    numeric = _numeric_gradient(lambda x: float(np.sum(obj.forward(x) * weights)), z.copy())
    analytic = _call(obj, "backward(z, a, grad)", obj.backward, z, obj.forward(z), weights)
    error = _relative_error(numeric, analytic)
    if not error < GRADIENT_TOLERANCE:
        raise _fail(obj, f"backward does not match central finite differences of forward in "
                         f"float64 (relative error {error:.2e} >= {GRADIENT_TOLERANCE:g}); "
                         "check the derivative, and that backward multiplies by grad")


def _activation_inplace(obj: Activation) -> None:
    if type(obj).forward_inplace is Activation.forward_inplace:
        return  # not overridden: it is forward itself
    for dtype in DTYPES:
        z = _batch(8, dtype)
        z[0, :2] = [-EXTREME, EXTREME]
        expected = _call(obj, "forward(z)", obj.forward, z)
        scratch = z.copy()
        got = _call(obj, "forward_inplace(z)", obj.forward_inplace, scratch)
        _check_array(obj, f"forward_inplace(z) for {dtype.__name__}", got, z)
        if not np.allclose(got, expected, rtol=1e-6, atol=1e-7):
            raise _fail(obj, "forward_inplace(z) differs from forward(z); it must compute the "
                             "same values, only into z")


def _activation_roundtrip(obj: Activation) -> None:
    z = _batch(7, np.float64)
    _roundtrip(obj, lambda o: o.forward(z))


ACTIVATION_CHECKS: tuple[Check, ...] = (
    Check("contract", "activation", _contract("activation"),
          "an nnframe.Activation with a lowercase snake_case name"),
    Check("shape_and_dtype", "activation", _activation_shape_and_dtype,
          "forward and backward keep the input's shape and dtype (float32 and float64)"),
    Check("inputs_untouched", "activation", _activation_inputs_untouched,
          "forward and backward never modify z, a or grad in place"),
    Check("rows_independent", "activation", _activation_rows_independent,
          "vectorised over the batch: a row gives the same result alone or in a batch"),
    Check("thread_safe", "activation", _activation_thread_safe,
          "safe on row blocks in parallel threads: an earlier result survives a later "
          "call, and forward_inplace from two threads at once gives the serial results"),
    Check("stateless", "activation", _activation_stateless,
          "no state kept between calls: no call sets or changes an attribute of the object "
          "or its class, and interleaved calls on batches of different shapes give the "
          "serial results"),
    Check("finite_at_extremes", "activation", _activation_finite_at_extremes,
          f"finite results and no warnings for inputs of ±{EXTREME:g}"),
    Check("backward_matches_finite_differences", "activation", _activation_gradient,
          "backward equals central finite differences of forward (float64, rel. err < 1e-6)"),
    Check("forward_inplace_matches_forward", "activation", _activation_inplace,
          "an optional forward_inplace computes exactly what forward does"),
    Check("dill_round_trip", "activation", _activation_roundtrip,
          "survives dill.dumps/dill.loads with identical results"),
)


# -- cost checks ---------------------------------------------------------------------------
def _probabilities(seed, shape, dtype):
    p = np.random.default_rng(seed).uniform(0.05, 1.0, shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def _targets(seed, rows, width, dtype):
    return np.eye(width, dtype=dtype)[np.random.default_rng(seed).integers(0, width, rows)]


def _cost_shape_and_dtype(obj: Cost) -> None:
    for dtype in DTYPES:
        a, y = _probabilities(1, (6, 4), dtype), _targets(2, 6, 4, dtype)
        loss = _call(obj, "loss(a, y)", obj.loss, a, y)
        if (not isinstance(loss, (float, np.floating)) or isinstance(loss, bool)
                or not np.isfinite(loss)):
            raise _fail(obj, f"loss(a, y) returned {brief(loss)}; it must return one finite float "
                             "(the mean over the batch)")
        grad = _call(obj, "gradient(a, y)", obj.gradient, a, y)
        _check_array(obj, f"gradient(a, y) for {dtype.__name__}", grad, a)


def _cost_inputs_untouched(obj: Cost) -> None:
    a, y = _probabilities(3, (6, 4), np.float64), _targets(4, 6, 4, np.float64)
    a0, y0 = a.copy(), y.copy()
    _call(obj, "loss(a, y)", obj.loss, a, y)
    _check_unchanged(obj, "loss(a, y)", a0, a, "a")
    _check_unchanged(obj, "loss(a, y)", y0, y, "y")
    _call(obj, "gradient(a, y)", obj.gradient, a, y)
    _check_unchanged(obj, "gradient(a, y)", a0, a, "a")
    _check_unchanged(obj, "gradient(a, y)", y0, y, "y")


def _cost_batch_mean(obj: Cost) -> None:
    a, y = _probabilities(5, (6, 4), np.float64), _targets(6, 6, 4, np.float64)
    once = _call(obj, "loss(a, y)", obj.loss, a, y)
    twice = _call(obj, "loss(a, y)", obj.loss, np.concatenate([a, a]), np.concatenate([y, y]))
    if not np.isclose(twice, once, rtol=1e-9):
        raise _fail(obj, f"loss is not a mean over the batch: the same batch repeated twice "
                         f"gives {brief(twice)} instead of {brief(once)}; divide the summed "
                         "per-sample loss by len(a)")


def _cost_stateless(obj: Cost) -> None:
    """As for activations, with loss(a1..a3), gradient(a1..a3), then loss(a1..a3) again."""
    batches = [(k, _probabilities(40 + k, (rows, 4), np.float64),
                _targets(50 + k, rows, 4, np.float64))
               for k, rows in enumerate(_STATE_ROWS, start=1)]
    expected: dict[str, object] = {}
    for k, a, y in batches:  # serial: one batch at a time, each on a fresh copy
        alone = _clone(obj)
        loss = _call(obj, f"loss(a{k}, y{k})", alone.loss, a.copy(), y.copy())
        expected[f"loss(a{k}, y{k})"] = expected[f"loss(a{k}, y{k}) called again"] = loss
        expected[f"gradient(a{k}, y{k})"] = np.array(_call(
            obj, f"gradient(a{k}, y{k})", alone.gradient, a.copy(), y.copy()))

    rounds = (("loss", ""), ("gradient", ""), ("loss", " called again"))

    def calls() -> Iterator[tuple[str, object]]:  # every loss, every gradient, every loss
        for method, suffix in rounds:
            for k, a, y in batches:
                what = f"{method}(a{k}, y{k})"
                yield what + suffix, np.array(_watched_call(obj, what, getattr(obj, method),
                                                            a, y))

    order = [f"{method}(a{k}, y{k})" for method, _ in rounds for k, _, _ in batches]
    _interleaved(obj, order, _shapes("a", 4), calls, expected)


def _cost_finite_when_saturated(obj: Cost) -> None:
    for dtype in DTYPES:
        a = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
        y = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
        loss = _call(obj, f"loss(a, y) on outputs of exactly 0 and 1 ({dtype.__name__})",
                     obj.loss, a, y)
        grad = _call(obj, f"gradient(a, y) on outputs of exactly 0 and 1 ({dtype.__name__})",
                     obj.gradient, a, y)
        if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
            raise _fail(obj, f"non-finite loss or gradient for outputs of exactly 0 and 1 "
                             f"({dtype.__name__}); clip probabilities before log or division")


def _cost_gradient(obj: Cost) -> None:
    a, y = _probabilities(7, (6, 4), np.float64), _targets(8, 6, 4, np.float64)
    numeric = _numeric_gradient(lambda x: float(obj.loss(x, y)), a.copy())
    analytic = _call(obj, "gradient(a, y)", obj.gradient, a, y)
    error = _relative_error(numeric, analytic)
    if not error < GRADIENT_TOLERANCE:
        ratio = float(np.vdot(analytic, numeric) / max(np.vdot(numeric, numeric), 1e-300))
        hint = (f"; it is {ratio:.3g} times the true gradient (a missing or extra factor, such "
                "as the division by the batch size or a 2 from a square?)"
                if abs(ratio - 1) > 1e-3 and np.isfinite(ratio) else "")
        raise _fail(obj, f"gradient does not match central finite differences of loss in "
                         f"float64 (relative error {error:.2e} >= {GRADIENT_TOLERANCE:g})"
                         f"{hint}")


def _cost_fused(obj: Cost, activations: Iterable[Activation] | None = None) -> None:
    if activations is None:
        from .registry import get_registry

        activations = [e.obj for e in get_registry().entries["activation"].values()]
    for activation in activations:
        cost = obj.for_output(activation)
        if not isinstance(cost, Cost):
            raise _fail(obj, f"for_output({brief(activation.name)}) returned {brief(cost)}, "
                             "not a Cost")
        fused = cost.fused_delta(activation)
        if fused is None:
            continue
        rng = np.random.default_rng(9)
        z = rng.standard_normal((5, 4))
        a = activation.forward(z)
        y = np.eye(4)[rng.integers(0, 4, 5)]
        expected = activation.backward(z, a, cost.gradient(a, y))
        got = fused(a, y)
        if not np.allclose(got, expected, rtol=1e-7, atol=1e-10):
            raise _fail(obj, f"fused_delta({brief(activation.name)}) differs from "
                             "backward(z, a, gradient(a, y)); the closed form must equal the "
                             "chain rule")


def _cost_roundtrip(obj: Cost) -> None:
    a, y = _probabilities(10, (6, 4), np.float64), _targets(11, 6, 4, np.float64)
    _roundtrip(obj, lambda o: np.asarray(o.gradient(a, y)))


COST_CHECKS: tuple[Check, ...] = (
    Check("contract", "cost", _contract("cost"),
          "an nnframe.Cost with a lowercase snake_case name"),
    Check("shape_and_dtype", "cost", _cost_shape_and_dtype,
          "loss is one finite float; gradient keeps the shape and dtype of a"),
    Check("inputs_untouched", "cost", _cost_inputs_untouched,
          "loss and gradient never modify a or y in place"),
    Check("stateless", "cost", _cost_stateless,
          "no state kept between calls: no call sets or changes an attribute of the object "
          "or its class, and interleaved calls on batches of different shapes give the "
          "serial results"),
    Check("loss_is_batch_mean", "cost", _cost_batch_mean,
          "loss is the mean over the batch of the per-sample loss"),
    Check("finite_when_saturated", "cost", _cost_finite_when_saturated,
          "finite loss and gradient, no warnings, for outputs of exactly 0 and 1"),
    Check("gradient_matches_finite_differences", "cost", _cost_gradient,
          "gradient equals central finite differences of loss (float64, rel. err < 1e-6)"),
    Check("fused_delta_matches_chain_rule", "cost", _cost_fused,
          "any fused_delta equals backward(z, a, gradient(a, y)) for every activation"),
    Check("dill_round_trip", "cost", _cost_roundtrip,
          "survives dill.dumps/dill.loads with identical results"),
)


# -- optimizer checks ----------------------------------------------------------------------
# An optimizer plugin registers a class; each check builds it as nnframe does, with
# `nnframe.optimizers.create` and the class's default hyperparameters, and drives
# `init_state` and `update` as training does: one state per parameter, steps counted from 1.
OPTIMIZER_SHAPES = ((5, 3), (1, 3))  # a weight matrix and a bias row
DESCENT_STEPS = 300
DESCENT_RATES = (0.1, 0.01, 1.0, 0.001)  # tried in turn: plain, adaptive and sign rules
DESCENT_FACTOR = 10.0  # the loss must fall at least this many times


def _label(cls: object) -> str:
    name = getattr(cls, "name", None)
    kind = cls.__name__ if isinstance(cls, type) else type(cls).__name__
    return f"optimizer {brief(name)} ({kind})"


def _ofail(cls: object, message: str) -> AssertionError:
    return AssertionError(f"{_label(cls)}: {message}")


def _build(cls, hyperparameters=None) -> Optimizer:
    from .optimizers import create

    try:
        return create(cls, hyperparameters)
    except Exception as exc:
        settings = (f"the hyperparameters {brief(hyperparameters)}" if hyperparameters
                    else "its default hyperparameters")
        raise _ofail(cls, f"cannot be built with {settings} by nnframe.optimizers.create "
                          f"({type(exc).__name__}: {exc}); nnframe builds it that way for "
                          "get_optimizer(name) and when it loads a saved model") from exc


def _ocall(cls, what: str, fn, *args):
    """``fn(*args)`` under strict numerics; any failure names the optimizer and the call."""
    try:
        with _strict_numerics():
            return fn(*args)
    except (FloatingPointError, RuntimeWarning) as exc:
        raise _ofail(cls, f"{what} is numerically unsafe: {exc}") from exc
    except AssertionError:
        raise
    except Exception as exc:
        raise _ofail(cls, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _rate(step: int) -> float:
    """The learning rate of a step (from 1): it changes, so every step must use its own."""
    return 0.01 * (1 + 0.25 * (step % 4))


def _problem(seed: int, dtype=np.float64, steps: int = 6, shapes=OPTIMIZER_SHAPES):
    """Parameters and, per step, one non-zero gradient per parameter."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in shapes]
             for _ in range(steps)]
    return params, grads


def _init_states(cls, optimizer, params: list[np.ndarray]) -> list[dict]:
    states = []
    for i, param in enumerate(params):
        state = _ocall(cls, f"init_state(parameter {i})", optimizer.init_state, param)
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
            raise _ofail(cls, f"init_state returned {brief(state)}; it must return a dict of "
                              "NumPy arrays with string keys ({} for a rule without state), "
                              "such as {'m': np.zeros_like(param)}")
        states.append(state)
    return states


def _drive(cls, optimizer, params, grads, states, first_step: int = 1, note: str = "") -> None:
    """One ``update`` per parameter per step, as training does."""
    for k, row in enumerate(grads):
        step = first_step + k
        for i, (param, grad, state) in enumerate(zip(params, row, states, strict=True)):
            result = _ocall(cls, f"update(parameter {i}, step {step}){note}", optimizer.update,
                            param, grad, state, _rate(step), step)
            if result is not None:
                raise _ofail(cls, f"update returned {brief(result)}; it must change param and "
                                  "the state arrays in place and return None (nnframe ignores "
                                  "what it returns)")


def _run_fresh(cls, seed: int, dtype=np.float64, optimizer=None):
    """A run from scratch on `_problem(seed)`: the final parameters and states."""
    optimizer = optimizer if optimizer is not None else _build(cls)
    params, grads = _problem(seed, dtype)
    states = _init_states(cls, optimizer, params)
    _drive(cls, optimizer, params, grads, states)
    return params, states


def _max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max((float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0))
                for x, y in zip(a, b, strict=True)), default=0.0)


def _same_run(first, second) -> str | None:
    """None if two runs ended with identical parameters and states, else what differs."""
    (params1, states1), (params2, states2) = first, second
    if not all(np.array_equal(x, y, equal_nan=True)
               for x, y in zip(params1, params2, strict=True)):
        return f"parameters (max difference {_max_difference(params1, params2):.3g})"
    for i, (s1, s2) in enumerate(zip(states1, states2, strict=True)):
        if s1.keys() != s2.keys():
            return f"state keys of parameter {i} ({sorted(s1)} and {sorted(s2)})"
        for key in s1:
            if not (s1[key].shape == s2[key].shape and s1[key].dtype == s2[key].dtype
                    and np.array_equal(s1[key], s2[key], equal_nan=True)):
                return f"state[{key!r}] of parameter {i}"
    return None


def _shared(arrays: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """The first two labelled arrays that share memory."""
    items = list(arrays.items())
    for n, (label, array) in enumerate(items):
        for other, second in items[n + 1:]:
            if np.shares_memory(array, second):
                return label, other
    return None


def _check_memory(cls, params, grads, states, when: str) -> None:
    labelled: dict[str, np.ndarray] = {}
    for i, (param, grad, state) in enumerate(zip(params, grads, states, strict=True)):
        labelled[f"parameter {i}"] = param
        labelled[f"the gradient of parameter {i}"] = grad
        labelled.update((f"state[{key!r}] of parameter {i}", value)
                        for key, value in state.items())
    pair = _shared(labelled)
    if pair is not None:
        raise _ofail(cls, f"{pair[0]} and {pair[1]} share memory {when}; each parameter needs "
                          "its own state arrays, new ones from every init_state call "
                          "(np.zeros_like(param)), never the parameter, the gradient, a "
                          "module-level array or one kept on self")


def _optimizer_contract(cls) -> None:
    try:
        check_contract(cls, "optimizer")
    except PluginContractError as exc:
        message = str(exc)
        said = f"optimizer {brief(getattr(cls, 'name', None))}: "
        raise _ofail(cls, message.removeprefix(said)) from exc
    optimizer = _build(cls)
    hyper = optimizer.hyperparameters
    if not isinstance(hyper, dict) or not all(
            isinstance(k, str) and type(v) in (bool, int, float, str) for k, v in hyper.items()):
        raise _ofail(cls, f"its hyperparameters are {brief(hyper)}; record plain bool, int, "
                          "float or str values with super().__init__(**hyperparameters)")
    again = _build(cls, hyper).hyperparameters
    if again != hyper:
        raise _ofail(cls, f"built again with its recorded hyperparameters {brief(hyper)} it "
                          f"records {brief(again)}; pass each value on to super().__init__ "
                          "unchanged, or a loaded model gets different settings")


def _optimizer_init_state(cls) -> None:
    optimizer = _build(cls)
    for dtype in DTYPES:
        params, _ = _problem(1, dtype, steps=0)
        before = [p.copy() for p in params]
        states = _init_states(cls, optimizer, params)
        for i, (param, old, state) in enumerate(zip(params, before, states, strict=True)):
            if not np.array_equal(param, old):
                raise _ofail(cls, f"init_state modified parameter {i}; it must only read it")
            labelled = {"the parameter": param,
                        **{f"state[{key!r}]": value for key, value in state.items()}}
            pair = _shared(labelled)
            if pair is not None:
                raise _ofail(cls, f"init_state returned arrays that share memory ({pair[0]} "
                                  f"and {pair[1]}, {dtype.__name__}); return a new array for "
                                  "every key (np.zeros_like(param)), never param itself")


def _optimizer_in_place(cls) -> None:
    optimizer = _build(cls)
    params, grads = _problem(2, steps=3)
    originals = list(params)
    before = [p.copy() for p in params]
    states = _init_states(cls, optimizer, params)
    arrays = [dict(state) for state in states]
    _drive(cls, optimizer, params, grads, states)
    for i, (param, original, old) in enumerate(zip(params, originals, before, strict=True)):
        if param is not original or np.array_equal(param, old):
            raise _ofail(cls, f"3 updates with non-zero gradients left parameter {i} "
                              "unchanged; update must change param in place (param -= step, "
                              "or np.subtract(param, step, out=param)): `param = param - step` "
                              "only rebinds a local name")
    for i, (state, made) in enumerate(zip(states, arrays, strict=True)):
        if state.keys() != made.keys():
            raise _ofail(cls, f"update changed the keys of the state of parameter {i} from "
                              f"{sorted(made)} to {sorted(state)}; init_state must make every "
                              "array (a saved model restores what init_state makes)")
        for key, array in made.items():
            if state[key] is not array:
                raise _ofail(cls, f"update replaced state[{key!r}] of parameter {i} with a new "
                                  "array; update the array init_state made in place "
                                  "(m *= beta; m += ..., or out=m)")


def _optimizer_grad_untouched(cls) -> None:
    optimizer = _build(cls)
    params, grads = _problem(3, steps=3)
    kept = [[g.copy() for g in row] for row in grads]
    states = _init_states(cls, optimizer, params)
    _drive(cls, optimizer, params, grads, states)
    for k, (row, copies) in enumerate(zip(grads, kept, strict=True)):
        for i, (grad, copy_) in enumerate(zip(row, copies, strict=True)):
            if not np.array_equal(grad, copy_):
                raise _ofail(cls, f"update modified grad (parameter {i}, step {k + 1}); it must "
                                  "only read it: compute into a new or scratch array, never "
                                  "into grad (no `grad *= ...`, no out=grad)")
    # Modifying grad and putting it back is caught on read-only gradients.
    optimizer = _build(cls)
    params, grads = _problem(3, steps=3)
    for row in grads:
        for grad in row:
            grad.flags.writeable = False
    states = _init_states(cls, optimizer, params)
    try:
        with _strict_numerics():
            _drive(cls, optimizer, params, grads, states)
    except AssertionError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValueError) and "read-only" in str(cause):
            raise _ofail(cls, f"update writes into grad (on a read-only gradient it raised "
                              f"ValueError: {cause}); it must only read it") from cause
        raise


def _optimizer_state_per_parameter(cls) -> None:
    """Two parameters of one shape and one of another, updated in turn by one instance, must
    each end where an update of that parameter alone on a fresh instance ends; around every
    call nothing on the instance or its class may change."""
    shapes = (OPTIMIZER_SHAPES[0], OPTIMIZER_SHAPES[0], OPTIMIZER_SHAPES[1])
    params, grads = _problem(4, shapes=shapes)
    expected = []
    for i in range(len(shapes)):
        alone, fresh = [params[i].copy()], _build(cls)
        state = _init_states(cls, fresh, alone)
        _drive(cls, fresh, alone, [[row[i]] for row in grads], state)
        expected.append(alone[0])
    optimizer = _build(cls)
    advice = ("keep per-parameter data in the state that init_state returns, never on self "
              "or the class: one optimizer instance serves every parameter of a network")
    states = []
    for i, param in enumerate(params):
        before = _state(optimizer)
        states += _init_states(cls, optimizer, [param])
        change = _state_change(before, _state(optimizer))
        if change is not None:
            raise _ofail(cls, f"init_state(parameter {i}) {change}; {advice}")
    _check_memory(cls, params, grads[0], states, "after init_state")
    for k, row in enumerate(grads):
        for i, (param, grad, state) in enumerate(zip(params, row, states, strict=True)):
            before = _state(optimizer)
            _drive(cls, optimizer, [param], [[grad]], [state], first_step=k + 1)
            change = _state_change(before, _state(optimizer))
            if change is not None:
                raise _ofail(cls, f"update(parameter {i}, step {k + 1}) {change}; {advice}")
    _check_memory(cls, params, grads[-1], states, "after the updates")
    for i, (param, want) in enumerate(zip(params, expected, strict=True)):
        if not np.allclose(param, want, rtol=1e-10, atol=1e-12):
            raise _ofail(cls, f"parameter {i} ends elsewhere when one instance updates three "
                              "parameters in turn (two of shape "
                              f"{shapes[0]}, one of {shapes[2]}) than when it is updated alone "
                              f"(max difference {_max_difference([param], [want]):.3g}), so "
                              f"the parameters share state, perhaps outside the object; "
                              f"{advice}")
    # A network trained again, or a second network, may get the same instance afresh.
    differs = _same_run(_run_fresh(cls, 6), _run_fresh(cls, 6, optimizer=optimizer))
    if differs is not None:
        raise _ofail(cls, f"the same instance, run again from fresh states after these "
                          f"updates, ends with different {differs} from a new instance, so "
                          f"it keeps something between runs; {advice}")


def _quadratic(seed: int):
    """f(p) = 0.5 * sum(a * (p - c)**2) over two parameters: curvatures a in [0.5, 2], the
    start 0.5 to 1.5 away from the minimum c in every coordinate."""
    rng = np.random.default_rng(seed)
    curvature = [rng.uniform(0.5, 2.0, shape) for shape in OPTIMIZER_SHAPES]
    centre = [rng.standard_normal(shape) for shape in OPTIMIZER_SHAPES]
    start = [c + rng.choice([-1.0, 1.0], c.shape) * rng.uniform(0.5, 1.5, c.shape)
             for c in centre]
    return curvature, centre, start


def _descend(cls, learning_rate: float) -> tuple[float, float]:
    """The loss before and after `DESCENT_STEPS` steps at ``learning_rate`` (a tenth of it
    for the last third, so rules that circle the minimum settle); inf if it diverged."""
    curvature, centre, start = _quadratic(5)

    def loss(params):
        return float(sum(0.5 * np.sum(a * (p - c) ** 2)
                         for a, c, p in zip(curvature, centre, params, strict=True)))

    optimizer = _build(cls)
    params = [p.copy() for p in start]
    states = _init_states(cls, optimizer, params)
    initial = loss(params)
    for step in range(1, DESCENT_STEPS + 1):
        rate = learning_rate if step <= 2 * DESCENT_STEPS // 3 else learning_rate / 10
        for i, (param, a, c, state) in enumerate(zip(params, curvature, centre, states,
                                                     strict=True)):
            grad = a * (param - c)
            try:
                with _strict_numerics():
                    optimizer.update(param, grad, state, rate, step)
            except (FloatingPointError, RuntimeWarning):
                return initial, float("inf")  # diverged at this rate: another may work
            except Exception as exc:
                raise _ofail(cls, f"update(parameter {i}, step {step}) raised "
                                  f"{type(exc).__name__}: {exc} on a convex quadratic") from exc
        if not all(np.all(np.isfinite(p)) for p in params):
            return initial, float("inf")
    return initial, loss(params)


def _optimizer_descends(cls) -> None:
    tried = []
    for learning_rate in DESCENT_RATES:
        initial, final = _descend(cls, learning_rate)
        if final * DESCENT_FACTOR <= initial:
            return
        tried.append((learning_rate, final))
    shown = ", ".join(f"{final:.4g} at learning rate {rate:g}" for rate, final in tried)
    uphill = all(final > initial for _, final in tried)
    hint = ("; it goes uphill: subtract the step (param -= learning_rate * ...), the "
            "gradient points up the slope" if uphill else "")
    raise _ofail(cls, f"does not descend on a convex quadratic f(p) = 0.5 * sum(a * (p - c)**2) "
                      f"(gradient a * (p - c), a in [0.5, 2]): from loss {initial:.4g}, "
                      f"{DESCENT_STEPS} steps end at {shown} (a tenth of the rate for the last "
                      f"third); at one of these rates the loss must fall at least "
                      f"{DESCENT_FACTOR:g}-fold{hint}")


def _optimizer_deterministic(cls) -> None:
    first = _run_fresh(cls, 6)
    differs = _same_run(first, _run_fresh(cls, 6))
    if differs is not None:
        raise _ofail(cls, f"is not deterministic: two fresh instances, given the same "
                          f"parameters and gradients, end with different {differs}; an update "
                          "must depend only on param, grad, state, learning_rate, step and the "
                          "hyperparameters (no random numbers, nothing kept between runs on "
                          "the class or at module level)")


def _optimizer_keeps_dtype(cls) -> None:
    for dtype in DTYPES:
        optimizer = _build(cls)
        params, grads = _problem(7, dtype, steps=3)
        states = _init_states(cls, optimizer, params)
        made = [{k: v.dtype for k, v in state.items()} for state in states]
        _drive(cls, optimizer, params, grads, states)
        for i, (param, state, first) in enumerate(zip(params, states, made, strict=True)):
            if param.dtype != dtype:
                raise _ofail(cls, f"parameter {i} became {param.dtype} for {dtype.__name__}")
            if not np.all(np.isfinite(param)):
                raise _ofail(cls, f"update gave non-finite values to a {dtype.__name__} "
                                  f"parameter {i}")
            for key, array in state.items():
                if np.issubdtype(array.dtype, np.floating) and array.dtype != dtype:
                    when = ("init_state made" if first.get(key) == array.dtype
                            else "after the updates")
                    raise _ofail(cls, f"{when} state[{key!r}] of dtype {array.dtype} for a "
                                      f"{dtype.__name__} parameter; keep the parameter's dtype "
                                      "(np.zeros_like(param), not np.zeros(param.shape), "
                                      "which is float64), or float32 training doubles the "
                                      "optimizer's memory and time")


def _optimizer_zero_gradient(cls) -> None:
    for dtype in DTYPES:
        optimizer = _build(cls)
        params, grads = _problem(8, dtype, steps=4)
        for row in grads[:2]:
            for grad in row:
                grad[...] = 0  # a parameter nothing depended on yet (a dead unit)
        for row in grads[2:]:
            for grad in row:
                grad[0] = 0
        states = _init_states(cls, optimizer, params)
        _drive(cls, optimizer, params, grads, states,
               note=f" where gradients are zero ({dtype.__name__})")
        if not all(np.all(np.isfinite(p)) for p in params):
            raise _ofail(cls, f"zero gradients give non-finite parameters ({dtype.__name__}); "
                              "guard divisions (add eps)")


def _optimizer_save_and_load(cls) -> None:
    """k steps, the record through pickle and the plain loader, m more steps == k + m
    steps without stopping, for hyperparameters other than the defaults where the class
    accepts them (numbers nudged by 10%)."""
    from . import persistence
    from .optimizers import OptimizerRun

    defaults = _build(cls).hyperparameters
    hyper = {k: v * 0.9 if type(v) is float and v != 0 else v for k, v in defaults.items()}
    try:
        _build(cls, hyper)
    except AssertionError:
        hyper = defaults
    for dtype in DTYPES:
        params, grads = _problem(9, dtype, steps=7)
        stopped = [p.copy() for p in params]

        def apply(run, params, rows, first):
            for k, row in enumerate(rows):
                _ocall(cls, f"update (step {first + k})", run.apply, params,
                       Gradients(arrays=row), _rate(first + k))

        whole = _ocall(cls, "OptimizerRun (init_state)", OptimizerRun, _build(cls, hyper),
                       params)
        apply(whole, params, grads, 1)
        run = _ocall(cls, "OptimizerRun (init_state)", OptimizerRun, _build(cls, hyper),
                     stopped)
        apply(run, stopped, grads[:3], 1)
        record = _ocall(cls, "nnframe.persistence.optimizer_record", persistence.optimizer_record,
                        run)
        where = f"the record of {_label(cls)}"
        try:
            data = dill.dumps(record, protocol=4)
            persistence._scan(data, where)
            record = persistence._PlainUnpickler(io.BytesIO(data)).load()
            stopped = [p.copy() for p in stopped]  # a loaded model has new arrays
            resumed = persistence.optimizer_from_record(record, stopped, cls=cls, where=where)
        except Exception as exc:
            raise _ofail(cls, f"its state does not survive a save and load "
                              f"({type(exc).__name__}: {exc})") from exc
        if resumed.optimizer.hyperparameters != hyper:
            raise _ofail(cls, f"its hyperparameters {brief(hyper)} come back from a save and "
                              f"load as {brief(resumed.optimizer.hyperparameters)}")
        apply(resumed, stopped, grads[3:], 4)
        differs = _same_run((params, whole.states), (stopped, resumed.states))
        if differs is not None:
            raise _ofail(cls, f"3 steps, a save and load, then 4 more steps end with different "
                              f"{differs} from 7 steps without stopping ({dtype.__name__}); "
                              "keep everything an update needs in the state arrays from "
                              "init_state and the hyperparameters (they are what a model file "
                              "holds), nothing on self")


OPTIMIZER_CHECKS: tuple[Check, ...] = (
    Check("contract", "optimizer", _optimizer_contract,
          "an nnframe.Optimizer subclass with a lowercase snake_case name that "
          "nnframe.optimizers.create builds with its defaults, recording plain hyperparameters "
          "that build it again unchanged"),
    Check("init_state", "optimizer", _optimizer_init_state,
          "init_state returns a dict of new NumPy arrays with string keys and leaves the "
          "parameter alone"),
    Check("updates_in_place", "optimizer", _optimizer_in_place,
          "update changes the parameter and the state arrays in place and returns None"),
    Check("grad_untouched", "optimizer", _optimizer_grad_untouched,
          "update never modifies grad (also checked on read-only gradients)"),
    Check("deterministic", "optimizer", _optimizer_deterministic,
          "two fresh instances given the same parameters and gradients end identically"),
    Check("state_per_parameter", "optimizer", _optimizer_state_per_parameter,
          "every parameter has its own state: no arrays shared between parameters, nothing "
          "kept on the instance or class, parameters updated in turn end as each alone, and "
          "the instance run again from fresh states ends as a new one does"),
    Check("keeps_dtype", "optimizer", _optimizer_keeps_dtype,
          "float32 parameters keep float32 state (float64 works too)"),
    Check("finite_on_zero_gradient", "optimizer", _optimizer_zero_gradient,
          "zero gradients give finite parameters with no numerical warnings"),
    Check("descends", "optimizer", _optimizer_descends,
          f"{DESCENT_STEPS} steps on a convex quadratic cut the loss at least "
          f"{DESCENT_FACTOR:g}-fold at one of the learning rates "
          f"{', '.join(f'{r:g}' for r in DESCENT_RATES)}"),
    Check("save_and_load", "optimizer", _optimizer_save_and_load,
          "state and hyperparameters survive optimizer_record, pickling, the plain loader and "
          "optimizer_from_record: k steps, save, load, m steps equal k + m steps"),
)


# -- schedules -----------------------------------------------------------------------------
SCHEDULE_PROBES = ((0.1, 10), (1.0, 1), (0.05, 37))  # (base rate, epochs of the run)


def _sfail(cls: object, message: str) -> AssertionError:
    name = getattr(cls, "name", None)
    label = cls.__name__ if isinstance(cls, type) else type(cls).__name__
    return AssertionError(f"schedule {brief(name)} ({label}): {message}")


def _build_schedule(cls, hyperparameters=None):
    from .configurable import create

    settings = dict(getattr(cls, "example_hyperparameters", {}) or {})
    settings.update(hyperparameters or {})
    try:
        return create(cls, settings)
    except Exception as exc:
        raise _sfail(cls, f"cannot be built with {brief(settings)} by nnframe's create "
                          f"({type(exc).__name__}: {exc}); give the hyperparameters that have "
                          "no default in the class attribute example_hyperparameters") from exc


def _rates(cls, schedule, base: float, num_epochs: int) -> list[float]:
    rates = []
    for epoch in range(2 * num_epochs + 2):  # past the run too: training may continue
        try:
            with _strict_numerics():
                rate = schedule.rate(base, epoch, num_epochs)
        except Exception as exc:
            raise _sfail(cls, f"rate({base}, {epoch}, {num_epochs}) raised "
                              f"{type(exc).__name__}: {exc}") from exc
        if (isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating))
                or not np.isfinite(rate) or rate < 0):
            raise _sfail(cls, f"rate({base}, {epoch}, {num_epochs}) returned {brief(rate)}; "
                              "a learning rate is a finite number >= 0")
        rates.append(float(rate))
    return rates


def _schedule_contract(cls) -> None:
    try:
        check_contract(cls, "schedule")
    except PluginContractError as exc:
        raise _sfail(cls, str(exc)) from exc
    schedule = _build_schedule(cls)
    hyper = schedule.hyperparameters
    if _build_schedule(cls, hyper).hyperparameters != hyper:
        raise _sfail(cls, f"built again with its recorded hyperparameters {brief(hyper)} it "
                          "records others; pass each value on to super().__init__ unchanged")


def _schedule_finite(cls) -> None:
    schedule = _build_schedule(cls)
    for base, num_epochs in SCHEDULE_PROBES:
        _rates(cls, schedule, base, num_epochs)


def _schedule_stateless(cls) -> None:
    """Rates depend on the arguments only: in any order, from any instance, the same."""
    schedule = _build_schedule(cls)
    before = _state(schedule)
    forward = _rates(cls, schedule, 0.1, 10)
    backward = [schedule.rate(0.1, epoch, 10) for epoch in reversed(range(len(forward)))]
    fresh = _rates(cls, _build_schedule(cls), 0.1, 10)
    change = _state_change(before, _state(schedule))
    if change:
        raise _sfail(cls, f"rate changed the schedule ({change}); a saved model resumes a "
                          "schedule from its epoch count alone, so keep no state")
    if forward != backward[::-1] or forward != fresh:
        raise _sfail(cls, "rate gave different values for the same arguments (in another "
                          "order or from a fresh instance); it must depend on them alone")


def _schedule_save_and_load(cls) -> None:
    import dill

    from . import persistence

    schedule = _build_schedule(cls)
    data = dill.dumps({"hyperparameters": schedule.hyperparameters}, protocol=4)
    persistence._scan(data, "the schedule record")
    record = persistence._PlainUnpickler(io.BytesIO(data)).load()
    again = _build_schedule(cls, record["hyperparameters"])
    if _rates(cls, again, 0.1, 10) != _rates(cls, schedule, 0.1, 10):
        raise _sfail(cls, "rebuilt from its saved hyperparameters it gives other rates")


SCHEDULE_CHECKS: tuple[Check, ...] = (
    Check("contract", "schedule", _schedule_contract,
          "an nnframe.Schedule subclass with a snake_case name, built with its defaults (and "
          "example_hyperparameters), recording plain hyperparameters that rebuild it"),
    Check("finite_nonnegative", "schedule", _schedule_finite,
          "rate returns a finite number >= 0 for every epoch of a run and beyond"),
    Check("stateless", "schedule", _schedule_stateless,
          "rate depends on its arguments only, and leaves the instance unchanged"),
    Check("save_and_load", "schedule", _schedule_save_and_load,
          "rebuilt from its hyperparameters through the plain loader, it gives the same rates"),
)


def check_schedule(cls: type[Schedule]) -> None:
    """Run every schedule check of the conformance kit on the class `cls`.

    Args:
        cls: The registered [Schedule][nnframe.Schedule] subclass (the class). Hyperparameters
            without a default are taken from its `example_hyperparameters` class attribute.

    Raises:
        AssertionError: At the first failed check, naming the schedule and what it did.
    """
    for check in SCHEDULE_CHECKS:
        check.run(cls)


def checks_for(obj: object) -> tuple[Check, ...]:
    if isinstance(obj, type) and issubclass(obj, Optimizer):
        return OPTIMIZER_CHECKS
    if isinstance(obj, type) and issubclass(obj, Schedule):
        return SCHEDULE_CHECKS
    return COST_CHECKS if isinstance(obj, Cost) else ACTIVATION_CHECKS


def check_activation(obj: Activation, *, device: str = "cpu") -> None:
    """Run every activation check of the conformance kit on `obj`.

    Args:
        obj: The [Activation][nnframe.Activation] to check.
        device: `"cuda"` also runs `forward`, `forward_inplace` and `backward` on GPU
            arrays and compares them with the CPU's (`"cpu"`, the default: the CPU only).

    Raises:
        AssertionError: At the first failed check, with a message naming the object, the
            check and the fix.
    """
    backend = _backend(device)
    for check in ACTIVATION_CHECKS:
        check.run(obj)
    if not backend.is_host:
        _activation_on_device(obj, backend)


def check_cost(obj: Cost, *, activations: Iterable[Activation] | None = None,
               device: str = "cpu") -> None:
    """Run every cost check of the conformance kit on `obj`.

    Args:
        obj: The [Cost][nnframe.Cost] to check.
        activations: The output activations on which any `fused_delta` the cost offers is
            compared with the chain rule; `None` means every registered activation.
        device: `"cuda"` also runs `loss`, `gradient` and the fused deltas on GPU arrays and
            compares them with the CPU's (`"cpu"`, the default: the CPU only).

    Raises:
        AssertionError: At the first failed check, with a message naming the object, the
            check and the fix.
    """
    backend = _backend(device)
    for check in COST_CHECKS:
        if check.name == "fused_delta_matches_chain_rule":
            _cost_fused(obj, activations)
        else:
            check.run(obj)
    if not backend.is_host:
        _cost_on_device(obj, backend, activations)


def check_optimizer(cls: type[Optimizer], *, device: str = "cpu") -> None:
    """Run every optimizer check of the conformance kit on the class `cls`.

    Each check builds the class as nnframe does (`nnframe.optimizers.create` with its default
    hyperparameters) and drives `init_state` and `update` as training does.

    Args:
        cls: The registered [Optimizer][nnframe.Optimizer] subclass (the class, not an
            instance).
        device: `"cuda"` also runs `init_state` and `update` on GPU parameters and compares
            every step, and the saved state, with the CPU's (`"cpu"`, the default: the CPU
            only).

    Raises:
        AssertionError: At the first failed check, with a message naming the optimizer and
            what it did.
    """
    backend = _backend(device)
    for check in OPTIMIZER_CHECKS:
        check.run(cls)
    if not backend.is_host:
        _optimizer_on_device(cls, backend)



# -- on a device ---------------------------------------------------------------------------
GPU_SAFE = ("A GPU-safe plugin computes with np.* calls and array methods on the arrays it is "
            "given: no np.asarray/np.array of them, no host arrays (np.ones(shape): use "
            "np.ones_like), no where= in ufuncs, no np.random.* global functions; see "
            "'GPU-safe plugins' in the plugin docs.")
# How far a device result may be from the CPU's: another BLAS and other kernels round
# differently (the stand-in device of the tests agrees to the last bit or so).
DEVICE_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def _backend(device):
    from .backend import get_backend

    return get_backend(device)


def _dcall(obj, backend, what: str, fn, *args):
    try:
        return fn(*args)
    except AssertionError:
        raise
    except Exception as exc:
        raise _fail(obj, f"{what} on the device {backend.name!r} raised {type(exc).__name__}: "
                         f"{exc}. {GPU_SAFE}") from exc


def _same_on_device(obj, backend, what: str, out, expected: np.ndarray) -> None:
    """``out`` (a device result) is an array of ``backend`` shaped, typed and valued as the
    CPU's ``expected``."""
    if not backend.owns(out):
        raise _fail(obj, f"{what} on the device {backend.name!r} returned "
                         f"{type(out).__module__}.{type(out).__name__}, not an array of the "
                         f"device. {GPU_SAFE}")
    if out.shape != expected.shape or out.dtype != expected.dtype:
        raise _fail(obj, f"{what} on the device {backend.name!r} returned {out.dtype} "
                         f"{out.shape}, the CPU {expected.dtype} {expected.shape}")
    got = backend.to_host(out)
    tolerance = DEVICE_TOLERANCE.get(expected.dtype, 1e-5)
    if not np.allclose(got, expected, rtol=tolerance, atol=tolerance, equal_nan=True):
        worst = float(np.max(np.abs(got.astype(np.float64) - expected)))
        raise _fail(obj, f"{what} on the device {backend.name!r} differs from the CPU result "
                         f"by up to {worst:.3g} (tolerance {tolerance:g})")


def _activation_on_device(obj: Activation, backend) -> None:
    """forward, forward_inplace and backward on device arrays: device arrays out, the
    inputs untouched, the CPU's values."""
    for dtype in DTYPES:
        for seed, shape in ((13, (5, 7)), (14, (64, 33))):
            z = _batch(seed, dtype, shape) * dtype(3)
            grad = _batch(seed + 100, dtype, shape)
            with np.errstate(all="ignore"):
                a, back = obj.forward(z), None
                back = obj.backward(z, a, grad)
                inplace = obj.forward_inplace(z.copy())
            zd, ad, gd = (backend.asarray(v) for v in (z, a, grad))
            label = f"{np.dtype(dtype).name} {shape}"
            _same_on_device(obj, backend, f"forward ({label})",
                            _dcall(obj, backend, "forward", obj.forward, zd), a)
            _same_on_device(obj, backend, f"backward ({label})",
                            _dcall(obj, backend, "backward", obj.backward, zd, ad, gd), back)
            if not np.array_equal(backend.to_host(zd), z):
                raise _fail(obj, "forward or backward modified z in place on the device")
            _same_on_device(obj, backend, f"forward_inplace ({label})",
                            _dcall(obj, backend, "forward_inplace", obj.forward_inplace,
                                   backend.asarray(z)), inplace)


def _cost_on_device(obj: Cost, backend, activations: Iterable[Activation] | None) -> None:
    """loss (a number), gradient and every fused delta on device arrays match the CPU's."""
    for dtype in DTYPES:
        a, y = _probabilities(21, (6, 4), dtype), _targets(22, 6, 4, dtype)
        ad, yd = backend.asarray(a), backend.asarray(y)
        with np.errstate(all="ignore"):
            loss, grad = obj.loss(a, y), obj.gradient(a, y)
        got = _dcall(obj, backend, "loss", obj.loss, ad, yd)
        try:
            got = float(got)
        except Exception as exc:
            raise _fail(obj, f"loss on the device returned {type(got).__name__}, not a "
                             f"number ({exc}); return float(...) of the device result") from exc
        tolerance = DEVICE_TOLERANCE[np.dtype(dtype)]
        if not np.isclose(got, loss, rtol=tolerance, atol=tolerance):
            raise _fail(obj, f"loss on the device {backend.name!r} is {got!r}, on the CPU "
                             f"{loss!r}")
        _same_on_device(obj, backend, f"gradient ({np.dtype(dtype).name})",
                        _dcall(obj, backend, "gradient", obj.gradient, ad, yd), grad)
    if activations is None:
        from .registry import get_registry

        activations = [e.obj for e in get_registry().entries["activation"].values()]
    for activation in activations:
        cost = obj.for_output(activation)
        fused = cost.fused_delta(activation)
        if fused is None:
            continue
        rng = np.random.default_rng(23)
        z = rng.standard_normal((5, 4))
        a = activation.forward(z)
        y = np.eye(4)[rng.integers(0, 4, 5)]
        _same_on_device(obj, backend, f"fused_delta({brief(activation.name)})",
                        _dcall(obj, backend, f"fused_delta({brief(activation.name)})", fused,
                               backend.asarray(a), backend.asarray(y)), fused(a, y))


def _optimizer_on_device(cls, backend) -> None:
    """init_state and update on device parameters: state arrays of the device, the CPU's
    parameters and states after every step, and the state saved to the host and back."""
    from .optimizers import OptimizerRun
    from .persistence import optimizer_from_record, optimizer_record

    for dtype in DTYPES:
        params, grads = _problem(31, dtype)
        host = OptimizerRun(_build(cls), params)
        device_params = [backend.asarray(p) for p in params]
        run = _ocall(cls, "init_state on the device", OptimizerRun, _build(cls),
                     device_params)
        for i, state in enumerate(run.states):
            for key, value in state.items():
                if not backend.owns(value):
                    raise _ofail(cls, f"init_state on the device {backend.name!r} returned "
                                      f"state[{key!r}] of parameter {i} as "
                                      f"{type(value).__name__}, not an array of the device. "
                                      f"{GPU_SAFE}")
        for k, row in enumerate(grads):
            host.apply(params, Gradients(arrays=row), _rate(k + 1))
            try:
                run.apply(device_params, Gradients(arrays=[backend.asarray(g) for g in row]),
                          _rate(k + 1))
            except Exception as exc:
                raise _ofail(cls, f"update on the device {backend.name!r} raised "
                                  f"{type(exc).__name__}: {exc}. {GPU_SAFE}") from exc
            for i, (param, moved) in enumerate(zip(params, device_params, strict=True)):
                _same_on_device(cls, backend, f"parameter {i} after step {k + 1}", moved,
                                param)
                for key, value in host.states[i].items():
                    _same_on_device(cls, backend, f"state[{key!r}] of parameter {i} after "
                                    f"step {k + 1}", run.states[i][key], value)
        record = optimizer_record(run)
        again = optimizer_from_record(record, device_params, cls)
        for i, (state, saved) in enumerate(zip(again.states, run.states, strict=True)):
            for key, value in saved.items():
                _same_on_device(cls, backend, f"state[{key!r}] of parameter {i} saved and "
                                "loaded", state[key], backend.to_host(value))


# -- running the kit over installed plugins -------------------------------------------------
@dataclass(frozen=True)
class ConformanceCase:
    """One check of one registered object (or a plugin's load failure, ``check=None``)."""

    label: str  # "gelu", "cost:huber" or "optimizer:lion"
    check: Check | None
    obj: object = None
    failure: str | None = None
    provider: str = ""  # "nnframe-extras 0.1.0"

    @property
    def id(self) -> str:
        return f"{self.label}::{self.check.name if self.check else 'loads'}"

    def __call__(self) -> None:
        if self.failure is not None:
            raise AssertionError(self.failure)
        assert self.check is not None
        self.check.run(self.obj)


def _matches(provider, plugin: str) -> bool:
    key = plugin.lower().replace("_", "-")
    names = (provider.distribution, provider.plugin, provider.module.split(":")[0])
    return any(n.lower().replace("_", "-") == key for n in names)


def conformance_cases(plugin: str | None = None) -> list[ConformanceCase]:
    """Every (object, check) pair of an installed plugin, as callable cases.

    Args:
        plugin: A distribution, entry-point or module name (`"nnframe-extras"`), or `None`
            for every installed plugin.

    Returns:
        One `ConformanceCase` per object and check; calling a case runs its check. Plugins
            that failed to load, objects the registry rejected, and a `plugin` that matches
            nothing installed become failing cases.
    """
    from .registry import get_registry

    registry = get_registry()
    cases: list[ConformanceCase] = []
    found = False
    for kind in ("activation", "cost", "optimizer", "schedule"):
        for name, entry in sorted(registry.entries[kind].items()):
            if plugin is not None and not _matches(entry.provider, plugin):
                continue
            found = True
            label = name if kind == "activation" else f"{kind}:{name}"
            who = f"{entry.provider.distribution} {entry.provider.version}"
            cases += [ConformanceCase(label, check, entry.obj, provider=who)
                      for check in checks_for(entry.obj)]
    for failure in registry.failures:
        if plugin is None or _matches(_FailureProvider(failure), plugin):
            found = True
            cases.append(ConformanceCase(
                f"{failure.distribution}:{failure.plugin}", None, failure=failure.describe(),
                provider=f"{failure.distribution} {failure.version}"))
    if not found:
        cases.append(ConformanceCase(str(plugin), None, failure=(
            f"no installed plugin matches {plugin!r}: install the package (pip install -e .) "
            "and check its [project.entry-points.nnframe] table; `nnframe plugins` lists "
            "what is installed")))
    return cases


@dataclass(frozen=True)
class _FailureProvider:
    failure: object

    @property
    def distribution(self) -> str:
        return self.failure.distribution

    @property
    def plugin(self) -> str:
        return self.failure.plugin.split(" = ")[0]

    @property
    def module(self) -> str:
        parts = self.failure.plugin.split(" = ")
        return parts[1] if len(parts) > 1 else parts[0]


def conformance_test(plugin: str):
    """A pytest test function that runs every check on every object `plugin` registers.

    Assign it to a `test_*` name in a test module; the nnframe pytest plugin (loaded
    automatically through the `pytest11` entry point) turns it into one test item per
    object and check, e.g. `test_conformance[gelu::backward_matches_finite_differences]`.

    Args:
        plugin: A distribution, entry-point or module name, as for
            [conformance_cases][nnframe.testing.conformance_cases].

    Returns:
        The test function.

    Examples:
        ```python
        # tests/test_conformance.py of a plugin package: the whole file
        from nnframe.testing import conformance_test

        test_conformance = conformance_test("nnframe-extras")
        ```
    """

    def test_conformance(nnframe_case: ConformanceCase) -> None:
        nnframe_case()

    test_conformance.nnframe_plugin = plugin  # read by nnframe.pytest_plugin
    return test_conformance
