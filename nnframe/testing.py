"""The plugin conformance kit: run the contract checks on an Activation or a Cost.

``check_activation(obj)`` and ``check_cost(obj)`` raise ``AssertionError`` with a precise
message at the first failure and return ``None`` when the object passes everything.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import dill
import numpy as np

from .base import Activation, Cost
from .errors import PluginContractError
from .registry import check_contract

DTYPES = (np.float32, np.float64)
EXTREME = 1e3
GRADIENT_TOLERANCE = 1e-6


def _fail(obj: object, message: str) -> AssertionError:
    return AssertionError(f"{type(obj).__name__} (name={getattr(obj, 'name', None)!r}): "
                          f"{message}")


def _strict_numerics() -> Callable:
    """Context: any overflow, division by zero, invalid op or RuntimeWarning raises."""

    class _Ctx:
        def __enter__(self):
            self._err = np.errstate(over="raise", divide="raise", invalid="raise",
                                    under="ignore")
            self._warn = warnings.catch_warnings()
            self._err.__enter__()
            self._warn.__enter__()
            warnings.simplefilter("error", RuntimeWarning)
            return self

        def __exit__(self, *exc):
            self._warn.__exit__(*exc)
            self._err.__exit__(*exc)
            return False

    return _Ctx()


def _call(obj, what: str, fn, *args):
    try:
        with _strict_numerics():
            return fn(*args)
    except (FloatingPointError, RuntimeWarning) as exc:
        raise _fail(obj, f"{what} is numerically unsafe: {exc}") from exc
    except AssertionError:
        raise
    except Exception as exc:
        raise _fail(obj, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _check_array(obj, what: str, out, like: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise _fail(obj, f"{what} returned {type(out).__name__}, expected a NumPy array")
    if out.shape != like.shape:
        raise _fail(obj, f"{what} returned shape {out.shape}, expected {like.shape} "
                         "(the input's shape; work row-wise over the whole batch)")
    if out.dtype != like.dtype:
        raise _fail(obj, f"{what} returned dtype {out.dtype} for {like.dtype} input; keep the "
                         "input dtype (avoid float64 constants such as np.float64(...) or "
                         "np.array(...) without dtype)")


def _check_unchanged(obj, what: str, before: np.ndarray, after: np.ndarray, arg: str) -> None:
    if not np.array_equal(before, after, equal_nan=True):
        raise _fail(obj, f"{what} modified its argument {arg!r} in place; return a new array")


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


def _check_roundtrip(obj, probe: Callable[[object], np.ndarray]) -> None:
    try:
        clone = dill.loads(dill.dumps(obj))
    except Exception as exc:
        raise _fail(obj, f"does not survive a dill round trip: {type(exc).__name__}: {exc}") \
            from exc
    if not np.allclose(probe(obj), probe(clone), equal_nan=True):
        raise _fail(obj, "gives different results after a dill round trip")


def _structural(obj, kind: str) -> None:
    try:
        check_contract(obj, kind)
    except PluginContractError as exc:
        raise AssertionError(str(exc)) from exc


def check_activation(obj: Activation, *, seed: int = 0) -> None:
    """Check ``obj`` against the Activation contract; raise AssertionError on failure."""
    _structural(obj, "activation")
    rng = np.random.default_rng(seed)
    for dtype in DTYPES:
        z = rng.standard_normal((5, 7)).astype(dtype)
        grad = rng.standard_normal((5, 7)).astype(dtype)
        z0, grad0 = z.copy(), grad.copy()
        a = _call(obj, f"forward({dtype.__name__})", obj.forward, z)
        _check_array(obj, f"forward(z) for {dtype.__name__}", a, z)
        _check_unchanged(obj, "forward(z)", z0, z, "z")
        a0 = a.copy()
        dz = _call(obj, f"backward({dtype.__name__})", obj.backward, z, a, grad)
        _check_array(obj, f"backward(z, a, grad) for {dtype.__name__}", dz, z)
        _check_unchanged(obj, "backward(z, a, grad)", z0, z, "z")
        _check_unchanged(obj, "backward(z, a, grad)", a0, a, "a")
        _check_unchanged(obj, "backward(z, a, grad)", grad0, grad, "grad")
        # A single row must give the same values as that row inside a batch.
        row = _call(obj, "forward(one row)", obj.forward, z[1:2].copy())
        if not np.allclose(row, a[1:2], rtol=1e-5, atol=1e-6):
            raise _fail(obj, "forward(z) of one row differs from the same row inside a batch; "
                             "do not mix values across rows")
    for dtype in DTYPES:
        z = np.array([[-EXTREME, -1.0, 0.0, 1.0, EXTREME],
                      [EXTREME, EXTREME, -EXTREME, 0.5, -EXTREME]], dtype=dtype)
        a = _call(obj, f"forward(±{EXTREME:g}, {dtype.__name__})", obj.forward, z)
        if not np.all(np.isfinite(a)):
            raise _fail(obj, f"forward gives non-finite values for inputs of ±{EXTREME:g} "
                             f"({dtype.__name__}): {a}")
        dz = _call(obj, f"backward(±{EXTREME:g}, {dtype.__name__})", obj.backward, z, a,
                   np.ones_like(z))
        if not np.all(np.isfinite(dz)):
            raise _fail(obj, f"backward gives non-finite values for inputs of ±{EXTREME:g} "
                             f"({dtype.__name__}): {dz}")
    z = rng.uniform(-3.0, 3.0, (4, 6))
    z[np.abs(z) < 1e-3] = 0.5  # stay clear of kinks such as relu's at 0
    weights = rng.standard_normal((4, 6))
    numeric = _numeric_gradient(lambda x: float(np.sum(obj.forward(x) * weights)), z.copy())
    analytic = obj.backward(z, obj.forward(z), weights)
    error = _relative_error(numeric, analytic)
    if not error < GRADIENT_TOLERANCE:
        raise _fail(obj, f"backward does not match central finite differences of forward in "
                         f"float64 (relative error {error:.2e} >= {GRADIENT_TOLERANCE:g}); "
                         "check the derivative")
    _check_roundtrip(obj, lambda o: o.forward(z))


def _probabilities(rng, shape, dtype):
    p = rng.uniform(0.05, 1.0, shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def check_cost(obj: Cost, *, activations: Iterable[Activation] | None = None,
               seed: int = 0) -> None:
    """Check ``obj`` against the Cost contract; raise AssertionError on failure.

    ``activations`` (default: every registered activation) are used to check that any
    ``fused_delta`` the cost offers equals the generic chain rule.
    """
    _structural(obj, "cost")
    rng = np.random.default_rng(seed)
    for dtype in DTYPES:
        a = _probabilities(rng, (6, 4), dtype)
        y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 6)]
        a0, y0 = a.copy(), y.copy()
        loss = _call(obj, "loss(a, y)", obj.loss, a, y)
        if not isinstance(loss, (float, np.floating)) or not np.isfinite(loss):
            raise _fail(obj, f"loss(a, y) returned {loss!r}; it must return one finite float")
        _check_unchanged(obj, "loss(a, y)", a0, a, "a")
        _check_unchanged(obj, "loss(a, y)", y0, y, "y")
        grad = _call(obj, "gradient(a, y)", obj.gradient, a, y)
        _check_array(obj, f"gradient(a, y) for {dtype.__name__}", grad, a)
        _check_unchanged(obj, "gradient(a, y)", a0, a, "a")
        _check_unchanged(obj, "gradient(a, y)", y0, y, "y")
    a = _probabilities(rng, (6, 4), np.float64)
    y = np.eye(4)[rng.integers(0, 4, 6)]
    doubled = obj.loss(np.concatenate([a, a]), np.concatenate([y, y]))
    if not np.isclose(doubled, obj.loss(a, y), rtol=1e-9):
        raise _fail(obj, "loss is not a mean over the batch: repeating the batch twice changed "
                         "it; divide the summed per-sample loss by len(a)")
    numeric = _numeric_gradient(lambda x: float(obj.loss(x, y)), a.copy())
    error = _relative_error(numeric, obj.gradient(a, y))
    if not error < GRADIENT_TOLERANCE:
        raise _fail(obj, f"gradient does not match central finite differences of loss in float64 "
                         f"(relative error {error:.2e} >= {GRADIENT_TOLERANCE:g}); check the "
                         "derivative and the division by the batch size")
    for dtype in DTYPES:
        a = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
        y = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
        loss = _call(obj, "loss(a, y) on saturated outputs", obj.loss, a, y)
        grad = _call(obj, "gradient(a, y) on saturated outputs", obj.gradient, a, y)
        if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
            raise _fail(obj, f"non-finite loss or gradient for outputs of exactly 0 and 1 "
                             f"({dtype.__name__}); clip probabilities before log or division")
    if activations is None:
        from .registry import get_registry

        activations = [e.obj for e in get_registry().entries["activation"].values()]
    for activation in activations:
        _check_fused(obj, activation, rng)
    _check_roundtrip(obj, lambda o: np.asarray(o.gradient(a, y)))


def _check_fused(obj: Cost, activation: Activation, rng) -> None:
    cost = obj.for_output(activation)
    if not isinstance(cost, Cost):
        raise _fail(obj, f"for_output({activation.name!r}) returned {cost!r}, not a Cost")
    fused = cost.fused_delta(activation)
    if fused is None:
        return
    z = rng.standard_normal((5, 4))
    a = activation.forward(z)
    y = np.eye(4)[rng.integers(0, 4, 5)]
    expected = activation.backward(z, a, cost.gradient(a, y))
    got = fused(a, y)
    if not np.allclose(got, expected, rtol=1e-7, atol=1e-10):
        raise _fail(obj, f"fused_delta({activation.name!r}) differs from backward(gradient); the "
                         "closed form must equal the chain rule")
