"""Name resolution: the one place that turns ``"relu"`` into an Activation object.

Names are lowercase ``snake_case`` (``leaky_relu``), enforced when a plugin registers them.
Lookups are case-insensitive: ``"ReLU"`` finds ``relu``. Plugins load lazily, on the first
lookup or listing, never on ``import nnframe``.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._text import brief
from .base import Activation, Cost
from .errors import (
    DuplicateNameError,
    NNFrameError,
    PluginContractError,
    PluginError,
    UnknownNameError,
)
from .optimizers import Optimizer
from .plugins import (
    BUILTINS_ONLY_ENV,
    PluginFailure,
    PluginHost,
    Provider,
    _describe_exception,
    _Failed,
    builtins_only,
)
from .schedules import Schedule

# Always used with fullmatch: with match, "$" also matches before a trailing newline.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Kind:
    """One kind of plugin object: the hook that registers it, its base class, and whether
    plugins register instances (activations, costs) or classes (optimizers, which nnframe
    instantiates with the user's hyperparameters)."""

    name: str
    hook: str
    base: type
    example: str
    registers_classes: bool = False
    # For registered classes: whether they must build with no hyperparameters (an optimizer
    # is asked for by name alone; a schedule may need some, as step needs step_size).
    builds_by_name: bool = True
    # For registered instances: a quick call on a (3, 4) float64 probe ``z`` returning
    # ``(output that must have z's shape, what was called)``.
    probe: Callable[[object, str, np.ndarray], tuple[object, str]] | None = None

    @property
    def article(self) -> str:
        return "an" if self.name[0] in "aeiou" else "a"


def _probe_activation(obj, cls: str, z: np.ndarray) -> tuple[object, str]:
    return obj.forward(z.copy()), "forward(z)"


def _probe_cost(obj, cls: str, z: np.ndarray) -> tuple[object, str]:
    y = np.eye(z.shape[1])[np.arange(z.shape[0]) % z.shape[1]]
    a = np.full(z.shape, 1.0 / z.shape[1])
    loss = obj.loss(a, y)
    if not np.isscalar(loss) and np.ndim(loss) != 0:
        raise PluginContractError(
            f"{cls}.loss(a, y) returned an array of shape {np.shape(loss)}; it must return "
            "one float (the batch mean).")
    return obj.gradient(a, y), "gradient(a, y)"


# The one table of plugin kinds: a new kind is one row here and one hook in hookspecs.
KINDS = {kind.name: kind for kind in (
    Kind("activation", "register_activations", Activation, "relu", probe=_probe_activation),
    Kind("cost", "register_costs", Cost, "cross_entropy", probe=_probe_cost),
    Kind("optimizer", "register_optimizers", Optimizer, "adam", registers_classes=True),
    Kind("schedule", "register_schedules", Schedule, "cosine", registers_classes=True,
         builds_by_name=False),
)}
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
        default_factory=lambda: {kind: {} for kind in KINDS})
    conflicts: dict[tuple[str, str], list[Provider]] = field(default_factory=dict)
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    # Every (provider, object) that claimed a name, to tell a repeat from a conflict.
    _claims: dict[tuple[str, str], list[tuple[Provider, object]]] = field(
        default_factory=dict, repr=False)

    @classmethod
    def build(cls) -> Registry:
        host = PluginHost()
        host.load()
        registry = cls()
        for kind in KINDS.values():
            for obj, provider in host.call_register_hook(kind.hook):
                try:
                    host.check(provider, "", registry._add, host, kind.name, obj, provider)
                except _Failed:
                    continue
        registry.failures = host.failures
        if host.strict and registry.conflicts:
            (kind, name), providers = next(iter(registry.conflicts.items()))
            raise DuplicateNameError(_duplicate_message(kind, name, providers))
        return registry

    def _add(self, host: PluginHost, kind: str, obj: object, provider: Provider) -> None:
        """Check and file one registered object. Runs inside ``host.check``: whatever the
        object's own code raises (its ``name`` property, its ``__repr__``, its methods) is
        reported against its plugin, never raised out of the build."""
        try:
            name = check_contract(obj, kind)
        except PluginContractError as exc:
            name = getattr(obj, "name", None)
            message = f"{provider.describe()} registered an invalid {kind}: {exc}"
            if type(name) is str and name:
                self.rejected[(kind, name.lower())] = message
            host.report(PluginFailure(provider.plugin, provider.distribution, provider.version,
                                      f"rejected {kind} {brief(name)}: {exc}"),
                        PluginContractError(message))
            return
        table = self.entries[kind]
        claims = self._claims.setdefault((kind, name), [])
        if any(p == provider and o is obj for p, o in claims):
            return  # the same object registered again by the same plugin: one registration
        claims.append((provider, obj))
        if len(claims) == 1:
            table[name] = Entry(name, kind, obj, provider)
        else:
            table.pop(name, None)
            self.conflicts[(kind, name)] = list(dict.fromkeys(p for p, _ in claims))

    def lookup(self, kind: str, name: str) -> Entry:
        if not isinstance(name, str):
            raise UnknownNameError(
                f"{kind} name must be a string such as {_example(kind)!r}, "
                f"got {type(name).__name__} {brief(name)}.", name=brief(name), kind=kind)
        key = name.strip().lower()
        if key in self.entries[kind]:
            return self.entries[kind][key]
        if (kind, key) in self.conflicts:
            raise DuplicateNameError(_duplicate_message(kind, key, self.conflicts[(kind, key)]))
        if (kind, key) in self.rejected:
            raise PluginContractError(self.rejected[(kind, key)])
        available = tuple(sorted(self.entries[kind]))
        # difflib is quadratic in the length: no name is longer than a few dozen letters.
        close = difflib.get_close_matches(key, available, n=1, cutoff=0.6) if len(key) < 100 \
            else []
        suggestion = close[0] if close else None
        parts = [f"Unknown {kind} {brief(name)}."]
        if suggestion:
            parts.append(f"Did you mean {suggestion!r}?")
        parts.append(f"Available {kind}s: {', '.join(available) or '(none)'}.")
        if self.failures:
            parts.append(f"{len(self.failures)} plugin(s) failed to load.")
        if builtins_only():
            parts.append(f"Third-party plugins are switched off ({BUILTINS_ONLY_ENV} is set); "
                         f"unset it to use an installed plugin's {kind}s.")
        else:
            parts.append(f"If {brief(name)} comes from a plugin, install it with pip. "
                         f"{PLUGINS_HINT}")
        raise UnknownNameError(" ".join(parts), name=name, kind=kind, available=available,
                               suggestion=suggestion)


