"""One bounded formatter for every message that shows a value nnframe did not make itself.

Values read from a model file, an environment variable or a plugin can be built to print
forever (a list nested 40 deep, each level referencing the one below four times, is 589
bytes pickled and 4**40 leaves printed), or to raise in ``__repr__``. `brief` shows a
few elements per container, a few levels deep, and never more than ``limit`` characters,
in time bounded by those limits whatever the value is.
"""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = 6
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 6
_REPR.maxstring = 60
_REPR.maxlong = 40
_REPR.maxother = 60


def brief(value: object, limit: int = 120) -> str:
    """A ``repr`` of ``value`` cut to a few elements, levels and at most ``limit`` characters.

    Never raises: a value whose ``__repr__`` fails shows as its type name.
    """
    try:
        # A string that fits is shown whole (a path, a name); anything else is shortened.
        fits = isinstance(value, str) and len(value) <= limit - 2
        text = repr(value) if fits else _REPR.repr(value)
    except Exception:  # a __repr__ that raises, an int too long to print...
        text = f"<{_type_name(value)} object>"
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # pragma: no cover - type() of anything has a name
        return "unprintable"
