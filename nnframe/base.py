"""The two plugin contracts: `Activation` and `Cost`.

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

    Subclasses set `name` and implement [forward][nnframe.Activation.forward] and
    [backward][nnframe.Activation.backward]; [check_activation][nnframe.testing.check_activation]
    tests the result. Instances are shared by every network that uses them, and large inputs
    run as row blocks in parallel threads, so an activation must keep no state between calls.

    Attributes:
        name: The registered name: lowercase snake_case, such as `"leaky_relu"`.
        init: Optional. `"he"` for relu-like functions, `"glorot"` (the default) otherwise;
            picks the weight initialisation of the layer that feeds this activation.

    Examples:
        ```python
        import numpy as np
        import nnframe

        class Softsign(nnframe.Activation):
            name = "softsign"

            def forward(self, z):
                return z / (1.0 + np.abs(z))

            def backward(self, z, a, grad):
                return grad / (1.0 + np.abs(z)) ** 2
        ```
    """

    name: str = ""
    init: str = "glorot"

    def forward(self, z: np.ndarray) -> np.ndarray:
        """Compute the activation.

        Args:
            z: The weighted sums, `(batch, units)`, float32 or float64. Never modify it.

        Returns:
            `a = f(z)`: a new array, same shape and dtype as `z`.
        """
        raise NotImplementedError

    def forward_inplace(self, z: np.ndarray) -> np.ndarray:
        """Optional: `forward(z)` computed into `z` itself, which is then returned.

        nnframe calls it only on temporaries it owns and no longer needs (the forward pass of
        `predict`), saving an allocation per layer. The default simply returns
        `forward(z)`; overriding it is purely an optimisation.

        Args:
            z: A temporary `(batch, units)` array that may be overwritten.

        Returns:
            `f(z)`, usually `z` itself.
        """
        return self.forward(z)

    def backward(self, z: np.ndarray, a: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Backpropagate through the activation (a vector-Jacobian product).

        Never modify `z`, `a` or `grad`.

        Args:
            z: The weighted sums of the forward pass.
            a: `forward(z)`, passed so derivatives can be written from outputs.
            grad: `dL/da`, shaped like `a`.

        Returns:
            `dL/dz`, shaped like `z`.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Cost:
    """A cost (loss) function of the network output `a` and targets `y`.

    Subclasses set `name` and implement [loss][nnframe.Cost.loss] and
    [gradient][nnframe.Cost.gradient]; [check_cost][nnframe.testing.check_cost] tests the
    result. Two optional methods are consulted once, when a network is built:
    [for_output][nnframe.Cost.for_output] (the cost to use on a given output activation,
    default `self`) and [fused_delta][nnframe.Cost.fused_delta] (a closed form for `dL/dz`
    on a given output activation, or `None`). Like activations, costs are shared and must
    keep no state between calls.

    Attributes:
        name: The registered name: lowercase snake_case, such as `"cross_entropy"`.

    Examples:
        ```python
        import numpy as np
        import nnframe

        class MeanAbsolute(nnframe.Cost):
            name = "mean_absolute"

            def loss(self, a, y):
                return float(np.abs(a - y).sum(axis=1).mean())

            def gradient(self, a, y):
                return np.sign(a - y) / len(a)
        ```
    """

    name: str = ""

    def loss(self, a: np.ndarray, y: np.ndarray) -> float:
        """The loss of a batch.

        Args:
            a: The network's output, `(batch, outputs)`.
            y: The targets, same shape: one-hot or probability rows.

        Returns:
            The mean over the batch of the per-sample loss, as a Python float.
        """
        raise NotImplementedError

    def gradient(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The gradient of [loss][nnframe.Cost.loss] with respect to the output.

        Args:
            a: The network's output, `(batch, outputs)`.
            y: The targets, same shape.

        Returns:
            `dL/da` (the batch mean included, so divided by the batch size), shaped like `a`.
        """
        raise NotImplementedError

    def for_output(self, activation: Activation) -> Cost:
        """The cost that this name means on `activation`'s output.

        Args:
            activation: The network's output activation.

        Returns:
            The cost to use; the default is `self`.
        """
        return self

    def fused_delta(self, activation: Activation) -> Delta | None:
        """A numerically stable closed form of the output delta, if there is one.

        Recognise `activation` by identity (`type(activation) is MyActivation`), never by
        its `name`: anyone can name an object "softmax", with different maths.

        Args:
            activation: The network's output activation.

        Returns:
            `f(a, y) -> dL/dz` when this cost and `activation` have a stable closed form
                (softmax with cross-entropy gives `(a - y) / batch`), else `None`. It must
                equal `activation.backward(z, a, self.gradient(a, y))`.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
