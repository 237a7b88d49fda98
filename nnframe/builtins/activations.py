"""Built-in activations: sigmoid, tanh, relu, softmax.

Derivatives are written from outputs where that is cheaper (``a * (1 - a)``, ``1 - a**2``).
"""

from __future__ import annotations

import numpy as np

from ..base import Activation
from ..hookspecs import hookimpl
from ..ops import row_sums


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z):
        # exp(-|z|) lies in (0, 1], so nothing overflows for any z.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0, e) / (1.0 + e)

    def forward_inplace(self, z):
        if not isinstance(z, np.ndarray):  # a device array: CuPy's ufuncs take no where=
            return self.forward(z)
        e = np.exp(-np.abs(z))
        positive = z >= 0
        np.divide(1.0, 1.0 + e, out=z, where=positive)
        np.divide(e, 1.0 + e, out=z, where=~positive)
        return z

    def backward(self, z, a, grad):
        return grad * a * (1.0 - a)


class Tanh(Activation):
    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def forward_inplace(self, z):
        return np.tanh(z, out=z)

    def backward(self, z, a, grad):
        return grad * (1.0 - a * a)


class ReLU(Activation):
    name = "relu"
    init = "he"

    def forward(self, z):
        return np.maximum(z, 0)

    def forward_inplace(self, z):
        return np.maximum(z, 0, out=z)

    def backward(self, z, a, grad):
        return grad * (z > 0)


class Softmax(Activation):
    """Row-wise softmax. Its Jacobian is dense, so backward is a vector-Jacobian product."""

    name = "softmax"

    def forward(self, z):
        return self._normalise(z - _row_max(z))

    def forward_inplace(self, z):
        z -= _row_max(z)
        return self._normalise(z)

    @staticmethod
    def _normalise(shifted):
        np.exp(shifted, out=shifted)  # every row's maximum is 0, so exp never overflows
        shifted /= row_sums(shifted)
        return shifted

    def backward(self, z, a, grad):
        return a * (grad - row_sums(a * grad))


def _row_max(z):
    """``z.max(axis=1, keepdims=True)``. NumPy reduces each short row separately (about
    0.05 us a row), so for many rows of a few columns, as in an output layer, a running
    maximum over the columns (about 0.7 us a column) is faster: 7.6 against 13.6 us for
    256 x 10, 23 against 258 us for 5,000 x 10."""
    rows, columns = z.shape
    if columns > 32 or rows <= 16 * columns or not isinstance(z, np.ndarray):
        return z.max(axis=1, keepdims=True)
    out = z[:, :1].copy()
    for j in range(1, z.shape[1]):
        np.maximum(out[:, 0], z[:, j], out=out[:, 0])
    return out


@hookimpl
def register_activations(register):
    for activation in (Sigmoid(), Tanh(), ReLU(), Softmax()):
        register(activation)
