"""Plugin objects configured by plain hyperparameters: the base of optimizers and schedules.

A registered class declares its hyperparameters, with defaults, as the keyword arguments of
``__init__`` and passes them all on with ``super().__init__(**hyperparameters)``; nnframe
builds it with the user's values through `create`, and saves the recorded values with a
model. `check_number` and `check_bool` give a subclass's own range checks the same errors
as the built-ins'.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from ._text import brief
from .errors import InputError, PluginContractError

Hyperparameter = bool | int | float | str

ConfigurableT = TypeVar("ConfigurableT", bound="Configurable")


class Configurable:
    """Hyperparameters recorded as plain values and made attributes (``self.beta1``).

    Subclasses set ``name`` (and ``kind``, the plugin kind, for messages).
    """

    name: str = ""
    kind: str = "object"

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
            if (key.startswith("_") or hasattr(Configurable, key) or callable(member)
                    or hasattr(member, "__set__")):
                raise PluginContractError(
                    f"{self.kind} {self._label()}: a hyperparameter cannot be named {brief(key)}, "
                    "which is private or hides a method or member of the class; rename it")
            recorded[key] = _plain(self, key, value)
        self._hyperparameters = recorded
        for key, value in recorded.items():
            setattr(self, key, value)

    @property
    def hyperparameters(self) -> dict[str, Hyperparameter]:
        """A copy of the recorded hyperparameters, in declaration order."""
        return dict(self.__dict__.get("_hyperparameters", {}))

    def _label(self) -> str:
        return brief(self.name or type(self).__name__)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={brief(value, 40)}"
                             for key, value in self.hyperparameters.items())
        return f"<{type(self).__name__} {self.name!r}({settings})>"


def accepted_hyperparameters(cls: type[Configurable]) -> tuple[str, ...] | None:
    """The hyperparameter names that ``cls.__init__`` accepts by keyword, in order.

    Returns:
        The names (none for a class that does not define ``__init__``), or ``None`` when
        its ``__init__`` takes ``**kwargs`` (any name).

    Raises:
        PluginContractError: the signature cannot be read.
    """
    if cls.__init__ is Configurable.__init__:  # **hyperparameters is not a listing
        return ()
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError) as exc:
        raise PluginContractError(
            f"{cls.kind} class {brief(cls)}: its __init__ signature cannot be read ({exc}); "
            "declare the hyperparameters as keyword arguments with defaults") from None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def create(cls: type[ConfigurableT],
           hyperparameters: Mapping[str, Any] | None = None) -> ConfigurableT:
    """Instantiate the class ``cls`` with the user's ``hyperparameters``, checked.

    This is how nnframe builds every optimizer and schedule, built-in or plugin.

    Args:
        cls: a subclass of `Configurable` (`nnframe.Optimizer`, `nnframe.Schedule`).
        hyperparameters: names and plain values; omitted ones take ``__init__``'s defaults.

    Returns:
        The instance, its ``hyperparameters`` recorded.

    Raises:
        InputError: an unknown or missing hyperparameter (the message lists the accepted
            ones), or a value the class refuses.
        PluginContractError: ``cls`` is not such a subclass, or its ``__init__`` did not
            record its hyperparameters with ``super().__init__(**hyperparameters)``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Configurable)):
        raise PluginContractError(f"{brief(cls)} is not a subclass of nnframe.Optimizer or "
                                  "nnframe.Schedule")
    given = dict(hyperparameters or {})
    label = brief(cls.name or cls.__name__)
    kind = cls.kind
    accepted = accepted_hyperparameters(cls)
    for key in given:
        if not isinstance(key, str):
            raise InputError(f"{kind} {label}: hyperparameter names are strings, "
                             f"got {brief(key)}")
    if accepted is not None:
        unknown = [key for key in given if key not in accepted]
        if unknown:
            listing = ", ".join(accepted) if accepted else "none"
            close = difflib.get_close_matches(unknown[0], accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(
                f"{kind} {label} has no hyperparameter {brief(unknown[0])}{hint}; "
                f"it accepts: {listing}.")
        required = [p.name for p in inspect.signature(cls).parameters.values()
                    if p.default is p.empty and p.name in accepted and p.name not in given]
        if required:
            raise InputError(f"{kind} {label} needs the hyperparameter(s) "
                             f"{', '.join(required)}; it accepts: {', '.join(accepted)}.")
    for key, value in given.items():
        _plain(cls, key, value)  # a clear error before the class sees the value
    instance = cls(**given)
    if "_hyperparameters" not in instance.__dict__:
        raise PluginContractError(
            f"{kind} {label}: __init__ did not call super().__init__(**hyperparameters), "
            "so nothing would be saved with the model")
    if accepted is not None:
        missing = [key for key in accepted if key not in instance.hyperparameters]
        if missing:
            raise PluginContractError(
                f"{kind} {label}: __init__ accepts {', '.join(missing)} but does not pass "
                "it on to super().__init__(), so it would not be saved with the model")
    return instance


def _plain(owner: object, key: str, value: object) -> Hyperparameter:
    """``value`` as a plain Python bool, int, float or str, or an InputError."""
    name = getattr(owner, "name", "") or getattr(owner, "__name__", "") or type(owner).__name__
    kind = getattr(owner, "kind", "object")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise InputError(f"{kind} {brief(name)}: hyperparameter {key} must be a finite "
                             f"number, got {brief(value)}")
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise InputError(
        f"{kind} {brief(name)}: hyperparameter {key} must be a plain number, bool or "
        f"string (it is saved with the model), got {brief(value)} of type "
        f"{type(value).__name__}")


def check_number(obj: Configurable, key: str, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> None:
    """Refuse ``obj.<key>`` unless it is an int or float (not a bool) in the range.

    Args:
        obj: the optimizer or schedule whose hyperparameter is checked.
        key: the hyperparameter's name.
        low, high: the bounds; ``None`` for none.
        low_open, high_open: exclude the bound itself.

    Raises:
        InputError: naming the hyperparameter, the value and the accepted range.
    """
    value = getattr(obj, key)
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
        raise InputError(f"{obj.kind} {obj._label()}: {key} must be a number in "
                         f"{interval}, got {brief(value)}")


def check_bool(obj: Configurable, key: str) -> None:
    """Refuse ``obj.<key>`` unless it is ``True`` or ``False``."""
    value = getattr(obj, key)
    if not isinstance(value, bool):
        raise InputError(f"{obj.kind} {obj._label()}: {key} must be True or False, "
                         f"got {brief(value)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
