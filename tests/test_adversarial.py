"""Adversarial tests: crafted and mutated model files, crashes, misbehaving plugins, and one
table of bad input over every public entry point. Nothing runs, nothing is lost, and every
failure is one of nnframe's documented errors."""

import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback

import dill
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import nnframe_cli

import nnframe
from nnframe import NeuralNetwork
from nnframe.errors import (
    InputError,
    ModelFileError,
    NNFrameError,
    PluginRuntimeError,
    TrainingDivergedError,
    UnsafeModelError,
)
from nnframe.persistence import to_payload

HEADER = {"format": "nnframe-model", "format_version": 1}


def small_model_bytes(seed=0) -> bytes:
    net = NeuralNetwork(3, [3, 4, 2], [None, "tanh", "softmax"], "cross_entropy", seed=seed)
    net.history = {"loss": [0.5, 0.25], "accuracy": [50.0, 75.0]}
    return dill.dumps(to_payload(net), protocol=4)


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- crafted model files ---------------------------------------------------------------------
class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_files(marker):
    huge = (2**62).to_bytes(8, "little")
    return {
        "os.system via __reduce__": (pickle.dumps({**HEADER, "x": RunsCommand(marker)}),
                                     UnsafeModelError),
        "os.system at protocol 0": (pickle.dumps(RunsCommand(marker), protocol=0),
                                    UnsafeModelError),
        "an embedded function": (dill.dumps({**HEADER, "f": lambda: os.system(f"touch {marker}")},
                                            recurse=True), UnsafeModelError),
        "an object-dtype array": (pickle.dumps({**HEADER, "weights": [np.array([object()])]}),
                                  UnsafeModelError),
        "a float64 array object": (pickle.dumps({**HEADER, "weights": [np.zeros(3)]}),
                                   UnsafeModelError),
        "bytes declared as 2**62 long": (b"\x80\x04\x8e" + huge + b"abc.", ModelFileError),
        "a string declared as 2**62 long": (b"\x80\x04\x8d" + huge + b"abc.", ModelFileError),
        "a frame declared as 2**62 long": (b"\x80\x04\x95" + huge + b"N.", ModelFileError),
        "an integer declared as 2**31 bytes": (b"\x80\x02\x8b\xff\xff\xff\x7f" + b"\x01" * 8,
                                               ModelFileError),
        "lists nested 100,000 deep": (b"\x80\x04" + b"]" * 100_000 + b"a" * 99_999 + b".",
                                      ModelFileError),
        "a memo reference to nothing": (b"\x80\x04h\x07.", ModelFileError),
        "no STOP opcode": (b"\x80\x04}q\x00", ModelFileError),
        "empty": (b"", ModelFileError),
        "not a pickle": (b"PK\x03\x04 this is a zip file", ModelFileError),
        "plain data of the wrong shape": (pickle.dumps([1, 2, 3]), ModelFileError),
        "an inf weight": (_with_weight(np.inf), ModelFileError),
        "a NaN bias": (_with_bias(np.nan), ModelFileError),
    }


def _with_weight(value):
    payload = pickle.loads(small_model_bytes())
    w = np.frombuffer(payload["weights"][0]["data"], "<f4").copy()
    w[3] = value
    payload["weights"][0]["data"] = w.tobytes()
    return dill.dumps(payload)


def _with_bias(value):
    payload = pickle.loads(small_model_bytes())
    payload["biases"][1]["data"] = np.full(2, value, "<f4").tobytes()
    return dill.dumps(payload)


CASES = list(crafted_files("MARKER"))


@pytest.mark.parametrize("case", CASES)
def test_crafted_model_files_are_refused_and_run_nothing(case, tmp_path):
    marker = tmp_path / "pwned"
    data, expected = crafted_files(marker)[case]
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    before = peak_rss_kib()
    started = time.monotonic()
    with pytest.raises(expected):
        nnframe.load(path)
    assert time.monotonic() - started < 30  # a generous hang guard, not a speed claim
    assert peak_rss_kib() - before < 100_000  # nothing big was allocated
    assert not marker.exists()


MODEL = small_model_bytes()


def mutate(data: bytes, kind: str, position: int, payload: bytes) -> bytes:
    position %= len(data)
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ (payload[0] | 1)]) + data[position + 1:]
    if kind == "truncate":
        return data[:position]
    if kind == "extend":
        return data + payload
    if kind == "insert":
        return data[:position] + payload + data[position:]
    return data[:position] + payload + data[position + len(payload):]  # overwrite