def _example(kind: str) -> str:
    return KINDS[kind].example


def _duplicate_message(kind: str, name: str, providers: list[Provider]) -> str:
    if len(providers) == 1:
        return (f"The {kind} name {name!r} is registered twice, by two different objects, by "
                f"{providers[0].describe()}. A plugin registers one object per name; report "
                f"it to the plugin's authors or uninstall it (pip uninstall ...). "
                f"{PLUGINS_HINT}")
    who = " and ".join(p.describe() for p in providers)
    return (f"The {kind} name {name!r} is registered by more than one plugin: {who}. "
            f"Uninstall one of them (pip uninstall ...); nnframe never picks one silently. "
            f"{PLUGINS_HINT}")


def check_contract(obj: object, kind: str) -> str:
    """Reject an object that cannot work as an ``kind`` ("activation" or "cost").

    A quick structural probe, run once per object: the base class, the name, and that
    forward keeps the shape (activations) or loss is a finite scalar and the gradient is
    shaped like the output (costs). ``nnframe.testing`` holds the thorough checks.
    Returns the name, read once (a property could answer differently each time).
    """
    if KINDS[kind].registers_classes:
        return _check_class(obj, KINDS[kind])
    base = KINDS[kind].base
    cls = _class_name(obj)
    if not isinstance(obj, base):
        raise PluginContractError(
            f"{brief(obj)} is a {cls}, not a subclass instance of "
            f"nnframe.{base.__name__}; subclass nnframe.{base.__name__} and register an "
            "instance.")
    name = checked_name(obj, cls, KINDS[kind].example)
    z = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    try:
        with np.errstate(all="ignore"):
            out, what = KINDS[kind].probe(obj, cls, z)
    except PluginContractError:
        raise
    except Exception as exc:
        raise PluginContractError(
            f"{cls} raised {_describe_exception(exc)} on a (3, 4) float64 probe.") from exc
    if not isinstance(out, np.ndarray) or out.shape != z.shape:
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise PluginContractError(
            f"{cls}.{what} returned {got} for input of shape (3, 4); it must "
            "return an array of the same shape.")
    return name


