"""Built-in costs: mean_squared, cross_entropy, binary_cross_entropy.

Every loss is the mean over the batch of a per-sample loss, and every gradient is the
derivative of that mean, so a learning rate means the same thing for any batch size.
"""

from __future__ import annotations

import numpy as np

from ..base import Cost
from ..hookspecs import hookimpl
from ..ops import row_sums
from .activations import Sigmoid, Softmax

_LIMITS = {np.dtype(t): (np.finfo(t).tiny, 1.0 - np.finfo(t).epsneg)
           for t in (np.float16, np.float32, np.float64)}


def _limits(dtype) -> tuple[float, float]:
    """The smallest positive normal number and the largest number below 1 (np.finfo is slow
    enough per call to show in a training loop, so the common dtypes are cached)."""
    limits = _LIMITS.get(dtype)
    if limits is None:
        info = np.finfo(dtype)
        limits = (info.tiny, 1.0 - info.epsneg)
    return limits


def _tiny(dtype):
    return _limits(dtype)[0]


def _clip_probabilities(a):
    """Keep probabilities inside (0, 1) so no log or division sees 0 (no inf, no NaN)."""
    low, high = _limits(a.dtype)
    return np.clip(a, low, high)


class MeanSquared(Cost):
    """Per-sample loss ``0.5 * sum_k (a_k - y_k)**2``; gradient ``(a - y) / batch``."""

    name = "mean_squared"

    def loss(self, a, y):
        diff = a - y
        return float(0.5 * np.einsum("ij,ij->", diff, diff) / len(a))

    def gradient(self, a, y):
        return (a - y) / len(a)


class CrossEntropy(Cost):
    """Categorical cross-entropy, per-sample loss ``-sum_k y_k log a_k``.

    On a softmax output the delta is the closed form ``(a - y) / batch`` (for one-hot
    rows; ``(a * sum(y) - y) / batch`` in general). On a sigmoid
    output, where each unit is an independent probability, ``cross_entropy`` means
    `BinaryCrossEntropy` (as in the classic design, whose sigmoid delta was
    ``a - y``); `for_output` makes that choice when the network is built.

    Both choices are made by identity, never by name: only the built-in classes themselves
    (exact type, so a subclass that overrides ``forward`` or ``gradient`` is not trusted)
    get them. Anything else, such as a user's own activation named ``"softmax"``, goes
    through the chain rule, ``activation.backward(z, a, gradient(a, y))``.
    """

    name = "cross_entropy"

    def loss(self, a, y):
        p = np.maximum(a, _tiny(a.dtype))  # never log(0)
        np.log(p, out=p)
        return -float(np.vdot(y, p)) / len(a)

    def gradient(self, a, y):
        # The exact derivative of the clipped loss above: zero where a was clipped.
        tiny = _tiny(a.dtype)
        return np.where(a >= tiny, -y / np.maximum(a, tiny), 0.0).astype(a.dtype) / len(a)

    def for_output(self, activation):
        if _exactly(self, CrossEntropy) and _exactly(activation, Sigmoid):
            return BinaryCrossEntropy()
        return self

    def fused_delta(self, activation):
        if _exactly(self, CrossEntropy) and _exactly(activation, Softmax):
            return _softmax_cross_entropy_delta
        return None


class BinaryCrossEntropy(Cost):
    """Per-sample loss ``-sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)]``.

    On a sigmoid output the delta is the closed form ``(a - y) / batch``.
    """

    name = "binary_cross_entropy"

    def loss(self, a, y):
        p = _clip_probabilities(a)
        total = np.einsum("ij,ij->", y, np.log(p)) + np.einsum("ij,ij->", 1.0 - y, np.log1p(-p))
        return float(-total / len(a))

    def gradient(self, a, y):
        p = _clip_probabilities(a)
        # The exact derivative of the clipped loss: zero where a was clipped.
        return np.where(p == a, (p - y) / (p * (1.0 - p)), 0.0).astype(a.dtype) / len(a)

    def fused_delta(self, activation):
        if _exactly(self, BinaryCrossEntropy) and _exactly(activation, Sigmoid):
            return _difference_over_batch
        return None


def _exactly(obj, cls) -> bool:
    """True only for an instance of ``cls`` itself: a closed form is the maths of these exact
    classes, so neither a name nor a subclass (which may override the maths) selects it."""
    return type(obj) is cls


def _difference_over_batch(a, y):
    return (a - y) / len(a)


def _softmax_cross_entropy_delta(a, y):
    # d/dz of -sum(y log softmax(z)) is a * sum(y) - y: exactly a - y for one-hot rows, and
    # still exact for any other targets.
    delta = a * row_sums(y)
    delta -= y
    delta /= len(a)
    return delta


@hookimpl
def register_costs(register):
    for cost in (MeanSquared(), CrossEntropy(), BinaryCrossEntropy()):
        register(cost)
