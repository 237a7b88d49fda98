"""One plugin can break only its own names: containment of any exception, re-entry and fork
safety, strict name checks, and repeats that are not conflicts (issue 11, items 6-9)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from test_registry import GOOD_ACTIVATION as CUBE

import nnframe
import nnframe.registry
from nnframe.errors import DuplicateNameError, PluginLoadError, PluginWarning

BUILTINS = {"sigmoid", "tanh", "relu", "softmax"}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads the plugins in a fresh interpreter and prints what came out as JSON. Run there, not
# in pytest, whatever could hang (a deadlock) or end the process (SystemExit,
# KeyboardInterrupt) on code without the fix.
PROBE = """
import json, warnings, nnframe
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = {"activations": nnframe.list_activations(), "costs": nnframe.list_costs(),
              "relu": nnframe.get_activation("relu").name,
              "mean_squared": nnframe.get_cost("mean_squared").name}
result["warnings"] = [str(w.message) for w in caught if w.category is nnframe.PluginWarning]
print("RESULT" + json.dumps(result))
"""


def probe(make_plugin, code=PROBE, env=None):
    """Run ``code`` in a fresh interpreter that sees the throwaway plugins; a hang fails."""
    path = os.pathsep.join([str(make_plugin.site), ROOT, os.environ.get("PYTHONPATH", "")])
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                              capture_output=True, text=True, env=full_env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("loading the plugins hung (deadlock)")
    assert done.returncode == 0, done.stdout + done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def assert_contained(result, dist, module, *needles):
    assert BUILTINS <= set(result["activations"]), result
    assert "cube" in result["activations"], result  # another plugin still loaded
    assert {"mean_squared", "cross_entropy"} <= set(result["costs"]), result
    assert result["relu"] == "relu" and result["mean_squared"] == "mean_squared"
    mine = [w for w in result["warnings"] if dist in w]
    assert len(mine) == 1, result["warnings"]
    assert repr(module) in mine[0] or f"'{module} = " in mine[0]  # the entry point
    for needle in needles:
        assert needle in mine[0], mine[0]


def hook(hook_name, body):
    return (f"import nnframe\n@nnframe.hookimpl\ndef {hook_name}(register):\n"
            + textwrap.indent(textwrap.dedent(body), "    ") + "\n")


# -- item 6: re-entry ------------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    hook("register_costs", 'nnframe.get_cost("mean_squared")'),      # the reproduction
    hook("register_activations", 'nnframe.get_activation("relu")'),
    hook("register_activations", "nnframe.list_activations()"),
    hook("register_costs", "nnframe.reload_plugins()"),
    'import nnframe\nnnframe.get_activation("relu")\n',              # at import time
])
def test_a_lookup_from_inside_loading_is_reported_not_a_deadlock(make_plugin, source):
    make_plugin("nnframe-cube", CUBE)
    module = make_plugin("nnframe-reentrant", source, version="0.7")
    result = probe(make_plugin)
    assert_contained(result, "nnframe-reentrant 0.7", module, "PluginError",
                     "while plugins are being loaded")


@pytest.mark.parametrize("source", [
    hook("register_costs", 'nnframe.get_cost("mean_squared")'),
    hook("register_activations", "raise KeyboardInterrupt"),
    "raise SystemExit(0)\n",
])
def test_nnframe_plugins_lists_and_reports_a_bad_plugin(make_plugin, source):
    make_plugin("nnframe-cube", CUBE)
    make_plugin("nnframe-bad", source)
    path = os.pathsep.join([str(make_plugin.site), ROOT, os.environ.get("PYTHONPATH", "")])
    try:
        done = subprocess.run([sys.executable, "-m", "nnframe", "plugins"], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": path}, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("`nnframe plugins` hung")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cube" in done.stdout and "relu" in done.stdout and "mean_squared" in done.stdout
    assert "Failed to load:" in done.stdout and "nnframe-bad 1.0" in done.stdout


def test_reentry_is_an_error_in_strict_mode(make_plugin):
    make_plugin("nnframe-reentrant", hook("register_costs", 'nnframe.get_cost("mean_squared")'))
    code = """
        import nnframe
        try:
            nnframe.list_activations()
        except nnframe.PluginLoadError as exc:
            print("RESULT" + __import__("json").dumps({"error": str(exc)}))
    """
    result = probe(make_plugin, code, env={"NNFRAME_STRICT_PLUGINS": "1"})
    assert "nnframe-reentrant" in result["error"] and "being loaded" in result["error"]


def test_after_loading_hooks_can_look_names_up_again(make_plugin):
    # The guard is about the loading thread while it loads, nothing else.
    make_plugin("nnframe-cube", CUBE)
    assert nnframe.get_activation("cube").name == "cube"
    nnframe.reload_plugins()
    assert nnframe.get_activation("relu").name == "relu"
    assert nnframe.registry._builder is None


# -- item 7: fork ----------------------------------------------------------------------------
def _wait_or_kill(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung on its first lookup")


def _fork_and_look_up(names):
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 3
        try:
            found = set(nnframe.list_activations())
            status = 0 if names <= found else 2
        finally:
            os._exit(status)
    return _wait_or_kill(pid)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_lock():
    nnframe.registry._registry = None  # so the child's lookup needs the lock
    held, release = threading.Event(), threading.Event()

    def hold():
        with nnframe.registry._lock:
            held.set()
            release.wait(60)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert held.wait(60)
        status = _fork_and_look_up(BUILTINS)
    finally:
        release.set()
        thread.join(60)
    assert status == 0
    assert nnframe.get_activation("relu").name == "relu"  # the parent's lock still works


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_is_loading_plugins(make_plugin):
    module = make_plugin("nnframe-slow", CUBE.replace(
        "    register(Cube())",
        "    if not entered.is_set():  # the first call, in the parent, waits\n"
        "        entered.set()\n"
        "        release.wait(60)\n"
        "    register(Cube())").replace("import numpy", "import threading\nimport numpy")
        + "entered, release = threading.Event(), threading.Event()\n")
    loader = threading.Thread(target=nnframe.list_activations, daemon=True)
    loader.start()
    deadline = time.monotonic() + 60
    while module not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.01)
    plugin = sys.modules[module]
    try:
        assert plugin.entered.wait(60)
        status = _fork_and_look_up(BUILTINS | {"cube"})  # the child loads on its own
    finally:
        plugin.release.set()
        loader.join(60)
    assert status == 0
    assert "cube" in nnframe.list_activations()


# -- item 8: containment ---------------------------------------------------------------------
RAISING_NAME = """
import nnframe
class Bad(nnframe.Activation):
    @property
    def name(self):
        raise {exc}("no name")
    def forward(self, z):
        return z
    def backward(self, z, a, grad):
        return grad