def _check_class(obj: object, kind: Kind) -> str:
    """The contract of a registered class (an optimizer): a subclass of the kind's base with
    a snake_case ``name``, that can be built with its default hyperparameters."""
    base = kind.base.__name__
    if not (isinstance(obj, type) and issubclass(obj, kind.base)):
        what = "an instance" if isinstance(obj, kind.base) else f"a {_class_name(obj)}"
        raise PluginContractError(
            f"{brief(obj)} is {what}, not a subclass of nnframe.{base}; register the class "
            f"itself (register({base}Subclass)): nnframe instantiates it with the user's "
            "hyperparameters.")
    name = checked_name(obj, obj.__name__, kind.example)
    from .configurable import accepted_hyperparameters, create

    try:
        accepted_hyperparameters(obj)  # a signature that can be read
        required = [p for p in inspect.signature(obj).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                           p.KEYWORD_ONLY)]
        if kind.builds_by_name or not required:
            create(obj)  # its defaults must build: get_optimizer(name) uses them
    except PluginContractError:
        raise
    except Exception as exc:
        raise PluginContractError(f"{obj.__name__}() with its default hyperparameters raised "
                                  f"{_describe_exception(exc)}.") from exc
    return name


def checked_name(obj: object, label: str, example: str) -> str:
    """``obj.name``, read once, if it is a snake_case string; a plain str whatever subclass
    the plugin used."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PluginContractError(
            f"{label}.name is {brief(name)}; set it to a lowercase snake_case string such as "
            f"{example!r}.")
    return str.__str__(name)


def _class_name(obj: object) -> str:
    name = type(obj).__name__
    return name if type(name) is str and len(name) <= 80 else "object"


_lock = threading.Lock()
_registry: Registry | None = None
# The thread that is building the registry (loading plugins), if any. A plugin that looks a
# name up from its import or its hook comes back here on that thread: waiting for the lock
# would wait for itself, so that is an error (reported against the plugin) instead.
_builder: int | None = None


def _refuse_reentry(what: str) -> None:
    if _builder is not None and _builder == threading.get_ident():
        raise PluginError(
            f"nnframe.{what}() was called while plugins are being loaded, from a plugin's "
            "import or register hook; the names are not known yet. Look names up when your "
            "objects are used (in forward, loss...), not while registering them.")


def get_registry() -> Registry:
    """Return the registry, loading every plugin on first use."""
    global _registry, _builder
    registry = _registry
    if registry is not None:
        return registry
    _refuse_reentry("get_registry")
    with _lock:
        if _registry is None:
            _builder = threading.get_ident()
            try:
                _registry = Registry.build()
            finally:
                _builder = None
        return _registry


def reload_plugins() -> Registry:
    """Forget every loaded plugin and discover them again.

    The `NNFRAME_*` switches are read anew. Networks already built keep the objects they
    resolved.

    Returns:
        The new registry.
    """
    global _registry
    _refuse_reentry("reload_plugins")
    with _lock:
        _registry = None
    return get_registry()


def _after_fork_in_child() -> None:
    """A fork() copies the lock as it was: held for ever if another thread held it. Only the
    forking thread exists in the child, so a fresh lock is right; an unfinished build is
    abandoned (the registry stays None and the child builds its own)."""
    global _lock, _builder
    _lock = threading.Lock()
    if _builder is not None and _builder != threading.get_ident():
        _builder = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def provider_of(obj: Activation | Cost | Optimizer) -> Provider | None:
    """The installed plugin that provides ``obj`` (an object of the registered class under
    its name), or None for objects defined elsewhere, e.g. in the user's own session."""
    kind = next((k for k in KINDS.values() if isinstance(obj, k.base)), None)
    if kind is None:
        return None
    try:
        entry = get_registry().lookup(kind.name, obj.name)
    except (NNFrameError, AttributeError):
        return None
    registered = entry.obj if kind.registers_classes else type(entry.obj)
    return entry.provider if registered is type(obj) else None