@settings(max_examples=1200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["flip", "truncate", "extend", "insert", "overwrite"]),
       position=st.integers(0, 10**6), payload=st.binary(min_size=1, max_size=16))
def test_a_thousand_mutations_of_a_model_file_raise_only_documented_errors(kind, position,
                                                                           payload):
    data = mutate(MODEL, kind, position, payload)
    path = FUZZ_DIR / "mutant.pkl"
    path.write_bytes(data)
    try:
        network = nnframe.load(path)
    except ModelFileError:
        return  # UnsafeModelError and MissingPluginError are ModelFileErrors too
    assert isinstance(network, NeuralNetwork)  # a harmless mutation (a digit of the history)
    assert all(np.isfinite(p).all() for p in network.parameters())


@pytest.fixture(scope="module", autouse=True)
def _fuzz_dir(tmp_path_factory):
    global FUZZ_DIR
    FUZZ_DIR = tmp_path_factory.mktemp("fuzz")
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(600)  # the whole module must finish: a hang fails instead of stalling CI
    before = peak_rss_kib()
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    assert peak_rss_kib() - before < 300_000


def _hang(signum, frame):
    raise TimeoutError("adversarial test hung")


FUZZ_DIR = None


# -- crash safety ----------------------------------------------------------------------------
SAVER = """
import sys, nnframe
net = nnframe.NeuralNetwork(3, [1200, 1200, 10], [None, "relu", "softmax"], "cross_entropy",
                            dtype="float64", seed=1)
print("ready", flush=True)
while True:
    net.save(sys.argv[1])
"""


def test_sigkill_mid_save_leaves_the_old_or_the_complete_new_file(tmp_path):
    path = tmp_path / "model.pkl"
    NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", seed=0).save(path)
    old = path.read_bytes()
    new = dill.dumps(to_payload(NeuralNetwork(3, [1200, 1200, 10], [None, "relu", "softmax"],
                                              "cross_entropy", dtype="float64", seed=1)),
                     protocol=4)
    for delay in (0.0, 0.02, 0.1, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SAVER), str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert path.read_bytes() in (old, new)  # never a mixture, never half a file
        nnframe.load(path)
        for stray in tmp_path.glob(".nnf*.tmp"):  # what a SIGKILL can leave behind
            stray.unlink()


@pytest.mark.parametrize("failure", ["write", "fsync", "replace"])
def test_a_failed_write_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch,
                                                                 failure):
    path = tmp_path / "model.pkl"
    NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", seed=0).save(path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if failure == "write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FullDisk(fd))
    else:
        monkeypatch.setattr(os, failure, disk_full)
    with pytest.raises(ModelFileError, match="No space left on device"):
        NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", seed=1).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pkl"]


class _FullDisk:
    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def write(self, data):
        raise OSError(28, "No space left on device")


def test_saving_onto_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "model.pkl").mkdir()
    with pytest.raises(ModelFileError, match="could not save"):
        NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy").save(tmp_path / "model.pkl")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pkl"]


# -- plugins that misbehave at run time ---------------------------------------------------------
FLAKY = """
import numpy as np
import nnframe

class Flaky(nnframe.Activation):
    name = "flaky"
    broken = False  # the test flips it in the middle of training

    def forward(self, z):
        if type(self).broken:
            {fault}
        return np.tanh(z)

    def backward(self, z, a, grad):
        return grad * (1 - a * a)

@nnframe.hookimpl
def register_activations(register):
    register(Flaky())
"""

FAULTS = {
    "wrong shape": ("return np.tanh(z)[:, :-1]", PluginRuntimeError,
                    "forward returned (10, 3) for an input of shape (10, 4)"),
    "NaN": ("return np.full_like(z, np.nan)", TrainingDivergedError,
            "returned NaN or infinity for finite inputs"),
    "an exception": ("raise RuntimeError('lost the GPU')", PluginRuntimeError,
                     "raised RuntimeError in forward: lost the GPU"),
}


