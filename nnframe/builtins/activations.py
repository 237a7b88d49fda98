"""Built-in activations: sigmoid, tanh, relu, softmax.

Derivatives are written from outputs where that is cheaper (``a * (1 - a)``, ``1 - a**2``).
"""

from __future__ import annotations

import numpy as np

from ..base import Activation
from ..hookspecs import hookimpl


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z):
        # exp(-|z|) lies in (0, 1], so nothing overflows for any z.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0, e) / (1.0 + e)

    def forward_inplace(self, z):
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
        return self.forward_inplace(z - z.max(axis=1, keepdims=True))

    def forward_inplace(self, z):
        z -= z.max(axis=1, keepdims=True)  # exp never overflows
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def backward(self, z, a, grad):
        return a * (grad - (a * grad).sum(axis=1, keepdims=True))


@hookimpl
def register_activations(register):
    for activation in (Sigmoid(), Tanh(), ReLU(), Softmax()):
        register(activation)
