"""Built-in optimizers: sgd, adam, adamw, rmsprop, adagrad, with torch.optim's formulas.

Each one matches the single-tensor path of the ``torch.optim`` class of the same name with
the same settings (tests/test_optimizers.py compares them), including where weight decay
enters: added to the gradient (L2 penalty) by sgd, adam, rmsprop and adagrad; decoupled
(``param *= 1 - lr * weight_decay`` before the step) by adamw.

Memory and dtype: every update works in place with ``out=`` into at most one scratch array
shaped like the parameter (two when weight decay is added to the gradient, whose sum must
not overwrite ``grad``), and scalar coefficients are cast to the parameter's dtype first, so
a float32 parameter is never promoted to float64. State arrays have the parameter's dtype.

Speed: SGD with momentum folds each weight gradient's matrix product into the momentum
buffer (``buf = momentum * buf + a.T @ delta``, one ``gemm``), as plain SGD folds it into the
weights, so the gradient array is never formed. Adam is bound by its square root and
division; it runs one operation fewer than the textbook form and reuses one scratch array per
thread between calls (`_kept_scratch`). See docs/performance.md for what was measured.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import _blas, ops
from ..errors import InputError
from ..hookspecs import hookimpl
from ..optimizers import Optimizer, check_bool, check_number

_local = threading.local()  # per thread, so that two trainings in two threads never share


def _decayed(grad: np.ndarray, param: np.ndarray, weight_decay: float) -> np.ndarray:
    """``grad + weight_decay * param`` (torch's L2 penalty) in a new array, or ``grad``
    itself when ``weight_decay`` is 0 (and then it must only be read)."""
    if weight_decay == 0:
        return grad
    g = np.multiply(param, param.dtype.type(weight_decay))
    g += grad
    return g


def _scratch(param: np.ndarray) -> np.ndarray:
    return np.empty_like(param)


def _kept_scratch(param: np.ndarray) -> np.ndarray:
    """A scratch array shaped like ``param``, kept per thread and dtype between calls (it is
    no part of any state): its contents are garbage, and it is valid until the next call.
    An array subclass gets a fresh array of its class."""
    if type(param) is not np.ndarray:
        return _scratch(param)
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(param.dtype)
    if buffer is None or len(buffer) < param.size:
        buffer = buffers[param.dtype] = np.empty(param.size, dtype=param.dtype)
    return buffer[:param.size].reshape(param.shape)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum: ``torch.optim.SGD``.

    With ``momentum=0`` the update is exactly ``param -= learning_rate * grad`` (plus
    ``weight_decay * param`` in the gradient) and there is no state.
    """

    name = "sgd"

    def __init__(self, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay)
        check_number(self, "momentum", low=0)
        check_number(self, "dampening", low=0, high=1)
        check_bool(self, "nesterov")
        check_number(self, "weight_decay", low=0)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise InputError(
                f"optimizer {self._label()}: nesterov=True needs momentum > 0 and "
                f"dampening = 0 (as in torch.optim.SGD), got momentum={self.momentum!r}, "
                f"dampening={self.dampening!r}; set momentum (e.g. 0.9) or nesterov=False")

    def init_state(self, param):
        if self.momentum == 0:
            return {}
        return {"momentum_buffer": np.zeros_like(param)}

    def _apply(self, run, params, grads, learning_rate):
        factors = grads.factors
        if (self.weight_decay != 0 or factors is None or type(self).update is not SGD.update
                or self.nesterov or self.dampening != 0):
            super()._apply(run, params, grads, learning_rate)
        elif self.momentum == 0:
            # Plain SGD: each layer's update folded into its gradient's matrix product.
            for (a, delta), weights, bias in zip(factors, params[0::2], params[1::2],
                                                 strict=True):
                ops.weight_step(a, delta, learning_rate, weights, bias)
        else:
            self._apply_momentum(run, params, grads, factors, learning_rate)

    def _apply_momentum(self, run, params, grads, factors, learning_rate):
        """Momentum without dampening, Nesterov or weight decay: each weight matrix's
        buffer takes its gradient's product in one ``gemm`` (``buf = momentum * buf +
        a.T @ delta``; on step 1, ``buf = a.T @ delta`` as in torch), so the gradient is
        never formed; then ``weights -= lr * buf``. Biases take `update`."""
        for layer, (a, delta) in enumerate(factors):
            i = 2 * layer
            weights, state, step = params[i], run.states[i], run.steps[i]
            buf = state["momentum_buffer"]
            if _blas.gemm_at_b(a, delta, buf, 1.0, 0.0 if step == 1 else self.momentum):
                work = _kept_scratch(weights)
                np.multiply(buf, weights.dtype.type(learning_rate), out=work)
                weights -= work
            else:  # another dtype, layout or BLAS: the same update from the formed gradient
                self.update(weights, grads[i], state, learning_rate, step)
            self.update(params[i + 1], grads[i + 1], run.states[i + 1], learning_rate,
                        run.steps[i + 1])

    def update(self, param, grad, state, learning_rate, step):
        t = param.dtype.type
        g = _decayed(grad, param, self.weight_decay)
        work = _scratch(param)
        if self.momentum != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                np.copyto(buf, g)  # torch: the first buffer is the gradient, undampened
            else:
                buf *= t(self.momentum)
                if self.dampening == 0:
                    buf += g
                else:
                    np.multiply(g, t(1 - self.dampening), out=work)
                    buf += work
            if self.nesterov:
                np.multiply(buf, t(self.momentum), out=work)
                work += g
                g = work
            else:
                g = buf
        np.multiply(g, t(learning_rate), out=work)
        param -= work


class Adam(Optimizer):
    """Adam with bias correction: ``torch.optim.Adam(betas=(beta1, beta2))``.

    Weight decay is an L2 penalty added to the gradient; see ``adamw`` for the decoupled kind.
    """

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        self._check()

    def _check(self) -> None:
        check_number(self, "beta1", low=0, high=1, high_open=True)
        check_number(self, "beta2", low=0, high=1, high_open=True)
        check_number(self, "eps", low=0, low_open=True)
        check_number(self, "weight_decay", low=0)

    def init_state(self, param):
        return {"exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        self._adam(param, _decayed(grad, param, self.weight_decay), state, learning_rate,
                   step)

    def _adam(self, param, g, state, learning_rate, step):
        t = param.dtype.type
        m, v = state["exp_avg"], state["exp_avg_sq"]
        work = _kept_scratch(param)
        # m <- m + (1 - beta1) (g - m): torch's lerp_
        np.subtract(g, m, out=work)
        work *= t(1 - self.beta1)
        m += work
        # v <- beta2 v + (1 - beta2) g^2
        v *= t(self.beta2)
        np.multiply(g, g, out=work)
        work *= t(1 - self.beta2)
        v += work
        # param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), computed as
        # lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps * sqrt(1 - beta2^t)):
        # one operation fewer (the same up to rounding)
        root2 = math.sqrt(1 - self.beta2 ** step)
        np.sqrt(v, out=work)
        work += t(self.eps * root2)
        np.divide(m, work, out=work)
        work *= t(learning_rate * root2 / (1 - self.beta1 ** step))
        param -= work


class AdamW(Adam):
    """Adam with decoupled weight decay: ``torch.optim.AdamW``.

    Before the Adam step, ``param *= 1 - learning_rate * weight_decay``; the decay never
    enters the moment estimates.
    """

    name = "adamw"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)

    def update(self, param, grad, state, learning_rate, step):
        if self.weight_decay != 0:
            param *= param.dtype.type(1 - learning_rate * self.weight_decay)
        self._adam(param, grad, state, learning_rate, step)