def break_after(epoch, batch, net, kept):
    def callback(state):
        if state.epoch_done:  # what the network holds after each completed epoch
            kept[:] = [p.copy() for p in net.parameters()]
        elif (state.epoch, state.batch) == (epoch, batch):
            type(nnframe.get_activation("flaky")).broken = True
    return callback


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("output", [False, True])
def test_a_plugin_failing_mid_training_is_named_and_nothing_is_half_done(make_plugin, tmp_path,
                                                                         fault, output):
    code, error, needle = FAULTS[fault]
    make_plugin("nnframe-flaky", FLAKY.replace("{fault}", code), version="0.9")
    rng = np.random.default_rng(0)
    x, ids = rng.normal(size=(40, 3)), rng.integers(0, 4, 40)
    activations = [None, "tanh", "flaky"] if output else [None, "flaky", "softmax"]
    net = NeuralNetwork(3, [3, 4, 4], activations, "mean_squared", seed=0)
    path = tmp_path / "model.pkl"
    net.save(path)
    saved = path.read_bytes()
    kept = []
    with pytest.raises(error) as info:
        net.train(10, x, ids, 3, 0.1, path, callback=break_after(2, 2, net, kept))
    message = str(info.value)
    assert "'flaky'" in message and "nnframe-flaky 0.9" in message and needle in message
    assert "epoch 2, batch 3 of 4" in message
    assert path.read_bytes() == saved  # the previously saved model is untouched
    for a, b in zip(net.parameters(), kept, strict=True):
        np.testing.assert_array_equal(a, b)  # the weights of the last completed epoch
    assert len(net.history["loss"]) == 1  # and the history says so


def test_a_plugin_failing_in_predict_is_named(make_plugin):
    make_plugin("nnframe-flaky", FLAKY.replace("{fault}", "raise KeyError('x')"))
    net = NeuralNetwork(3, [3, 4, 2], [None, "flaky", "softmax"], "cross_entropy", seed=0)
    net.forward_pass(np.ones((2, 3)))
    type(nnframe.get_activation("flaky")).broken = True
    with pytest.raises(PluginRuntimeError, match="predict failed: the activation 'flaky'"):
        net.predict(None, np.ones((2, 3)))
    with pytest.raises(PluginRuntimeError, match="forward_pass failed"):
        net.forward_pass(np.ones((2, 3)))


def test_a_cost_with_a_wrong_gradient_shape_is_named():
    class Broken(nnframe.Cost):
        name = "broken"
        calls = 0

        def loss(self, a, y):
            return float(((a - y) ** 2).sum() / len(a))

        def gradient(self, a, y):
            type(self).calls += 1
            return (a - y)[:, :1] if type(self).calls > 2 else 2 * (a - y) / len(a)

    net = NeuralNetwork(3, [3, 4, 2], [None, "tanh", "sigmoid"], Broken(), seed=0)
    with pytest.raises(PluginRuntimeError, match="cost 'broken'.*gradient returned"):
        net.train(5, np.ones((20, 3)), np.zeros(20, dtype=int), 1, 0.1)


