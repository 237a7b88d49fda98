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

import difflib
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from . import ops
from ._text import brief
from .errors import InputError, PluginContractError

Hyperparameter = bool | int | float | str

OptimizerT = TypeVar("OptimizerT", bound="Optimizer")


class Optimizer:
    """A parameter update rule (SGD, Adam...), configured by plain hyperparameters.

    Subclasses set ``name``, declare their hyperparameters with defaults as the keyword
    arguments of ``__init__``, pass them all on with ``super().__init__(**hyperparameters)``
    and implement `update` (and `init_state` if the rule keeps state).

    One instance serves every parameter of a network: keep per-parameter data in the state
    that `init_state` returns, never on ``self``.
    """

    name: str = ""

    def __init__(self, **hyperparameters: Hyperparameter) -> None:
        """Record the hyperparameters and make each one an attribute (``self.beta1``).

        They are what gets saved with a model, so record every one of them, defaults
        included.

        Args:
            **hyperparameters: plain values: ``bool``, ``int``, ``float`` (finite) or ``str``.
                NumPy scalars are converted to the Python type.

        Raises:
            InputError: a value is not a plain number, bool or string, or a float is NaN or
                infinite.
            PluginContractError: a name is private (``_x``) or would hide a member of the class
                (``update``, ``name``...).
        """
        recorded: dict[str, Hyperparameter] = {}
        for key, value in hyperparameters.items():
            # A method would be hidden by the value; a property would refuse it or hide it.
            member = inspect.getattr_static(type(self), key, None)
            if (key.startswith("_") or hasattr(Optimizer, key) or callable(member)
                    or hasattr(member, "__set__")):
                raise PluginContractError(
                    f"optimizer {self._label()}: a hyperparameter cannot be named {brief(key)}, "
                    "which is private or hides a method or member of the class; rename it")
            recorded[key] = _plain(self, key, value)
        self._hyperparameters = recorded
        for key, value in recorded.items():
            setattr(self, key, value)

    @property
    def hyperparameters(self) -> dict[str, Hyperparameter]:
        """A copy of the recorded hyperparameters, in declaration order."""
        return dict(self.__dict__.get("_hyperparameters", {}))

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

    def _label(self) -> str:
        return brief(self.name or type(self).__name__)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={brief(value, 40)}"
                             for key, value in self.hyperparameters.items())
        return f"<{type(self).__name__} {self.name!r}({settings})>"


def accepted_hyperparameters(cls: type[Optimizer]) -> tuple[str, ...] | None:
    """The hyperparameter names that ``cls.__init__`` accepts by keyword, in order.

    Returns:
        The names (none for a class that does not define ``__init__``), or ``None`` when
        its ``__init__`` takes ``**kwargs`` (any name).

    Raises:
        PluginContractError: the signature cannot be read.
    """
    if cls.__init__ is Optimizer.__init__:  # the base's **hyperparameters is not a listing
        return ()
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError) as exc:
        raise PluginContractError(
            f"optimizer class {brief(cls)}: its __init__ signature cannot be read ({exc}); "
            "declare the hyperparameters as keyword arguments with defaults") from None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def create(cls: type[OptimizerT],
           hyperparameters: Mapping[str, Any] | None = None) -> OptimizerT:
    """Instantiate the optimizer class ``cls`` with the user's ``hyperparameters``, checked.

    This is how nnframe builds every optimizer, built-in or plugin.

    Args:
        cls: a subclass of `Optimizer`.
        hyperparameters: names and plain values; omitted ones take ``__init__``'s defaults.

    Returns:
        The instance, its ``hyperparameters`` recorded.

    Raises:
        InputError: an unknown or missing hyperparameter (the message lists the accepted
            ones), or a value the class refuses.
        PluginContractError: ``cls`` is not an Optimizer subclass, or its ``__init__`` did not
            record its hyperparameters with ``super().__init__(**hyperparameters)``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise PluginContractError(f"{brief(cls)} is not a subclass of nnframe.Optimizer")
    given = dict(hyperparameters or {})
    label = brief(cls.name or cls.__name__)
    accepted = accepted_hyperparameters(cls)
    for key in given:
        if not isinstance(key, str):
            raise InputError(f"optimizer {label}: hyperparameter names are strings, "
                             f"got {brief(key)}")
    if accepted is not None:
        unknown = [key for key in given if key not in accepted]
        if unknown:
            listing = ", ".join(accepted) if accepted else "none"
            close = difflib.get_close_matches(unknown[0], accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"optimizer {label} has no hyperparameter {brief(unknown[0])}{hint}. "
                f"It accepts: {listing}.")
        required = [p.name for p in inspect.signature(cls).parameters.values()
                    if p.default is p.empty and p.name in accepted and p.name not in given]
        if required:
            raise InputError(f"optimizer {label} needs the hyperparameter(s) "
                             f"{', '.join(required)}; it accepts: {', '.join(accepted)}.")
    for key, value in given.items():
        _plain(cls, key, value)  # a clear error before the class sees the value
    optimizer = cls(**given)
    if "_hyperparameters" not in optimizer.__dict__:
        raise PluginContractError(
            f"optimizer {label}: __init__ did not call super().__init__(**hyperparameters), "
            "so nothing would be saved with the model")
    if accepted is not None:
        missing = [key for key in accepted if key not in optimizer.hyperparameters]
        if missing:
            raise PluginContractError(
                f"optimizer {label}: __init__ accepts {', '.join(missing)} but does not pass "
                "it on to super().__init__(), so it would not be saved with the model")
    return optimizer


def _plain(owner: object, key: str, value: object) -> Hyperparameter:
    """``value`` as a plain Python bool, int, float or str, or an InputError."""
    name = getattr(owner, "name", "") or getattr(owner, "__name__", "") or type(owner).__name__
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise InputError(f"optimizer {brief(name)}: hyperparameter {key} must be a finite "
                             f"number, got {brief(value)}")
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise InputError(
        f"optimizer {brief(name)}: hyperparameter {key} must be a plain number, bool or "
        f"string (it is saved with the model), got {brief(value)} of type "
        f"{type(value).__name__}")


def check_number(optimizer: Optimizer, key: str, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> None:
    """Refuse ``optimizer.<key>`` unless it is an int or float (not a bool) in the range.

    Args:
        optimizer: the optimizer whose hyperparameter is checked.
        key: the hyperparameter's name.
        low, high: the bounds; ``None`` for none.
        low_open, high_open: exclude the bound itself.

    Raises:
        InputError: naming the hyperparameter, the value and the accepted range.
    """
    value = getattr(optimizer, key)
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = (f"{left}{'-inf' if low is None else _num(low)}, "
                f"{'inf' if high is None else _num(high)}{right}")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise InputError(f"optimizer {optimizer._label()}: {key} must be a number in "
                         f"{interval}, got {brief(value)}")


def check_bool(optimizer: Optimizer, key: str) -> None:
    """Refuse ``optimizer.<key>`` unless it is ``True`` or ``False``."""
    value = getattr(optimizer, key)
    if not isinstance(value, bool):
        raise InputError(f"optimizer {optimizer._label()}: {key} must be True or False, "
                         f"got {brief(value)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


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
        state = self.optimizer.init_state(param)
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
            raise PluginContractError(
                f"optimizer {self.optimizer._label()}: init_state must return a dict of "
                f"NumPy arrays with string keys, got {brief(state)} for parameter {index}")
        return state

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
