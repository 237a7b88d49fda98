"""Security review, issue 11: what the safe loader guarantees about crafted files.

`trusted` is a real bool; a model file can neither make load take more than linear time and
memory (sets, colliding keys, shared containers, deep nesting) nor make an error message
unbounded; an unknown name from an installed package is not reported as "pip install".

Anything that could hang runs in a subprocess with a generous timeout, so that a regression
fails instead of stalling the suite.
"""

import os
import pickle
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import dill
import numpy as np
import pytest

import nnframe
from nnframe import NeuralNetwork
from nnframe.errors import InputError, MissingPluginError, ModelFileError
from nnframe.persistence import MAX_DEPTH, MAX_STRING_CHARS, MAX_VALUES, to_payload

HEADER = {"format": "nnframe-model", "format_version": 1}
HANG_GUARD = 90  # seconds: not a speed claim, only turns a hang into a failure
COLLIDING = [(2**61 - 1) * i for i in range(1, 80_001)]  # all hash to 0


def small_payload() -> dict:
    net = NeuralNetwork(3, [3, 4, 2], [None, "tanh", "softmax"], "cross_entropy", seed=0)
    net.history = {"loss": [0.5, 0.25]}
    return to_payload(net)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=HANG_GUARD)


# -- 1. trusted must be a real bool ------------------------------------------------------
class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("trusted", ["false", "False", "no", 1, 0, "", None, [], [True], 1.0,
                                     np.True_, np.False_])
def test_trusted_must_be_true_or_false(tmp_path, trusted):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({**HEADER, "x": RunsCommand(marker)}))
    for load in (nnframe.load, NeuralNetwork.load):
        with pytest.raises(InputError, match="trusted must be True or False, got ") as info:
            load(path, trusted=trusted)
        assert type(trusted).__name__ in str(info.value)
    assert not marker.exists()


def test_a_bad_trusted_value_is_shown_briefly(tmp_path):
    bomb = ["lol"]
    for _ in range(40):
        bomb = [bomb] * 4
    with pytest.raises(InputError) as info:
        nnframe.load(tmp_path / "m.pkl", trusted=bomb)
    assert len(str(info.value)) < 300


# -- 2. no unbounded repr, hash or comparison of file data -------------------------------
# (field, Python statement applied to `payload`); each puts a bomb where load checks it.
FIELDS = {
    "num_nodes": "payload['num_nodes'] = list_bomb",
    "format_version": "payload['format_version'] = list_bomb",
    "dtype (list)": "payload['dtype'] = list_bomb",
    "dtype (tuple, hashed)": "payload['dtype'] = tuple_bomb",
    "activations": "payload['activations'] = [None, list_bomb, list_bomb]",
    "activation record": "payload['activations'][1] = list_bomb",
    "cost record": "payload['cost'] = list_bomb",
    "weights list": "payload['weights'] = list_bomb",
    "weights shape": "payload['weights'][0]['shape'] = list_bomb",
    "bias shape (tuple)": "payload['biases'][1]['shape'] = tuple_bomb",
    "plugin version": ("payload['activations'][1].update(name='nosuch', "
                       "distribution='nnframe-nosuch', version=list_bomb)"),
    "history value": "payload['history'] = {'loss': list_bomb}",
}


