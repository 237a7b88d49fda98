"""The one plugin manager: entry-point discovery and loading, each plugin on its own.

Nothing else in nnframe touches pluggy. Switches (environment variables, read when the
plugins are first loaded):

``NNFRAME_STRICT_PLUGINS=1``
    a plugin that fails to import, to register, or breaks the contract raises an error
    instead of a warning (for plugin authors).
``NNFRAME_BUILTINS_ONLY=1``
    load only nnframe's built-in plugins; ignore every installed third-party plugin.

Containment: every call into plugin code made while loading (importing the entry point,
registering it with pluggy, calling a hook) goes through `PluginHost.contain`, which
turns an exception of *any* kind, ``BaseException`` included, into a reported failure that
names the entry point and distribution. That includes ``SystemExit``, ``GeneratorExit`` and
``KeyboardInterrupt``: a ``KeyboardInterrupt`` raised by plugin code cannot be told apart from
a real Ctrl-C arriving while that plugin's code runs, so both are reported as that plugin's
failure and loading goes on; loading takes a moment, and a Ctrl-C after it interrupts as
usual.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pluggy

from . import _env, hookspecs
from ._text import brief
from .errors import PluginLoadError, PluginWarning

ENTRY_POINT_GROUP = "nnframe"
DEFAULT_PLUGINS = ("nnframe.builtins.activations", "nnframe.builtins.costs",
                   "nnframe.builtins.optimizers", "nnframe.builtins.schedules")
STRICT_ENV = "NNFRAME_STRICT_PLUGINS"
BUILTINS_ONLY_ENV = "NNFRAME_BUILTINS_ONLY"


def strict_mode() -> bool:
    return _env.flag(STRICT_ENV)


def builtins_only() -> bool:
    return _env.flag(BUILTINS_ONLY_ENV)


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from."""

    plugin: str  # entry-point name, or module name for a built-in loaded from source
    module: str
    distribution: str
    version: str
    builtin: bool = False

    def describe(self) -> str:
        return f"plugin {self.plugin!r} from {self.distribution} {self.version}"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin, or one object it registered, that could not be used."""

    plugin: str
    distribution: str
    version: str
    error: str

    def describe(self) -> str:
        return f"plugin {self.plugin!r} from {self.distribution} {self.version}: {self.error}"


def _nnframe_version() -> str:
    from . import __version__

    return __version__


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:  # pragma: no cover - Python < 3.10 metadata objects
        return "unknown distribution", "unknown version"
    return dist.metadata["Name"] or "unknown distribution", dist.version or "unknown version"


# Every hook declared in hookspecs (one per plugin kind; see registry.KINDS).
HOOK_NAMES = tuple(name for name, fn in vars(hookspecs).items()
                   if getattr(fn, "nnframe_spec", None) is not None)


def _describe_exception(exc: BaseException) -> str:
    """``Type: message``, bounded, and never raising (a plugin's exception may carry a
    ``__str__`` that raises or a message megabytes long)."""
    try:
        text = str(exc)
    except BaseException:
        text = brief(exc)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


class _Failed(Exception):
    """Plugin code failed and the failure has been reported; skip this plugin."""


class _Verdict(PluginLoadError):
    """nnframe's own finding about a plugin (raised inside `PluginHost.contain`),
    reported as its bare message."""


class PluginHost:
    """Owns a pluggy ``PluginManager`` and the provenance of every plugin in it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("nnframe")
        self.pm.add_hookspecs(hookspecs)
        self.providers: dict[str, Provider] = {}
        self.failures: list[PluginFailure] = []
        self.strict = strict_mode()
        # The error report() raised on purpose (strict mode, or a warning filter set to
        # "error"), which contain() must pass on instead of reporting it again.
        self._stopping: BaseException | None = None

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        if not builtins_only():
            seen: set[tuple[str, str]] = set()
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                # The same distribution visible twice on sys.path lists its entry points twice.
                if (ep.name, ep.value) in seen:
                    continue
                seen.add((ep.name, ep.value))
                self._load_entry_point(ep)
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            if not self.pm.is_registered(module):  # running from a source tree
                self._register(module, Provider(module_name, module_name, "nnframe",
                                                _nnframe_version(), builtin=True))

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist, version = _dist_of(ep)
        label = f"{ep.name} = {ep.value}"
        try:
            plugin = self.contain(label, dist, version, "", ep.load)
            if self.contain(label, dist, version, "", self._already_registered, plugin):
                return  # two entry points naming one module
            builtin = dist == "nnframe" and ep.value in DEFAULT_PLUGINS
            provider = Provider(ep.name, ep.value, dist, version, builtin=builtin)
            self.contain(label, dist, version, "", self._register, plugin, provider)
        except _Failed:
            return

    def _already_registered(self, plugin: object) -> bool:
        # pluggy compares with ==, which is the plugin's own code.
        return plugin is not None and self.pm.is_registered(plugin)

    def _register(self, plugin: object, provider: Provider) -> None:
        if plugin is None or (not isinstance(plugin, (types.ModuleType, type)) and not any(
                callable(getattr(plugin, hook, None)) for hook in HOOK_NAMES)):
            # An int, a function, None...: pluggy would accept it and it would provide nothing.
            raise _Verdict(
                f"the entry point resolves to {brief(plugin)}, not a module or object with "
                f"nnframe hooks ({', '.join(HOOK_NAMES)}); point it at your plugin module")
        name = self.pm.register(plugin)
        if name is None:  # pragma: no cover - nnframe never blocks plugin names
            raise _Verdict("pluggy refused to register it")
        try:
            self.pm.check_pending()  # a misspelled hook name is an error, not silence
            if not self.pm.get_hookcallers(plugin):
                raise _Verdict(
                    f"{brief(plugin)} implements no nnframe hook; decorate "
                    f"{' or '.join(HOOK_NAMES)} with @nnframe.hookimpl")
        except BaseException:
            self.pm.unregister(plugin)
            raise
        self.providers[name] = provider

    def contain(self, plugin: str, distribution: str, version: str, what: str,
                function: Callable, *args: object) -> object:
        """Call ``function`` (plugin code, or code that runs it) with ``args``; on an exception
        of any kind, report the plugin and raise `_Failed`. The one place where a
        plugin's exceptions are caught. ``what`` prefixes the failure, e.g. ``"hook() "``."""
        try:
            return function(*args)
        except BaseException as exc:
            if exc is self._stopping:
                raise
            if type(exc) is _Verdict:
                error = what + str(exc)  # nnframe's own verdict on the plugin
            else:
                error = (f"{what}raised " if what else "") + _describe_exception(exc)
            self.report(PluginFailure(plugin, distribution, version, error), exc)
            raise _Failed from None

    def report(self, failure: PluginFailure, exc: BaseException | None = None) -> None:
        """Record a failure: a warning normally, an error in strict mode."""
        self.failures.append(failure)
        message = f"nnframe could not load {failure.describe()}"
        if self.strict:
            stop = PluginLoadError(message + f" ({STRICT_ENV} is set)")
            self._stopping = stop  # contain() lets it through: loading ends here
            raise stop from exc
        try:
            warnings.warn(message + f". Other plugins still loaded; set {BUILTINS_ONLY_ENV}=1 "
                          "to skip third-party plugins.", PluginWarning, stacklevel=4)
        except BaseException as raised:  # a warnings filter made it an error: the user's call
            self._stopping = raised
            raise

    # -- calling hooks -------------------------------------------------------------------
    def call_register_hook(self, hook_name: str) -> Iterator[tuple[object, Provider]]:
        """Call ``hook_name`` on each plugin separately, yielding what each registered.

        Calling plugins one by one is what lets every object carry its provider, and lets
        one plugin's exception leave the others' registrations intact.
        """
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            provider = self.providers[self.pm.get_name(impl.plugin)]
            registered: list[object] = []
            try:
                self.contain(provider.plugin, provider.distribution, provider.version,
                             f"{hook_name}() ", self._call_hook, impl.function,
                             {arg: registered.append for arg in impl.argnames})
            except _Failed:
                continue
            for obj in registered:
                yield obj, provider

    @staticmethod
    def _call_hook(function: Callable, kwargs: dict) -> None:
        result = function(**kwargs)
        if result is None:
            return
        if isinstance(result, types.GeneratorType):
            # Not started, so none of its code ran; closing it runs nothing either.
            raise _Verdict(
                "is a generator function (it contains yield), so calling it "
                "ran none of its body and registered nothing; call register(obj) instead of "
                "yielding")
        raise _Verdict(
            f"returned {brief(result)}; hooks register by calling "
            "register(obj) and must return None")

    def check(self, provider: Provider, what: str, function: Callable, *args: object) -> object:
        """Run a check of one registered object (plugin code: its properties, its methods),
        contained like every other call into a plugin. Raises `_Failed` if reported."""
        return self.contain(provider.plugin, provider.distribution, provider.version, what,
                            function, *args)
