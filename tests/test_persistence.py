import os
import pickle
import pickletools
import re

import dill
import numpy as np
import pytest

import nnframe
from nnframe import NeuralNetwork
from nnframe.errors import InputError, MissingPluginError, ModelFileError, UnsafeModelError
from nnframe.persistence import to_payload


def trained(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4)).astype(dtype)
    ids = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    net = NeuralNetwork(3, [4, 6, 3], [None, "relu", "softmax"], "cross_entropy", seed=seed,
                        dtype=dtype)
    net.train(8, x, ids, 3, 0.1, seed=seed)
    return net, x, ids


def test_save_load_predict_are_identical(tmp_path):
    net, x, ids = trained()
    path = tmp_path / "model.pkl"
    net.save(path)
    loaded = nnframe.load(path)
    assert repr(loaded) == repr(net)
    for a, b in zip(net.parameters(), loaded.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(loaded.predict(None, x), net.predict(None, x))
    np.testing.assert_array_equal(net.predict(path, x), net.predict(None, x))
    assert net.check_accuracy(path, x, ids) == net.check_accuracy(None, x, ids)
    assert loaded.history == net.history and loaded.learning_rate == net.learning_rate
    assert NeuralNetwork.load(path).num_nodes == [4, 6, 3]


def test_float64_models_round_trip(tmp_path):
    net, x, _ = trained(dtype=np.float64)
    net.save(tmp_path / "m.pkl")
    loaded = nnframe.load(tmp_path / "m.pkl")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.forward_pass(x), net.forward_pass(x))


def test_train_saves_at_the_end(tmp_path):
    rng = np.random.default_rng(0)
    net = NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy")
    path = tmp_path / "trained.pkl"
    net.train(4, rng.normal(size=(10, 3)), rng.integers(0, 2, 10), 2, 0.1, path)
    np.testing.assert_array_equal(nnframe.load(path).parameters()[0], net.parameters()[0])


def test_the_file_is_plain_data_naming_plugins_and_their_distributions(tmp_path):
    net, _, _ = trained()
    path = tmp_path / "m.pkl"
    net.save(path)
    opcodes = {op.name for op, _, _ in pickletools.genops(path.read_bytes())}
    assert not opcodes & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "NEWOBJ", "INST", "OBJ"}
    payload = pickle.loads(path.read_bytes())
    assert payload["format"] == "nnframe-model" and payload["format_version"] == 1
    assert payload["activations"][1] == {"name": "relu", "distribution": "nnframe",
                                         "version": nnframe.__version__, "embedded": None}
    assert payload["cost"]["name"] == "cross_entropy"
    assert payload["history"]["loss"] == net.history["loss"]


def test_plugin_activations_are_saved_by_name_with_their_distribution(tmp_path):
    net = NeuralNetwork(3, [2, 3, 2], [None, "gelu", "softmax"], "cross_entropy")
    record = to_payload(net)["activations"][1]
    assert record == {"name": "gelu", "distribution": "nnframe-extras", "version": "0.1.0",
                      "embedded": None}


class Malicious:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("trusted_hint", [True])
def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path, trusted_hint):
    marker = tmp_path / "pwned"
    bomb = Malicious()
    bomb.marker = marker
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"format": "nnframe-model", "x": bomb}))
    with pytest.raises(UnsafeModelError) as info:
        nnframe.load(path)
    assert "os.system" in str(info.value) or "posix.system" in str(info.value)
    assert "Nothing was executed" in str(info.value) and "trusted=True" in str(info.value)
    with pytest.raises(UnsafeModelError):
        NeuralNetwork(2, [2, 2], [None, "softmax"], "cross_entropy").predict(path, [[0, 0]])
    assert not marker.exists()


def test_the_unpickler_refuses_globals_even_past_the_scan(tmp_path):
    import io

    from nnframe.persistence import _PlainUnpickler
    data = pickle.dumps(np.float64(1.0))
    with pytest.raises(UnsafeModelError):
        _PlainUnpickler(io.BytesIO(data)).load()


class Doubler(nnframe.Activation):
    name = "doubler"

    def forward(self, z):
        return 2 * z

    def backward(self, z, a, grad):
        return 2 * grad


