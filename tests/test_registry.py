import importlib.metadata
import warnings

import pytest
from conftest import run_python

import nnframe
from nnframe.errors import (
    DuplicateNameError,
    PluginContractError,
    PluginLoadError,
    PluginWarning,
    UnknownNameError,
)

GOOD_ACTIVATION = """
import numpy as np
import nnframe

class Cube(nnframe.Activation):
    name = "cube"
    def forward(self, z):
        return z ** 3
    def backward(self, z, a, grad):
        return grad * 3 * z ** 2

@nnframe.hookimpl
def register_activations(register):
    register(Cube())
"""

BUILTINS = {"sigmoid", "tanh", "relu", "softmax"}


def test_import_does_no_plugin_work():
    result = run_python("""
        import sys, nnframe
        assert nnframe.registry._registry is None
        assert "nnframe.builtins.activations" not in sys.modules
        print(nnframe.get_activation("relu").name)
        assert nnframe.registry._registry is not None
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "relu"


def test_builtins_resolve_by_name():
    assert BUILTINS <= set(nnframe.list_activations())
    assert {"mean_squared", "cross_entropy"} <= set(nnframe.list_costs())
    assert nnframe.get_activation("relu").name == "relu"
    assert isinstance(nnframe.get_cost("cross_entropy"), nnframe.Cost)


def test_builtins_come_from_the_nnframe_entry_points():
    entry = nnframe.registry.activation_entry("sigmoid")
    assert entry.provider.distribution == "nnframe"
    assert entry.provider.plugin == "builtin_activations"  # the entry point, not the fallback
    assert entry.provider.builtin


def test_builtins_resolve_without_installed_metadata(monkeypatch):
    # As when running from a source tree: no entry point of the nnframe distribution is seen.
    real = importlib.metadata.entry_points

    def without_nnframe(**kwargs):
        return [ep for ep in real(**kwargs) if ep.dist.metadata["Name"] != "nnframe"]

    monkeypatch.setattr(importlib.metadata, "entry_points", without_nnframe)
    assert BUILTINS <= set(nnframe.list_activations())
    assert {"mean_squared", "cross_entropy"} <= set(nnframe.list_costs())
    entry = nnframe.registry.activation_entry("relu")
    assert entry.provider.plugin == "nnframe.builtins.activations"  # the fallback path
    assert entry.provider.distribution == "nnframe"
    assert not nnframe.registry.get_registry().conflicts


def test_builtins_are_never_registered_twice():
    registry = nnframe.registry.get_registry()
    assert not registry.conflicts
    assert not registry.failures


def test_lookup_is_case_insensitive():
    assert nnframe.get_activation("ReLU") is nnframe.get_activation("relu")
    assert nnframe.get_cost(" Cross_Entropy ") is nnframe.get_cost("cross_entropy")


def test_unknown_name_error_names_lists_suggests_and_points_to_plugins():
    with pytest.raises(UnknownNameError) as info:
        nnframe.get_activation("rleu")
    error = info.value
    assert isinstance(error, LookupError) and not isinstance(error, KeyError)
    message = str(error)
    assert "'rleu'" in message
    assert "Did you mean 'relu'?" in message
    for name in BUILTINS:
        assert name in message
    assert "nnframe plugins" in message
    assert error.suggestion == "relu"
    assert not message.startswith('"')  # KeyError would have quoted it


def test_unknown_cost_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownNameError) as info:
        nnframe.get_cost("zzzzzz")
    assert info.value.suggestion is None
    assert "Did you mean" not in str(info.value)
    assert "cross_entropy" in str(info.value)


def test_non_string_name_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="must be a string"):
        nnframe.get_activation(3)


def test_third_party_plugin_resolves_through_entry_point(make_plugin):
    module = make_plugin("nnframe-cube", GOOD_ACTIVATION, version="2.5")
    cube = nnframe.get_activation("cube")
    assert type(cube).__module__ == module
    provider = nnframe.registry.activation_entry("cube").provider
    assert (provider.distribution, provider.version) == ("nnframe-cube", "2.5")


def test_duplicate_names_are_an_error_naming_both_distributions(make_plugin):
    make_plugin("nnframe-cube-a", GOOD_ACTIVATION)
    make_plugin("nnframe-cube-b", GOOD_ACTIVATION)
    with pytest.raises(DuplicateNameError) as info:
        nnframe.get_activation("cube")
    assert "nnframe-cube-a" in str(info.value) and "nnframe-cube-b" in str(info.value)
    assert nnframe.get_activation("relu").name == "relu"  # other names still work


def test_plugin_cannot_take_a_builtin_name(make_plugin):
    make_plugin("nnframe-evil", GOOD_ACTIVATION.replace('"cube"', '"relu"'))
    with pytest.raises(DuplicateNameError, match="nnframe-evil") as info:
        nnframe.get_activation("relu")
    assert "from nnframe " in str(info.value)


def test_duplicates_are_an_error_at_load_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    make_plugin("nnframe-cube-a", GOOD_ACTIVATION)
    make_plugin("nnframe-cube-b", GOOD_ACTIVATION)
    with pytest.raises(DuplicateNameError):
        nnframe.list_activations()


def test_same_distribution_visible_twice_loads_once(make_plugin, tmp_path, monkeypatch):
    import shutil

    module = make_plugin("nnframe-cube", GOOD_ACTIVATION)
    second = tmp_path / "second"
    shutil.copytree(make_plugin.site, second)
    monkeypatch.syspath_prepend(str(second))
    assert nnframe.get_activation("cube").name == "cube"
    assert not nnframe.registry.get_registry().conflicts
    assert module


def test_broken_entry_point_warns_with_distribution_and_others_still_load(make_plugin):
    make_plugin("nnframe-broken", "raise ImportError('no module named scipy')", version="0.3")
    make_plugin("nnframe-cube", GOOD_ACTIVATION)
    with pytest.warns(PluginWarning) as record:
        names = nnframe.list_activations()
    assert "cube" in names and BUILTINS <= set(names)
    message = str(record[0].message)
    assert "nnframe-broken 0.3" in message
    assert "ImportError: no module named scipy" in message
    failures = nnframe.plugin_failures()
    assert len(failures) == 1 and failures[0].distribution == "nnframe-broken"


def test_missing_attribute_in_entry_point_is_reported(make_plugin):
    module = make_plugin("nnframe-typo", GOOD_ACTIVATION)
    make_plugin("nnframe-typo", None, module=module + "_x",
                entry_points={"typo": f"{module}:no_such_attribute"})
    with pytest.warns(PluginWarning, match="AttributeError"):
        assert "cube" in nnframe.list_activations()


def test_broken_entry_point_is_an_error_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    make_plugin("nnframe-broken", "raise ImportError('boom')")
    with pytest.raises(PluginLoadError, match="nnframe-broken 1.0.*ImportError: boom"):
        nnframe.list_activations()


def test_builtins_only_switch_ignores_third_party_plugins(make_plugin, monkeypatch):
    make_plugin("nnframe-cube", GOOD_ACTIVATION)
    make_plugin("nnframe-broken", "raise ImportError('boom')")
    monkeypatch.setenv("NNFRAME_BUILTINS_ONLY", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = set(nnframe.list_activations())
    assert names == BUILTINS
    with pytest.raises(UnknownNameError):
        nnframe.get_activation("cube")


def test_misspelled_hook_is_caught(make_plugin):
    make_plugin("nnframe-typo", GOOD_ACTIVATION.replace("def register_activations",
                                                        "def register_activation"))
    with pytest.warns(PluginWarning, match="register_activation"):
        assert "cube" not in nnframe.list_activations()
    assert "relu" in nnframe.list_activations()


def test_misspelled_hook_is_an_error_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    make_plugin("nnframe-typo", GOOD_ACTIVATION.replace("def register_activations",
                                                        "def register_activation"))
    with pytest.raises(PluginLoadError, match="nnframe-typo"):
        nnframe.list_activations()


def test_hook_that_raises_is_reported_and_others_load(make_plugin):
    make_plugin("nnframe-raises", """
        import nnframe
        @nnframe.hookimpl
        def register_activations(register):
            raise RuntimeError("plugin bug")
    """)
    with pytest.warns(PluginWarning, match="nnframe-raises.*RuntimeError: plugin bug"):
        assert "relu" in nnframe.list_activations()


@pytest.mark.parametrize("body, needle", [
    ("class Bad:\n    name = 'bad'\n    def forward(self, z): return z\n",
     "not a subclass instance of nnframe.Activation"),
    ("class Bad(nnframe.Activation):\n    def forward(self, z): return z\n"
     "    def backward(self, z, a, g): return g\n", "name is ''"),
    ("class Bad(nnframe.Activation):\n    name = 'Bad Name'\n", "lowercase snake_case"),
    ("class Bad(nnframe.Activation):\n    name = 'bad'\n    def forward(self, z): "
     "return z.sum(axis=1)\n    def backward(self, z, a, g): return g\n",
     "returned (3,) for input of shape (3, 4)"),
    ("class Bad(nnframe.Activation):\n    name = 'bad'\n", "NotImplementedError"),
])
def test_contract_breakers_are_rejected_naming_the_plugin(make_plugin, body, needle):
    make_plugin("nnframe-bad", "import nnframe\n" + body
                + "@nnframe.hookimpl\ndef register_activations(register):\n"
                  "    register(Bad())\n")
    with pytest.warns(PluginWarning) as record:
        names = nnframe.list_activations()
    assert "bad" not in names
    message = str(record[0].message)
    assert "nnframe-bad" in message and needle in message


def test_asking_for_a_rejected_name_explains_why(make_plugin):
    make_plugin("nnframe-bad", """
        import nnframe
        class Bad(nnframe.Activation):
            name = "bad"
            def forward(self, z):
                return z[:1]
        @nnframe.hookimpl
        def register_activations(register):
            register(Bad())
    """)
    with pytest.warns(PluginWarning), pytest.raises(PluginContractError, match="nnframe-bad"):
        nnframe.get_activation("bad")


def test_contract_breaker_is_an_error_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    make_plugin("nnframe-bad", """
        import nnframe
        @nnframe.hookimpl
        def register_costs(register):
            register(object())
    """)
    with pytest.raises(PluginLoadError, match="nnframe-bad"):
        nnframe.list_costs()


def test_cost_plugin_with_array_loss_is_rejected(make_plugin):
    make_plugin("nnframe-badcost", """
        import nnframe
        class PerSample(nnframe.Cost):
            name = "per_sample"
            def loss(self, a, y):
                return ((a - y) ** 2).sum(axis=1)
            def gradient(self, a, y):
                return 2 * (a - y)
        @nnframe.hookimpl
        def register_costs(register):
            register(PerSample())
    """)
    with pytest.warns(PluginWarning, match="one float"):
        assert "per_sample" not in nnframe.list_costs()


def test_reload_plugins_picks_up_new_installs(make_plugin):
    assert "cube" not in nnframe.list_activations()
    make_plugin("nnframe-cube", GOOD_ACTIVATION)
    assert "cube" not in nnframe.list_activations()  # loaded once, lazily
    nnframe.reload_plugins()
    assert "cube" in nnframe.list_activations()