BOMB_CHECK = """
import pickle, sys
import nnframe
from nnframe.persistence import from_payload
list_bomb = ["lol"]
tuple_bomb = ("lol",)
for _ in range(40):
    list_bomb = [list_bomb] * 4
    tuple_bomb = (tuple_bomb,) * 4
base, path, statement = sys.argv[1:]
payload = pickle.loads(open(base, "rb").read())
exec(statement)
open(path, "wb").write(pickle.dumps(payload, protocol=4))
for label, call in [("load", lambda: nnframe.load(path)),
                    ("trusted", lambda: nnframe.load(path, trusted=True)),
                    ("from_payload", lambda: from_payload(payload))]:
    try:
        call()
        print(label, "loaded", 0)
    except nnframe.ModelFileError as exc:
        print(label, type(exc).__name__, len(str(exc)))
"""


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_shared_reference_bomb_in_any_field_fails_fast_with_a_short_message(tmp_path, field):
    """The 589-byte file whose repr never ends: refused by the scan on a default load, and
    reported briefly (or ignored) by the checks on a trusted load and by from_payload."""
    base = tmp_path / "base.pickle"
    base.write_bytes(pickle.dumps(small_payload()))
    result = subprocess.run([sys.executable, "-c", BOMB_CHECK, str(base),
                             str(tmp_path / "bomb.pkl"), FIELDS[field]],
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = {label: (what, int(length)) for label, what, length
                in (line.split() for line in result.stdout.splitlines())}
    assert set(outcomes) == {"load", "trusted", "from_payload"}, result.stdout
    assert outcomes["load"][0] == "ModelFileError", outcomes  # refused by the scan
    for label, (what, length) in outcomes.items():
        # a bomb in the history is dropped and the model loads; anything else is refused
        assert what == ("loaded" if field.startswith("history") and label != "load"
                        else "ModelFileError" if label == "load" or field != "plugin version"
                        else "MissingPluginError"), (label, what)
        assert length < 600, (label, length)


def test_the_bomb_file_is_refused_by_the_scan_saying_why(tmp_path):
    bomb = ["lol"]
    for _ in range(40):
        bomb = [bomb] * 4
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({**HEADER, "num_nodes": bomb}, protocol=4))
    assert len(path.read_bytes()) < 600
    result = run_python(f"""
        import nnframe
        try:
            nnframe.load({str(path)!r})
        except nnframe.ModelFileError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "uses one list in several places" in result.stdout, result.stdout
    assert len(result.stdout) < 400


def test_nnframe_evaluate_of_the_bomb_exits_at_once_with_one_line(tmp_path):
    bomb = ["lol"]
    for _ in range(40):
        bomb = [bomb] * 4
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({**HEADER, "num_nodes": bomb}, protocol=4))
    exe = Path(sysconfig.get_path("scripts")) / "nnframe"
    for model, extra in ((path, []), (path, ["--trusted"])):
        result = subprocess.run([str(exe), "evaluate", str(model), "--no-download", *extra],
                                capture_output=True, text=True, timeout=HANG_GUARD,
                                cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a valid nnframe model file" in lines[0], result.stderr
        assert len(lines[0]) < 600 and "Traceback" not in result.stderr


# -- 3. load time and memory linear in the file size ------------------------------------------
def refused_before_unpickling(monkeypatch, path, match):
    """load(path) raises ModelFileError matching ``match`` and never reaches the unpickler."""
    import nnframe.persistence as persistence

    calls = []
    original = persistence._PlainUnpickler

    class Spy(original):
        def load(self):
            calls.append(1)
            return super().load()

    monkeypatch.setattr(persistence, "_PlainUnpickler", Spy)
    with pytest.raises(ModelFileError, match=match) as info:
        nnframe.load(path)
    assert not calls, "the file reached the unpickler"
    return str(info.value)


def shared(value):
    return [value, value]


CRAFTED = {
    "a set": ({1, 2, 3}, "holds a set"),
    "an empty set": (set(), "holds a set"),
    "a frozenset": (frozenset({1, 2}), "holds a frozenset"),
    "int dict keys": ({1: "a", 2: "b"}, "dict key that is a scalar, not a string"),
    "float dict keys": ({0.5: "a"}, "dict key that is a scalar, not a string"),
    "bytes dict keys": ({b"k": "a"}, "dict key that is a scalar, not a string"),
    "None dict key": ({None: 1}, "dict key that is a scalar, not a string"),
    "tuple dict keys": ({(1, 2): "a"}, "dict key that is a tuple, not a string"),
    "colliding int keys": (dict.fromkeys([(2**61 - 1) * i for i in range(1, 4)]),
                           "dict key that is a scalar"),
    "a shared list": (shared([1.0, 2.0]), "uses one list in several places"),
    "a shared dict": (shared({"a": 1}), "uses one dict in several places"),
    "a shared tuple": (shared((1, 2)), "uses one tuple in several places"),
    "shared bytes": (shared(b"\x00" * 64), "uses one scalar in several places"),
    "an integer over 64 bits": (2**64, "integer wider than 64 bits"),
    "a negative integer over 64 bits": (-(2**63) - 1, "integer wider than 64 bits"),
    "a long string": ("x" * (MAX_STRING_CHARS + 1), "string of 1,025 characters"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
@pytest.mark.parametrize("protocol", [3, 4])
def test_what_the_format_never_holds_is_refused_before_unpickling(tmp_path, monkeypatch, case,
                                                                  protocol):
    value, match = CRAFTED[case]
    if protocol < 4 and "set" in case:  # pickled as a call of builtins.set: code, refused
        match = "asks to import 'builtins.(frozen)?set'"
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({**small_payload(), "extra": value}, protocol=protocol))
    refused_before_unpickling(monkeypatch, path, match)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_nesting_is_bounded(tmp_path, monkeypatch):
    path = tmp_path / "m.pkl"
    # the payload dict adds one level above "extra"
    path.write_bytes(pickle.dumps({**small_payload(), "extra": nested(MAX_DEPTH - 1)}))
    nnframe.load(path)
    path.write_bytes(pickle.dumps({**small_payload(), "extra": nested(MAX_DEPTH)}))
    refused_before_unpickling(monkeypatch, path, f"more than {MAX_DEPTH} deep")
    path.write_bytes(pickle.dumps({**small_payload(), "extra": {"a": nested(MAX_DEPTH)}}))
    refused_before_unpickling(monkeypatch, path, f"more than {MAX_DEPTH} deep")


def test_the_number_of_values_is_bounded(tmp_path, monkeypatch):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({**small_payload(), "extra": [None] * MAX_VALUES}))
    refused_before_unpickling(monkeypatch, path, "more than 1,048,576 values")


@pytest.mark.parametrize("data, match", [
    (b"\x80\x04]r\x00\x00\x00\x01.", "memo indices out of order"),  # LONG_BINPUT 2**24
    (b"\x80\x04]r\xff\xff\xff\xff.", "memo indices out of order"),
    (b"\x80\x04K\x01K\x02s.", "stack underflow"),  # SETITEM with no dict under it
    (b"\x80\x04K\x01K\x02u.", "needs a MARK"),  # SETITEMS without MARK
    (b"\x80\x04K\x01K\x02a.", "adds items to a scalar, not a list"),  # APPEND onto an int
    (b"\x80\x04](K\x01K\x02u.", "adds items to a list, not a dict"),
    (b"\x80\x04h\x00.", "memo reference to nothing"),
    (b"\x80\x04(K\x01K\x02K\x03d.", "odd number of items"),
    (b"\x80\x04N0.", "the opcode POP"),
    (b"\x80\x04N2.", "the opcode DUP"),
])
def test_hand_made_pickles_that_abuse_the_stack_or_memo_are_refused(tmp_path, monkeypatch,
                                                                    data, match):
    path = tmp_path / "m.pkl"
    path.write_bytes(data)
    refused_before_unpickling(monkeypatch, path, match)


@pytest.mark.parametrize("kind", ["set", "dict keys"])
def test_eighty_thousand_colliding_integers_are_refused_quickly(tmp_path, kind):
    """Before the fix the set took 47 s to build; a hang guard, not a speed test."""
    path = tmp_path / "collide.pkl"
    value = set(COLLIDING) if kind == "set" else dict.fromkeys(COLLIDING)
    path.write_bytes(pickle.dumps({**HEADER, "x": value}, protocol=4))
    assert len(path.read_bytes()) < 1_100_000
    result = run_python(f"""
        import nnframe
        try:
            nnframe.load({str(path)!r})
        except nnframe.ModelFileError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = "holds a set" if kind == "set" else "integer wider than 64 bits"
    assert expected in result.stdout, result.stdout


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_real_models_still_load_at_every_bytes_capable_protocol(tmp_path, protocol):
    net = NeuralNetwork(4, [784, 256, 128, 10], [None, "relu", "gelu", "softmax"],
                        "cross_entropy", seed=0)
    net.history = {"loss": [0.5] * 300, "accuracy": [90.0] * 300}
    path = tmp_path / "mnist.pkl"
    path.write_bytes(dill.dumps(to_payload(net), protocol=protocol))
    loaded = nnframe.load(path)
    for a, b in zip(net.parameters(), loaded.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.history == net.history


# -- 4. look-alike names -----------------------------------------------------------------
@pytest.mark.parametrize("kind, name, dist, suggestion", [
    ("activation", "tan\u0445", "nnframe", "tanh"),  # Cyrillic ha
    ("activation", "s\u0456gmoid", "nnframe", "sigmoid"),  # Ukrainian i
    ("cost", "cr\u043ess_entropy", "nnframe", "cross_entropy"),  # Cyrillic o
    ("activation", "g\u0435lu", "nnframe-extras", "gelu"),  # a third-party plugin
    ("activation", "relu7", "nnframe", "relu"),  # plain typo, ASCII
])
def test_an_unknown_name_from_an_installed_package_suggests_instead_of_pip(tmp_path, kind,
                                                                           name, dist,
                                                                           suggestion):
    payload = small_payload()
    record = payload["activations"][1] if kind == "activation" else payload["cost"]
    record.update(name=name, distribution=dist)
    path = tmp_path / "m.pkl"
    path.write_bytes(dill.dumps(payload, protocol=4))
    with pytest.raises(MissingPluginError) as info:
        nnframe.load(path)
    message = str(info.value)
    assert "pip install" not in message, message
    assert f"Did you mean {suggestion!r}?" in message, message
    assert f"{dist} " in message and "is installed" in message, message
    if not name.isascii():
        assert ascii(name) in message and "look-alike" in message, message


def test_a_missing_distribution_still_says_pip_install(tmp_path):
    payload = small_payload()
    payload["activations"][1].update(name="tan\u0445", distribution="nnframe-nosuch-plugin")
    path = tmp_path / "m.pkl"
    path.write_bytes(dill.dumps(payload, protocol=4))
    with pytest.raises(MissingPluginError, match="pip install nnframe-nosuch-plugin"):
        nnframe.load(path)


@pytest.mark.parametrize("dist", ["nnframe; rm -rf ~", "x" * 300, "-leading-dash"])
def test_a_distribution_name_that_is_not_one_is_never_advised(tmp_path, dist):
    payload = small_payload()
    payload["activations"][1].update(name="nosuch", distribution=dist)
    path = tmp_path / "m.pkl"
    path.write_bytes(dill.dumps(payload, protocol=4))
    with pytest.raises(MissingPluginError, match="not a valid distribution name") as info:
        nnframe.load(path)
    assert "pip install" not in str(info.value) and len(str(info.value)) < 800