@nnframe.hookimpl
def register_activations(register):
    register(Bad())
"""

RAISING_REPR = """
import nnframe
class Bad:
    name = "bad"
    def __repr__(self):
        raise RuntimeError("no repr")
@nnframe.hookimpl
def register_activations(register):
    register(Bad())
"""

RAISING_NAME_REPR = """
import nnframe
class Name(str):
    def __repr__(self):
        raise RuntimeError("no repr")
class Bad(nnframe.Activation):
    name = Name("Bad Name")
@nnframe.hookimpl
def register_activations(register):
    register(Bad())
"""

RAISING_FORWARD = """
import nnframe
class Bad(nnframe.Activation):
    name = "bad"
    def forward(self, z):
        raise SystemExit(3)
@nnframe.hookimpl
def register_activations(register):
    register(Bad())
"""


@pytest.mark.parametrize("source, needle", [
    (RAISING_NAME.format(exc="RuntimeError"), "RuntimeError: no name"),   # the reproduction
    (RAISING_REPR, "not a subclass instance"),                             # the reproduction
    (RAISING_NAME_REPR, "lowercase snake_case"),
    (RAISING_NAME.format(exc="KeyboardInterrupt"), "KeyboardInterrupt: no name"),
    (RAISING_FORWARD, "SystemExit: 3"),
    ("raise SystemExit(2)\n", "SystemExit: 2"),                            # the reproduction
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    (hook("register_activations", "raise KeyboardInterrupt('plugin')"),
     "register_activations() raised KeyboardInterrupt: plugin"),           # the reproduction
    (hook("register_costs", "raise GeneratorExit"), "register_costs() raised GeneratorExit"),
    (hook("register_costs", "raise SystemExit"), "register_costs() raised SystemExit"),
])
def test_any_exception_from_a_plugin_is_contained(make_plugin, source, needle):
    make_plugin("nnframe-cube", CUBE)
    module = make_plugin("nnframe-bad", source, version="0.1")
    assert_contained(probe(make_plugin), "nnframe-bad 0.1", module, needle)


def test_systemexit_at_import_is_a_plugin_load_error_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    make_plugin("nnframe-exits", "raise SystemExit(2)\n")
    with pytest.raises(PluginLoadError, match="nnframe-exits 1.0.*SystemExit: 2"):
        nnframe.list_activations()


def test_an_exception_whose_str_raises_is_still_reported(make_plugin):
    make_plugin("nnframe-bad", hook("register_costs", """
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no str")
        raise Weird()
    """))
    with pytest.warns(PluginWarning, match="nnframe-bad.*register_costs.. raised Weird"):
        assert "mean_squared" in nnframe.list_costs()


@pytest.mark.parametrize("body, needle", [
    ("yield Cube()", "generator function"),          # the reproduction: registers nothing
    ("register(Cube())\nyield", "generator function"),
    ("return [Cube()]", "returned [<Cube 'cube'>]"),
    ("register(Cube())\nreturn True", "returned True"),
])
def test_a_hook_that_returns_something_is_reported(make_plugin, body, needle):
    source = CUBE.split("@nnframe.hookimpl")[0] + hook("register_activations", body)
    make_plugin("nnframe-yields", source)
    with pytest.warns(PluginWarning) as record:
        names = nnframe.list_activations()
    assert "cube" not in names and BUILTINS <= set(names)
    message = str(record[0].message)
    assert "nnframe-yields" in message and needle in message
    assert "register(obj)" in message


@pytest.mark.parametrize("target", [":NUMBER", ":function", ":NOTHING", "", "json"])
def test_an_entry_point_without_hooks_is_reported(make_plugin, target):
    module = make_plugin("nnframe-cube", CUBE)
    helper = make_plugin("nnframe-cube", "NUMBER = 5\nNOTHING = None\ndef function():\n    pass\n",
                         entry_points={})
    value = "json" if target == "json" else helper + target
    make_plugin("nnframe-hookless", None, module=helper + "_ep",
                entry_points={"hookless": value})
    with pytest.warns(PluginWarning) as record:
        names = nnframe.list_activations()
    assert "cube" in names and BUILTINS <= set(names)
    messages = [str(w.message) for w in record if "nnframe-hookless" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in record]
    assert f"'hookless = {value}'" in messages[0]
    assert "nnframe hook" in messages[0]
    assert module


# -- item 9: names ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind, name", [("activation", "relu\n"), ("activation", "cube\n"),
                                        ("cost", "mean_squared\n")])
def test_a_name_with_a_trailing_newline_is_rejected(make_plugin, kind, name):
    cls, hook_name, listing = (("Activation", "register_activations", nnframe.list_activations)
                               if kind == "activation" else
                               ("Cost", "register_costs", nnframe.list_costs))
    make_plugin("nnframe-newline", f"""
        import numpy as np
        import nnframe
        class Sneaky(nnframe.{cls}):
            name = {name!r}
            def forward(self, z):
                return z.copy()
            def backward(self, z, a, grad):
                return grad
            def loss(self, a, y):
                return 0.0
            def gradient(self, a, y):
                return np.zeros_like(a)
        @nnframe.hookimpl
        def {hook_name}(register):
            register(Sneaky())
    """)
    with pytest.warns(PluginWarning, match="nnframe-newline.*lowercase snake_case"):
        names = listing()
    assert name not in names
    assert len(names) == len(set(n.strip() for n in names))
    assert not nnframe.registry.get_registry().conflicts
    if name.strip() in names:  # a built-in: still the built-in
        entry = nnframe.registry.get_registry().lookup(kind, name.strip())
        assert entry.provider.distribution == "nnframe"


@pytest.mark.parametrize("registering", [
    "cube = Cube()\n    register(cube)\n    register(cube)",     # the reproduction
    "cube = Cube()\n    for _ in range(3):\n        register(cube)",
])
def test_one_object_registered_twice_is_registered_once(make_plugin, registering):
    make_plugin("nnframe-cube", CUBE.replace("register(Cube())", registering))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nnframe.get_activation("cube").name == "cube"
    registry = nnframe.registry.get_registry()
    assert not registry.conflicts and not registry.failures


def test_two_objects_of_one_plugin_with_one_name_conflict_naming_it_once(make_plugin):
    make_plugin("nnframe-cube", CUBE.replace("register(Cube())",
                                             "register(Cube())\n    register(Cube())"))
    with pytest.raises(DuplicateNameError) as info:
        nnframe.get_activation("cube")
    message = str(info.value)
    assert message.count("nnframe-cube") == 1 and "two different objects" in message
    assert nnframe.get_activation("relu").name == "relu"


def test_the_same_object_from_two_plugins_is_still_a_conflict(make_plugin):
    first = make_plugin("nnframe-cube", CUBE.replace("register(Cube())",
                                                     "register(CUBE)") + "CUBE = Cube()\n")
    make_plugin("nnframe-copycat", f"""
        import nnframe
        import {first}
        @nnframe.hookimpl
        def register_activations(register):
            register({first}.CUBE)
    """)
    with pytest.raises(DuplicateNameError, match="nnframe-cube.*nnframe-copycat|"
                                                 "nnframe-copycat.*nnframe-cube"):
        nnframe.get_activation("cube")


@pytest.mark.parametrize("strict", [True, False])
def test_a_stop_on_purpose_is_not_reported_twice(make_plugin, monkeypatch, strict):
    # Strict mode, or a warning filter set to "error", ends loading at the first failure;
    # containment passes that on instead of wrapping it in a second report.
    make_plugin("nnframe-bad", RAISING_REPR)
    if strict:
        monkeypatch.setenv("NNFRAME_STRICT_PLUGINS", "1")
    expected = PluginLoadError if strict else PluginWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        with pytest.raises(expected) as info:
            nnframe.list_activations()
    message = str(info.value)
    assert "nnframe-bad" in message and "not a subclass instance" in message
    assert message.count("could not load") == 1
