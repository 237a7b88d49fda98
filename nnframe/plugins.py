"""The one plugin manager: entry-point discovery and loading, each plugin on its own.

Nothing else in nnframe touches pluggy. Switches (environment variables, read when the
plugins are first loaded):

``NNFRAME_STRICT_PLUGINS=1``
    a plugin that fails to import, to register, or breaks the contract raises an error
    instead of a warning (for plugin authors).
``NNFRAME_BUILTINS_ONLY=1``
    load only nnframe's built-in plugins; ignore every installed third-party plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pluggy

from . import _env, hookspecs
from .errors import PluginLoadError, PluginWarning

ENTRY_POINT_GROUP = "nnframe"
DEFAULT_PLUGINS = ("nnframe.builtins.activations", "nnframe.builtins.costs")
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


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PluginHost:
    """Owns a pluggy ``PluginManager`` and the provenance of every plugin in it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("nnframe")
        self.pm.add_hookspecs(hookspecs)
        self.providers: dict[str, Provider] = {}
        self.failures: list[PluginFailure] = []
        self.strict = strict_mode()

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
            plugin = ep.load()
        except Exception as exc:
            self.report(PluginFailure(label, dist, version, _describe_exception(exc)), exc)
            return
        if self.pm.is_registered(plugin):  # two entry points naming one module
            return
        builtin = dist == "nnframe" and ep.value in DEFAULT_PLUGINS
        provider = Provider(ep.name, ep.value, dist, version, builtin=builtin)
        try:
            self._register(plugin, provider)
        except Exception as exc:
            self.report(PluginFailure(label, dist, version, _describe_exception(exc)), exc)

    def _register(self, plugin: object, provider: Provider) -> None:
        name = self.pm.register(plugin)
        try:
            self.pm.check_pending()  # a misspelled hook name is an error, not silence
        except Exception:
            self.pm.unregister(plugin)
            raise
        assert name is not None
        self.providers[name] = provider

    def report(self, failure: PluginFailure, exc: BaseException | None = None) -> None:
        """Record a failure: a warning normally, an error in strict mode."""
        self.failures.append(failure)
        message = f"nnframe could not load {failure.describe()}"
        if self.strict:
            raise PluginLoadError(message + f" ({STRICT_ENV} is set)") from exc
        warnings.warn(message + f". Other plugins still loaded; set {BUILTINS_ONLY_ENV}=1 to "
                      "skip third-party plugins.", PluginWarning, stacklevel=4)

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
                impl.function(**{arg: registered.append for arg in impl.argnames})
            except Exception as exc:
                self.report(PluginFailure(provider.plugin, provider.distribution,
                                          provider.version,
                                          f"{hook_name}() raised {_describe_exception(exc)}"),
                            exc)
                continue
            for obj in registered:
                yield obj, provider