def activation_entry(name: str) -> Entry:
    return get_registry().lookup("activation", name)


def cost_entry(name: str) -> Entry:
    return get_registry().lookup("cost", name)


def get_activation(name: str) -> Activation:
    """The activation registered as `name`.

    Args:
        name: A registered name, in any case (`"ReLU"` finds `relu`).

    Returns:
        The shared [Activation][nnframe.Activation] object.

    Raises:
        UnknownNameError: Nothing is registered as `name`; the message lists what is and
            suggests the closest match.
        DuplicateNameError: Two plugins registered `name`.
        PluginContractError: The object registered as `name` was rejected.
    """
    return activation_entry(name).obj  # type: ignore[return-value]


def get_cost(name: str) -> Cost:
    """The cost registered as `name`.

    Args:
        name: A registered name, in any case.

    Returns:
        The shared [Cost][nnframe.Cost] object.

    Raises:
        UnknownNameError: Nothing is registered as `name`; the message lists what is and
            suggests the closest match.
        DuplicateNameError: Two plugins registered `name`.
        PluginContractError: The object registered as `name` was rejected.
    """
    return cost_entry(name).obj  # type: ignore[return-value]


def list_activations() -> list[str]:
    """Every usable activation.

    Returns:
        The names, sorted.
    """
    return sorted(get_registry().entries["activation"])


def list_costs() -> list[str]:
    """Every usable cost.

    Returns:
        The names, sorted.
    """
    return sorted(get_registry().entries["cost"])


def plugin_failures() -> list[PluginFailure]:
    """Plugins (or objects) that failed to load or were rejected.

    Returns:
        One `PluginFailure` per problem (its `describe()` says which plugin, and why);
            empty when every plugin loaded.
    """
    return list(get_registry().failures)


def get_optimizer(name: str, **hyperparameters) -> Optimizer:
    """A new instance of the optimizer registered as `name`.

    Args:
        name: A registered optimizer name such as `"adam"` (case-insensitive).
        **hyperparameters: The optimizer's hyperparameters (for example `beta1=0.9`); those
            not given keep the optimizer's defaults.

    Returns:
        A fresh optimizer, with no per-parameter state.

    Raises:
        UnknownNameError: No optimizer has that name; the message lists those that exist.
        InputError: A hyperparameter is unknown (the message lists the accepted ones) or out
            of range.
    """
    from .optimizers import create

    return create(get_registry().lookup("optimizer", name).obj, hyperparameters)


def list_optimizers() -> list[str]:
    """Every usable optimizer.

    Returns:
        The registered optimizer names, sorted.
    """
    return sorted(get_registry().entries["optimizer"])


def get_schedule(name: str, **hyperparameters) -> Schedule:
    """A new instance of the learning-rate schedule registered as `name`.

    Args:
        name: A registered schedule name such as `"cosine"` (case-insensitive).
        **hyperparameters: The schedule's hyperparameters (for example `step_size=10`).

    Returns:
        The schedule, for `train(..., schedule=...)`.

    Raises:
        UnknownNameError: No schedule has that name; the message lists those that exist.
        InputError: A hyperparameter is unknown, missing or out of range.
    """
    from .configurable import create

    return create(get_registry().lookup("schedule", name).obj, hyperparameters)


def list_schedules() -> list[str]:
    """Every usable learning-rate schedule.

    Returns:
        The registered schedule names, sorted.
    """
    return sorted(get_registry().entries["schedule"])
