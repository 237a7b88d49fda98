"""Name resolution: the one place that turns ``"relu"`` into an Activation object.

Names are lowercase ``snake_case`` (``leaky_relu``), enforced when a plugin registers them.
Lookups are case-insensitive: ``"ReLU"`` finds ``relu``. Plugins load lazily, on the first
lookup or listing, never on ``import nnframe``.
"""

from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from .base import Activation, Cost
from .errors import DuplicateNameError, NNFrameError, PluginContractError, UnknownNameError
from .plugins import PluginFailure, PluginHost, Provider

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS = {"activation": Activation, "cost": Cost}
PLUGINS_HINT = "Run `nnframe plugins` (or `python -m nnframe plugins`) to list installed plugins."


@dataclass(frozen=True)
class Entry:
    """A registered object together with the plugin that provided it."""

    name: str
    kind: str
    obj: Activation | Cost
    provider: Provider


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {"activation": {}, "cost": {}})
    conflicts: dict[tuple[str, str], list[Provider]] = field(default_factory=dict)
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    @classmethod
    def build(cls) -> Registry:
        host = PluginHost()
        host.load()
        registry = cls()
        for kind, hook_name in (("activation", "register_activations"),
                                ("cost", "register_costs")):
            for obj, provider in host.call_register_hook(hook_name):
                registry._add(host, kind, obj, provider)
        registry.failures = host.failures
        if host.strict and registry.conflicts:
            (kind, name), providers = next(iter(registry.conflicts.items()))
            raise DuplicateNameError(_duplicate_message(kind, name, providers))
        return registry

    def _add(self, host: PluginHost, kind: str, obj: object, provider: Provider) -> None:
        try:
            check_contract(obj, kind)
        except PluginContractError as exc:
            name = getattr(obj, "name", None)
            message = f"{provider.describe()} registered an invalid {kind}: {exc}"
            if isinstance(name, str) and name:
                self.rejected[(kind, name.lower())] = message
            host.report(PluginFailure(provider.plugin, provider.distribution, provider.version,
                                      f"rejected {kind} {name!r}: {exc}"),
                        PluginContractError(message))
            return
        name = obj.name
        table = self.entries[kind]
        if (kind, name) in self.conflicts:
            self.conflicts[(kind, name)].append(provider)
        elif name in table:
            self.conflicts[(kind, name)] = [table.pop(name).provider, provider]
        else:
            table[name] = Entry(name, kind, obj, provider)

    def lookup(self, kind: str, name: str) -> Entry:
        if not isinstance(name, str):
            raise UnknownNameError(
                f"{kind} name must be a string such as {_example(kind)!r}, "
                f"got {type(name).__name__} {name!r}.", name=repr(name), kind=kind)
        key = name.strip().lower()
        if key in self.entries[kind]:
            return self.entries[kind][key]
        if (kind, key) in self.conflicts:
            raise DuplicateNameError(_duplicate_message(kind, key, self.conflicts[(kind, key)]))
        if (kind, key) in self.rejected:
            raise PluginContractError(self.rejected[(kind, key)])
        available = tuple(sorted(self.entries[kind]))
        close = difflib.get_close_matches(key, available, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
        parts = [f"Unknown {kind} {name!r}."]
        if suggestion:
            parts.append(f"Did you mean {suggestion!r}?")
        parts.append(f"Available {kind}s: {', '.join(available) or '(none)'}.")
        if self.failures:
            parts.append(f"{len(self.failures)} plugin(s) failed to load.")
        parts.append(f"If {name!r} comes from a plugin, install it with pip. {PLUGINS_HINT}")
        raise UnknownNameError(" ".join(parts), name=name, kind=kind, available=available,
                               suggestion=suggestion)


def _example(kind: str) -> str:
    return "relu" if kind == "activation" else "cross_entropy"


def _duplicate_message(kind: str, name: str, providers: list[Provider]) -> str:
    who = " and ".join(p.describe() for p in providers)
    return (f"The {kind} name {name!r} is registered by more than one plugin: {who}. "
            f"Uninstall one of them (pip uninstall ...); nnframe never picks one silently. "
            f"{PLUGINS_HINT}")


def check_contract(obj: object, kind: str) -> None:
    """Reject an object that cannot work as an ``kind`` ("activation" or "cost").

    A quick structural probe, run once per object: the base class, the name, and that
    forward keeps the shape (activations) or loss is a finite scalar and the gradient is
    shaped like the output (costs). ``nnframe.testing`` holds the thorough checks.
    """
    base = _KINDS[kind]
    if not isinstance(obj, base):
        raise PluginContractError(
            f"{obj!r} is a {type(obj).__name__}, not a subclass instance of "
            f"nnframe.{base.__name__}; subclass nnframe.{base.__name__} and register an "
            "instance.")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginContractError(
            f"{type(obj).__name__}.name is {name!r}; set it to a lowercase snake_case string "
            "such as 'leaky_relu'.")
    z = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    try:
        with np.errstate(all="ignore"):
            if kind == "activation":
                out = obj.forward(z.copy())
                what = "forward(z)"
            else:
                y = np.eye(4)[[0, 1, 2]]
                a = np.full((3, 4), 0.25)
                loss = obj.loss(a, y)
                if not np.isscalar(loss) and np.ndim(loss) != 0:
                    raise PluginContractError(
                        f"{type(obj).__name__}.loss(a, y) returned an array of shape "
                        f"{np.shape(loss)}; it must return one float (the batch mean).")
                out = obj.gradient(a, y)
                what = "gradient(a, y)"
    except PluginContractError:
        raise
    except Exception as exc:
        raise PluginContractError(
            f"{type(obj).__name__} raised {type(exc).__name__}: {exc} on a (3, 4) float64 "
            "probe.") from exc
    if not isinstance(out, np.ndarray) or out.shape != z.shape:
        got = getattr(out, "shape", type(out).__name__)
        raise PluginContractError(
            f"{type(obj).__name__}.{what} returned {got} for input of shape (3, 4); it must "
            "return an array of the same shape.")


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """Return the registry, loading every plugin on first use."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = Registry.build()
    return _registry


def reload_plugins() -> Registry:
    """Forget every loaded plugin and discover them again (reads the switches anew)."""
    global _registry
    with _lock:
        _registry = None
    return get_registry()


def provider_of(obj: Activation | Cost) -> Provider | None:
    """The installed plugin that provides ``obj`` (an object of the registered class under
    its name), or None for objects defined elsewhere, e.g. in the user's own session."""
    kind = "cost" if isinstance(obj, Cost) else "activation"
    try:
        entry = get_registry().lookup(kind, obj.name)
    except (NNFrameError, AttributeError):
        return None
    return entry.provider if type(entry.obj) is type(obj) else None


def activation_entry(name: str) -> Entry:
    return get_registry().lookup("activation", name)


def cost_entry(name: str) -> Entry:
    return get_registry().lookup("cost", name)


def get_activation(name: str) -> Activation:
    """Return the activation registered as ``name`` (case-insensitive)."""
    return activation_entry(name).obj  # type: ignore[return-value]


def get_cost(name: str) -> Cost:
    """Return the cost registered as ``name`` (case-insensitive)."""
    return cost_entry(name).obj  # type: ignore[return-value]


def list_activations() -> list[str]:
    """Sorted names of every usable activation."""
    return sorted(get_registry().entries["activation"])


def list_costs() -> list[str]:
    """Sorted names of every usable cost."""
    return sorted(get_registry().entries["cost"])


def plugin_failures() -> list[PluginFailure]:
    """Plugins (or objects) that failed to load or were rejected."""
    return list(get_registry().failures)
