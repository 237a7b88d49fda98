"""The optimizer plugin contract: `Optimizer`, and its validated instantiation.

An optimizer is a parameter update rule. nnframe instantiates the registered class once per
network with the user's hyperparameters (through `create`), asks it for each
parameter's state (`Optimizer.init_state`), and after every batch calls
`Optimizer.update` once per parameter. A third-party optimizer::

    import numpy as np
    import nnframe

    class Lion(nnframe.Optimizer):
        name = "lion"

        def __init__(self, beta1=0.9, beta2=0.99, weight_decay=0.0):
            super().__init__(beta1=beta1, beta2=beta2, weight_decay=weight_decay)

        def init_state(self, param):
            return {"m": np.zeros_like(param)}

        def update(self, param, grad, state, learning_rate, step):
            m = state["m"]
            param -= learning_rate * np.sign(self.beta1 * m + (1 - self.beta1) * grad)
            m *= self.beta2
            m += (1 - self.beta2) * grad

The helpers `check_number` and `check_bool` give hyperparameter errors the same
shape as the built-ins' (the name, the value, the accepted range).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import ops
from ._text import brief
from .configurable import (
    Configurable,
    accepted_hyperparameters,
    check_bool,
    check_number,
    create,
)
from .errors import PluginContractError

__all__ = ["Gradients", "Optimizer", "OptimizerRun", "accepted_hyperparameters", "check_bool",
           "check_number", "create"]


class Optimizer(Configurable):
    """A parameter update rule (SGD, Adam...), configured by plain hyperparameters.

    Subclasses set ``name``, declare their hyperparameters with defaults as the keyword
    arguments of ``__init__``, pass them all on with ``super().__init__(**hyperparameters)``
    and implement `update` (and `init_state` if the rule keeps state).

    One instance serves every parameter of a network: keep per-parameter data in the state
    that `init_state` returns, never on ``self``.
    """

    name: str = ""
    kind = "optimizer"

    def init_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        """Return the state of one parameter before its first update.

        Args:
            param: the parameter array (a weight matrix or a bias row).

        Returns:
            A dict of NumPy arrays, typically ``np.zeros_like(param)`` (same shape and dtype);
            empty (the default) for a rule without state.
        """
        return {}

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
               learning_rate: float, step: int) -> None:
        """Update ``param`` and the arrays in ``state`` in place.

        Args:
            param: the parameter to change in place; keep its dtype.
            grad: the gradient of the batch-mean cost with respect to ``param``; never modify
                it.
            state: what `init_state` returned for this parameter, as left by the
                previous update.
            learning_rate: the learning rate for this step.
            step: how many times this parameter has been updated, this update included
                (1 on the first call).

        Returns:
            None.
        """
        raise NotImplementedError

    def _apply(self, run: OptimizerRun, params: list[np.ndarray], grads: Gradients,
               learning_rate: float) -> None:
        """One step over every parameter: `update` once per parameter. A built-in may
        override this to use the gradients' factors (see `Gradients`)."""
        for i, param in enumerate(params):
            self.update(param, grads[i], run.states[i], learning_rate, run.steps[i])


# -- applying an optimizer to a network's parameters ---------------------------------------
class Gradients(Sequence):
    """One gradient per parameter, aligned with `NeuralNetwork.parameters()`:
    ``[dW0, db0, dW1, db1, ...]``, each the gradient of the batch-mean cost.

    Backprop yields each layer's gradient as two factors, the layer's inputs ``a`` and the
    error ``delta`` at its outputs (``dW = a.T @ delta``, ``db = column sums of delta``).
    An array is formed the first time it is read, so an update rule that can use the factors
    directly (plain SGD folds them into one BLAS call) never pays for it.
    """

    def __init__(self, factors: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 arrays: list[np.ndarray] | None = None) -> None:
        if arrays is not None:
            self._factors = None
            self._arrays: list[np.ndarray | None] = list(arrays)
        else:
            self._factors = list(factors or [])
            self._arrays = [None] * (2 * len(self._factors))

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        grad = self._arrays[index]
        if grad is None:
            a, delta = self._factors[index // 2]
            grad = a.T @ delta if index % 2 == 0 else ops.column_sums(delta).reshape(1, -1)
            self._arrays[index] = grad
        return grad

    @property
    def factors(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The ``(a, delta)`` pair per layer while no array has been formed or replaced;
        None once the gradients exist only as arrays."""
        if self._factors is None or any(g is not None for g in self._arrays):
            return None
        return self._factors

    def arrays(self) -> list[np.ndarray]:
        """Every gradient as an array (formed now where needed)."""
        return [self[i] for i in range(len(self))]


class OptimizerRun:
    """An optimizer attached to a network's parameters: one state and one step count per
    parameter, the record that saving, resuming and restoring work on.

    Args:
        optimizer: The configured optimizer.
        params: The parameters it updates (`NeuralNetwork.parameters()`).
    """

    def __init__(self, optimizer: Optimizer, params: list[np.ndarray]) -> None:
        self.optimizer = optimizer
        self.states = [self._initial(param, i) for i, param in enumerate(params)]
        self.steps = [0] * len(params)

    def _initial(self, param: np.ndarray, index: int) -> dict[str, np.ndarray]:
        from .backend import backend_of

        state = self.optimizer.init_state(param)
        device = backend_of(param)
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and device.owns(v) for k, v in state.items()):
            where = "" if device.is_host else (
                f" (on the device: arrays of {device.name}, built from the parameter, e.g. "
                "np.zeros_like(param), never np.zeros(param.shape))")
            raise PluginContractError(
                f"optimizer {self.optimizer._label()}: init_state must return a dict of "
                f"NumPy arrays with string keys{where}, got {brief(state)} for parameter "
                f"{index}")
        return state

    def move(self, move) -> None:
        """Replace every state array with ``move(array)`` (to another device)."""
        self.states = [{k: move(v) for k, v in state.items()} for state in self.states]

    def apply(self, params: list[np.ndarray], grads: Gradients, learning_rate: float) -> None:
        """One update of every parameter with its gradient."""
        for i in range(len(self.steps)):
            self.steps[i] += 1
        self.optimizer._apply(self, params, grads, learning_rate)

    def snapshot(self) -> tuple[list[dict[str, np.ndarray]], list[int]]:
        """A copy of every state array and step count, for `restore`."""
        return ([{k: v.copy() for k, v in state.items()} for state in self.states],
                list(self.steps))

    def restore(self, snapshot: tuple[list[dict[str, np.ndarray]], list[int]]) -> None:
        """Put back what `snapshot` copied, into the same arrays."""
        states, steps = snapshot
        for state, saved in zip(self.states, states, strict=True):
            for key, value in saved.items():
                state[key][...] = value
        self.steps[:] = steps
