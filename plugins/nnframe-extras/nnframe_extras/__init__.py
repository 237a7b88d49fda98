"""Extra activations, a cost and an optimizer for nnframe, shipped as a separately installable
plugin."""

from __future__ import annotations

import numpy as np

import nnframe

__version__ = "0.1.0"


def _sigmoid(z):
    e = np.exp(-np.abs(z))  # in (0, 1]: no overflow for any z
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


class LeakyReLU(nnframe.Activation):
    name = "leaky_relu"
    init = "he"
    slope = 0.01

    def forward(self, z):
        return np.where(z > 0, z, self.slope * z)

    def backward(self, z, a, grad):
        return np.where(z > 0, grad, self.slope * grad)


class Softplus(nnframe.Activation):
    name = "softplus"

    def forward(self, z):
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), finite for any z
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))

    def backward(self, z, a, grad):
        return grad * _sigmoid(z)


class SiLU(nnframe.Activation):
    name = "silu"
    init = "he"

    def forward(self, z):
        return z * _sigmoid(z)

    def backward(self, z, a, grad):
        s = _sigmoid(z)
        return grad * (s + a * (1.0 - s))  # d/dz z*s = s + z*s*(1 - s)


class GELU(nnframe.Activation):
    """The tanh approximation of GELU."""

    name = "gelu"
    init = "he"
    _c = float(np.sqrt(2.0 / np.pi))

    def forward(self, z):
        return 0.5 * z * (1.0 + np.tanh(self._c * (z + 0.044715 * z**3)))

    def backward(self, z, a, grad):
        t = np.tanh(self._c * (z + 0.044715 * z**3))
        inner = self._c * (1.0 + 3 * 0.044715 * z * z)
        return grad * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * inner)


class Softsign(nnframe.Activation):
    name = "softsign"

    def forward(self, z):
        return z / (1.0 + np.abs(z))

    def backward(self, z, a, grad):
        return grad / (1.0 + np.abs(z)) ** 2


class Huber(nnframe.Cost):
    """Squared error for small residuals, absolute error beyond ``delta``."""

    name = "huber"
    delta = 0.5

    def loss(self, a, y):
        r = np.abs(a - y)
        small = np.minimum(r, self.delta)
        # 0.5 r^2 up to delta, delta (r - delta / 2) beyond: no square of a large r
        return float((small * (r - 0.5 * small)).sum(axis=1).mean())

    def gradient(self, a, y):
        return np.clip(a - y, -self.delta, self.delta) / len(a)


@nnframe.hookimpl
def register_activations(register):
    for activation in (LeakyReLU(), Softplus(), SiLU(), GELU(), Softsign()):
        register(activation)


@nnframe.hookimpl
def register_costs(register):
    register(Huber())


class Lion(nnframe.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of
    an interpolation between the momentum and the gradient, so every coordinate moves by
    exactly ``learning_rate``. Weight decay is decoupled, as in AdamW. Typical learning
    rates are 3 to 10 times smaller than Adam's."""

    name = "lion"

    def __init__(self, beta1=0.9, beta2=0.99, weight_decay=0.0):
        super().__init__(beta1=beta1, beta2=beta2, weight_decay=weight_decay)
        nnframe.optimizers.check_number(self, "beta1", low=0, high=1)
        nnframe.optimizers.check_number(self, "beta2", low=0, high=1)
        nnframe.optimizers.check_number(self, "weight_decay", low=0)

    def init_state(self, param):
        return {"m": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        t = param.dtype.type  # float coefficients keep a float32 parameter float32
        m = state["m"]
        if self.weight_decay != 0:
            param *= t(1 - learning_rate * self.weight_decay)
        # param -= lr * sign(beta1 m + (1 - beta1) g), in one scratch array
        direction = np.multiply(grad, t(1 - self.beta1))
        direction += t(self.beta1) * m
        np.sign(direction, out=direction)
        direction *= t(learning_rate)
        param -= direction
        # m <- beta2 m + (1 - beta2) g
        m *= t(self.beta2)
        np.multiply(grad, t(1 - self.beta2), out=direction)
        m += direction


@nnframe.hookimpl
def register_optimizers(register):
    register(Lion)