class RMSprop(Optimizer):
    """RMSprop (not centered), optionally with momentum: ``torch.optim.RMSprop``.

    ``eps`` is added after the square root: ``g / (sqrt(v) + eps)``.
    """

    name = "rmsprop"

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0) -> None:
        super().__init__(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        check_number(self, "alpha", low=0, high=1, high_open=True)
        check_number(self, "eps", low=0, low_open=True)
        check_number(self, "weight_decay", low=0)
        check_number(self, "momentum", low=0)

    def init_state(self, param):
        state = {"square_avg": np.zeros_like(param)}
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(param)
        return state

    def update(self, param, grad, state, learning_rate, step):
        t = param.dtype.type
        g = _decayed(grad, param, self.weight_decay)
        v = state["square_avg"]
        work = _scratch(param)
        v *= t(self.alpha)
        np.multiply(g, g, out=work)
        work *= t(1 - self.alpha)
        v += work
        np.sqrt(v, out=work)
        work += t(self.eps)
        np.divide(g, work, out=work)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= t(self.momentum)
            buf += work
            np.multiply(buf, t(learning_rate), out=work)
        else:
            work *= t(learning_rate)
        param -= work


class Adagrad(Optimizer):
    """Adagrad: ``torch.optim.Adagrad`` with ``lr_decay=0, initial_accumulator_value=0``."""

    name = "adagrad"

    def __init__(self, eps: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(eps=eps, weight_decay=weight_decay)
        check_number(self, "eps", low=0, low_open=True)
        check_number(self, "weight_decay", low=0)

    def init_state(self, param):
        return {"sum": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        t = param.dtype.type
        g = _decayed(grad, param, self.weight_decay)
        total = state["sum"]
        work = _scratch(param)
        np.multiply(g, g, out=work)
        total += work
        np.sqrt(total, out=work)
        work += t(self.eps)
        np.divide(g, work, out=work)
        work *= t(learning_rate)
        param -= work


BUILTIN_OPTIMIZERS: tuple[type[Optimizer], ...] = (SGD, Adam, AdamW, RMSprop, Adagrad)


@hookimpl
def register_optimizers(register) -> None:
    """Register the built-in optimizer classes (``register(cls)`` once each)."""
    for cls in BUILTIN_OPTIMIZERS:
        register(cls)