def test_session_activations_are_embedded_and_need_trust(tmp_path):
    net = NeuralNetwork(3, [2, 3, 2], [None, Doubler(), "softmax"], "cross_entropy", seed=0)
    path = tmp_path / "custom.pkl"
    net.save(path)
    assert isinstance(pickle.loads(path.read_bytes())["activations"][1]["embedded"], bytes)
    with pytest.raises(UnsafeModelError, match="embeds Python code for the activation 'doubler'"):
        nnframe.load(path)
    loaded = nnframe.load(path, trusted=True)
    x = np.ones((1, 2))
    np.testing.assert_array_equal(loaded.forward_pass(x), net.forward_pass(x))


def test_a_missing_plugin_names_the_activation_and_the_package(tmp_path):
    net = NeuralNetwork(3, [2, 3, 2], [None, "gelu", "softmax"], "cross_entropy")
    payload = to_payload(net)
    payload["activations"][1].update(name="mish", distribution="nnframe-mish", version="1.2")
    path = tmp_path / "m.pkl"
    path.write_bytes(dill.dumps(payload))
    with pytest.raises(MissingPluginError) as info:
        nnframe.load(path)
    assert "'mish'" in str(info.value) and "pip install nnframe-mish" in str(info.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(format="other"), "header"),
    (lambda p: p.update(format_version=99), "upgrade nnframe"),
    (lambda p: p.update(dtype="object"), "dtype"),
    (lambda p: p["weights"][0].update(shape=[5, 6]), "shape"),
    (lambda p: p["weights"][0].update(data=b"\x00" * 3), "bytes"),
    (lambda p: p["biases"].pop(), "biases"),
    (lambda p: p.update(num_nodes=[4, -6, 3]), "num_nodes"),
    (lambda p: p["weights"][1].update(
        data=np.full((6, 3), np.nan, "<f4").tobytes()), "NaN"),
])
def test_inconsistent_files_are_rejected_with_a_reason(tmp_path, mutate, message):
    net, _, _ = trained()
    payload = to_payload(net)
    mutate(payload)
    path = tmp_path / "bad.pkl"
    path.write_bytes(dill.dumps(payload))
    with pytest.raises(ModelFileError, match=message):
        nnframe.load(path)


def test_missing_empty_truncated_and_garbage_files(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        nnframe.load(tmp_path / "absent.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        nnframe.load(tmp_path / "empty.pkl")
    net, _, _ = trained()
    net.save(tmp_path / "good.pkl")
    data = (tmp_path / "good.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a valid nnframe model file"):
        nnframe.load(tmp_path / "cut.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"hello, world")
    with pytest.raises(ModelFileError):
        nnframe.load(tmp_path / "junk.pkl")


def test_filenames_must_end_in_pkl(tmp_path):
    net, x, ids = trained()
    with pytest.raises(InputError, match=r"does not end in \.pkl.*model\.pkl"):
        net.save(tmp_path / "model.txt")
    with pytest.raises(InputError, match="pkl"):
        net.train(8, x, ids, 1, 0.1, tmp_path / "model")
    with pytest.raises(InputError, match="pkl"):
        nnframe.load(tmp_path / "model.json")


# -- metadata: plain data of the user's (nnframe train keeps its settings there) ----------
def test_metadata_is_saved_and_loaded_back(tmp_path):
    from nnframe import NeuralNetwork, load

    net = NeuralNetwork(3, [2, 3, 2], [None, "relu", "softmax"], "cross_entropy", seed=0)
    assert net.metadata == {}
    net.metadata = {"run": "a", "split": 0.1, "sizes": (1, 2), "nested": {"ok": [True, None]}}
    net.save(tmp_path / "m.pkl")
    loaded = load(tmp_path / "m.pkl")  # the safe loader accepts it
    assert loaded.metadata == {"run": "a", "split": 0.1, "sizes": [1, 2],
                               "nested": {"ok": [True, None]}}


@pytest.mark.parametrize("metadata, needle", [
    ({"x": np.float32(1)}, "network.metadata['x'] is float32"),
    ({1: "a"}, "has the key 1; metadata keys must be strings"),
    ({"long": "x" * 5000}, "a string of 5,000 characters"),
    ({"big": 2**70}, "wider than 64 bits"),
])
def test_metadata_that_would_not_load_is_refused_and_the_file_kept(tmp_path, metadata, needle):
    from nnframe import InputError, NeuralNetwork

    net = NeuralNetwork(3, [2, 3, 2], [None, "relu", "softmax"], "cross_entropy", seed=0)
    path = tmp_path / "m.pkl"
    net.save(path)
    before = path.read_bytes()
    net.metadata = metadata
    with pytest.raises(InputError, match=re.escape(needle)):
        net.save(path)
    assert path.read_bytes() == before
