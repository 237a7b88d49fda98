"""The one parser of nnframe's ``NNFRAME_*`` environment switches.

A switch is on for ``1``, ``true``, ``yes`` or ``on`` and off for ``0``, ``false``, ``no``,
``off`` or an empty value, in any case and with surrounding spaces ignored. Any other value
is never silently taken either way: it gives an `nnframe.EnvironmentWarning` naming
the variable, and the switch stays at its default.
"""

from __future__ import annotations

import os
import warnings

from ._text import brief
from .errors import EnvironmentWarning

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def flag(name: str, default: bool = False) -> bool:
    """The boolean switch ``name``: ``default`` when unset or not understood."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    _warn(name, raw, "use 1, true, yes or on to switch it on, 0, false, no or off (or unset "
          f"it) to switch it off; it stays {'on' if default else 'off'}")
    return default


def positive_int(name: str) -> int | None:
    """The whole number >= 1 in ``name``, or None when unset, empty or not understood."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    _warn(name, raw, "use a whole number such as 4; it is ignored")
    return None


def _warn(name: str, raw: str, advice: str) -> None:
    warnings.warn(f"{name}={brief(raw, 40)} is not understood: {advice}.", EnvironmentWarning,
                  stacklevel=3)
