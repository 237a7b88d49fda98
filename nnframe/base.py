"""The two plugin contracts: :class:`Activation` and :class:`Cost`.

Shapes: ``z`` and ``a`` are ``(batch, units)`` arrays; ``y`` is ``(batch, outputs)`` one-hot
(or any probability rows). Dtypes: float32 or float64; results keep the input dtype. Objects
are shared by every network that uses them, and large inputs are processed as row blocks in
parallel threads, so they must be stateless.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Delta = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Activation:
    """An element-wise or row-wise activation function.

    Subclasses set ``name`` and implement :meth:`forward` and :meth:`backward`.

    Optional members:

    ``init``
        ``"he"`` for relu-like functions, ``"glorot"`` (the default) otherwise; picks the
        weight initialisation of the layer that feeds this activation.
    """

    name: str = ""
    init: str = "glorot"

    def forward(self, z: np.ndarray) -> np.ndarray:
        """Return ``a = f(z)``, same shape and dtype as ``z``; never modify ``z``."""
        raise NotImplementedError

    def forward_inplace(self, z: np.ndarray) -> np.ndarray:
        """Optional: ``forward(z)`` computed into ``z`` itself, which is then returned.

        nnframe calls it only on temporaries it owns and no longer needs (the forward pass of
        ``predict``), saving an allocation per layer. The default simply returns
        ``forward(z)``; overriding it is purely an optimisation.
        """
        return self.forward(z)

    def backward(self, z: np.ndarray, a: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Return ``dL/dz`` given ``grad = dL/da`` (a vector-Jacobian product).

        ``a`` is ``forward(z)``, passed so derivatives can be written from outputs. Return an
        array shaped like ``z``; never modify ``z``, ``a`` or ``grad``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Cost:
    """A cost (loss) function of the network output ``a`` and targets ``y``.

    Subclasses set ``name`` and implement :meth:`loss` and :meth:`gradient`.

    Optional members, consulted once when a network is built:

    :meth:`for_output`
        return the cost to use on a given output activation (default: ``self``).
    :meth:`fused_delta`
        return a closed form for ``dL/dz`` on a given output activation, or ``None``.
    """

    name: str = ""

    def loss(self, a: np.ndarray, y: np.ndarray) -> float:
        """Return the mean over the batch of the per-sample loss, as a Python float."""
        raise NotImplementedError

    def gradient(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return ``dL/da`` of :meth:`loss` (the batch mean included), shaped like ``a``."""
        raise NotImplementedError

    def for_output(self, activation: Activation) -> Cost:
        """Return the cost that this name means on ``activation``'s output."""
        return self

    def fused_delta(self, activation: Activation) -> Delta | None:
        """Return ``f(a, y) -> dL/dz`` when this cost and ``activation`` have a numerically
        stable closed form (for example softmax with cross-entropy gives ``(a - y) / batch``),
        else ``None``. It must equal ``activation.backward(z, a, self.gradient(a, y))``.

        Recognise ``activation`` by identity (``type(activation) is MyActivation``), never by
        its ``name``: anyone can name an object "softmax", with different maths."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