@pytest.mark.parametrize("name", nnframe.list_activations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_pre_activations_give_no_nan_and_no_warning(name, dtype):
    out = "softmax" if name != "softmax" else "sigmoid"
    net = NeuralNetwork(3, [2, 4, 3], [None, name, out], "cross_entropy", dtype=dtype, seed=0)
    net.layers[0].weights_for_layer[...] = [[1e3, -1e3, 1e3, -1e3], [-1e3, 1e3, 5e2, -5e2]]
    net.layers[1].weights_for_layer[...] = np.resize([1e3, -1e3, 3e2], (4, 3))
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with np.errstate(all="raise", under="ignore"):
        outputs = net.forward_pass(x)
        error = net.calculate_error([0, 1, 2])
        net.back_pass([0, 1, 2], 1e-6)
    assert np.isfinite(outputs).all() and np.isfinite(error)
    assert all(np.isfinite(p).all() for p in net.parameters())


# -- one bad-input table over every public entry point -------------------------------------------
def network():
    return NeuralNetwork(3, [3, 4, 2], [None, "relu", "softmax"], "cross_entropy", seed=0)


GOOD_X, GOOD_Y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
BAD_X = {
    "NaN": np.array([[0, np.nan, 0]] * 4),
    "inf": np.array([[0, 0, -np.inf]] * 4),
    "3-D": np.zeros((4, 3, 1)),
    "wrong width": np.zeros((4, 5)),
    "empty": np.zeros((0, 3)),
    "strings": np.array([["a", "b", "c"]] * 4),
    "objects": np.array([[None] * 3] * 4, dtype=object),
    "complex": np.zeros((4, 3), dtype=complex),
    "ragged": [[1, 2, 3], [1, 2]],
}
BAD_Y = {
    "out of range": np.array([0, 1, 2, 0]),
    "negative": np.array([0, -1, 0, 1]),
    "mismatched length": np.array([0, 1]),
    "wrong width": np.zeros((4, 3)),
    "NaN": np.array([0.0, np.nan, 0, 1]),
    "strings": np.array(["0", "1", "0", "1"]),
    "complex": np.zeros(4, dtype=complex),
}


def table():
    rows = [("constructor", "num_nodes mismatched",
             lambda: NeuralNetwork(3, [3, 4], [None, "relu", "softmax"], "cross_entropy")),
            ("constructor", "zero nodes",
             lambda: NeuralNetwork(3, [3, 0, 2], [None, "relu", "softmax"], "cross_entropy")),
            ("constructor", "unknown activation",
             lambda: NeuralNetwork(3, [3, 4, 2], [None, "relu6", "softmax"], "cross_entropy")),
            ("constructor", "string seed",
             lambda: NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", seed="1")),
            ("train", "batch_size 0", lambda: network().train(0, GOOD_X, GOOD_Y, 1, 0.1)),
            ("train", "NaN learning rate",
             lambda: network().train(2, GOOD_X, GOOD_Y, 1, float("nan"))),
            ("train", "negative seed",
             lambda: network().train(2, GOOD_X, GOOD_Y, 1, 0.1, seed=-3)),
            ("train", "callback not callable",
             lambda: network().train(2, GOOD_X, GOOD_Y, 1, 0.1, callback=5))]
    for case, x in BAD_X.items():
        rows += [
            ("train", f"inputs {case}", lambda x=x: network().train(2, x, GOOD_Y, 1, 0.1)),
            ("forward_pass", f"inputs {case}", lambda x=x: network().forward_pass(x)),
            ("predict", f"inputs {case}", lambda x=x: network().predict(None, x)),
            ("check_accuracy", f"inputs {case}",
             lambda x=x: network().check_accuracy(None, x, GOOD_Y)),
        ]
    for case, y in BAD_Y.items():
        rows += [
            ("train", f"labels {case}", lambda y=y: network().train(2, GOOD_X, y, 1, 0.1)),
            ("check_accuracy", f"labels {case}",
             lambda y=y: network().check_accuracy(None, GOOD_X, y)),
            ("calculate_error", f"labels {case}", lambda y=y: _stepped().calculate_error(y)),
            ("back_pass", f"labels {case}", lambda y=y: _stepped().back_pass(y, 0.1)),
        ]
    for case, path in {"no .pkl suffix": lambda: "model.h5", "not a path": lambda: 42,
                       "missing": lambda: "/nonexistent/model.pkl",
                       "a directory": _directory_named_pkl}.items():
        rows.append(("load", case, lambda path=path: nnframe.load(path())))
        rows.append(("predict", f"model {case}",
                     lambda path=path: network().predict(path(), GOOD_X)))
    return rows


_SCRATCH = tempfile.TemporaryDirectory()  # removed when the test process exits


def _directory_named_pkl() -> str:
    path = os.path.join(_SCRATCH.name, "model.pkl")
    os.makedirs(path, exist_ok=True)
    return path


def _stepped():
    net = network()
    net.forward_pass(GOOD_X)
    return net


@pytest.mark.parametrize("entry, case, call", table(),
                         ids=[f"{entry}: {case}" for entry, case, _ in table()])
def test_bad_input_gets_a_clear_nnframe_error(entry, case, call):
    with pytest.raises(NNFrameError) as info:
        call()
    message = str(info.value)
    assert len(message) > 20 and "Traceback" not in message
    origin = traceback.extract_tb(info.value.__traceback__)[-1].filename
    assert os.sep + "nnframe" + os.sep in origin and "numpy" not in origin, origin


@pytest.mark.parametrize("args, needle", [
    (["train", "--hidden", "0"], "sizes must be >= 1"),
    (["train", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["train", "--subset", "-5"], "--subset must be an integer >= 0"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["train", "--epochs", "-2"], "--epochs must be an integer >= 1, got -2"),
    (["train", "--learning-rate", "nan"], "--learning-rate must be a positive finite"),
    (["train", "--learning-rate", "inf"], "--learning-rate must be a positive finite"),
    (["train", "--output-activation", "softmaxx"], "Did you mean 'softmax'"),
    (["train", "--dtype", "float16"], "invalid choice"),
    (["evaluate", "nothing.pkl"], "no model file"),
    (["predict", "nothing.pkl", "a.png"], "no model file"),
])
def test_bad_input_on_the_command_line_is_one_line(tmp_path, args, needle):
    result = nnframe_cli(*args, *(["--out", str(tmp_path), "--sample"]
                                  if args[0] == "train" else []), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_an_input_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        network().forward_pass(np.zeros((2, 7)))
    assert issubclass(InputError, NNFrameError)
