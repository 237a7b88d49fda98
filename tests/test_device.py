"""The device backend (issue 16): training, inference, saving and the kit on a GPU.

Every test marked ``gpu`` runs on the stand-in device (`nnframe._standin`: a CuPy look-alike
on the host that refuses implicit conversion to NumPy and host operands) everywhere, and on
a real CUDA GPU through CuPy where one is visible (`bench/gpu_check.py` runs them there). A
device run is compared with the CPU run of the same seed: the stand-in to rounding (it
computes with NumPy, but without the CPU's fused BLAS kernels), a GPU to a looser tolerance.
"""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

import nnframe
from nnframe import backend as backends
from nnframe._standin import StandinArray
from nnframe.errors import (
    DeviceUnavailableError,
    InputError,
    PluginContractError,
    PluginRuntimeError,
    TrainingDivergedError,
)
from nnframe.registry import get_registry
from nnframe.testing import check_activation, check_cost, check_optimizer


def _cuda_visible() -> bool:
    try:
        backends.get_backend("cuda")
    except DeviceUnavailableError:
        return False
    return True


DEVICES = ["standin", pytest.param("cuda", marks=pytest.mark.skipif(
    not _cuda_visible(), reason="no CUDA GPU visible (CuPy missing or no device)"))]
# float64 tolerance against the CPU run: the stand-in differs only where the CPU fuses BLAS.
TOLERANCE = {"standin": 1e-12, "cuda": 1e-9}

pytestmark = pytest.mark.gpu


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def data(rows=240, features=6, classes=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.random((rows, features)).astype(dtype), rng.integers(0, classes, rows)


def network(device="cpu", hidden="relu", output="softmax", cost="cross_entropy", *,
            dtype=np.float64, dropout=None, sizes=(6, 12, 3)):
    return nnframe.NeuralNetwork(len(sizes), list(sizes), [None, hidden, output], cost,
                                 dtype=dtype, seed=1, dropout=dropout, device=device)


def host(net, arrays):
    return [net._backend.to_host(a) for a in arrays]


def assert_close(cpu, dev, device, *, tolerance=None):
    tolerance = TOLERANCE[device] if tolerance is None else tolerance
    for a, b in zip(cpu, dev, strict=True):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)


def assert_same_training(cpu, dev, hist_cpu, hist_dev, device):
    assert hist_dev.keys() == hist_cpu.keys()
    for key in hist_cpu:
        assert all(type(v) is float for v in hist_dev[key])  # plain floats, not device arrays
        np.testing.assert_allclose(hist_dev[key], hist_cpu[key], rtol=1e-9, atol=1e-9)
    assert_close(cpu.parameters(), host(dev, dev.parameters()), device)


def train_both(device, *, net_kwargs=None, epochs=2, **train_kwargs):
    x, y = data()
    nets, histories = [], []
    for where in ("cpu", device):
        net = network(where, **(net_kwargs or {}))
        histories.append(net.train(32, x, y, epochs, 0.1, seed=2, **train_kwargs))
        nets.append(net)
    return nets, histories


# -- every plugin, unchanged, trains on the device as on the CPU -----------------------------
@pytest.mark.parametrize("hidden", sorted(nnframe.list_activations()))
def test_every_activation_trains_as_on_the_cpu(device, hidden):
    (cpu, dev), (h1, h2) = train_both(device, net_kwargs={"hidden": hidden})
    assert dev.device == device and all(dev._backend.owns(p) for p in dev.parameters())
    assert_same_training(cpu, dev, h1, h2, device)


@pytest.mark.parametrize("cost", sorted(nnframe.list_costs()))
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_every_cost_trains_as_on_the_cpu(device, cost, output):
    (cpu, dev), (h1, h2) = train_both(device, net_kwargs={"output": output, "cost": cost})
    assert_same_training(cpu, dev, h1, h2, device)


OPTIMIZERS = [(name, {}) for name in sorted(nnframe.list_optimizers())] + [
    ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"weight_decay": 0.01}), ("rmsprop", {"momentum": 0.5})]


@pytest.mark.parametrize(("name", "settings"), OPTIMIZERS,
                         ids=[f"{n}-{s}" if s else n for n, s in OPTIMIZERS])
def test_every_optimizer_trains_as_on_the_cpu(device, name, settings):
    (cpu, dev), (h1, h2) = train_both(
        device, optimizer=nnframe.get_optimizer(name, **settings), schedule="cosine")
    assert_same_training(cpu, dev, h1, h2, device)
    for state_cpu, state_dev in zip(cpu._run.states, dev._run.states, strict=True):
        assert state_cpu.keys() == state_dev.keys()
        for key, value in state_dev.items():
            assert dev._backend.owns(value)  # the optimizer's state stays on the device
            assert_close([state_cpu[key]], [dev._backend.to_host(value)], device)


def test_dropout_masks_and_training(device):
    (cpu, dev), (h1, h2) = train_both(device, net_kwargs={"dropout": [0.2, 0.3, 0]},
                                      epochs=3)
    x, _ = data()
    if device == "standin":  # masks drawn as on the CPU: the same units dropped
        assert_same_training(cpu, dev, h1, h2, device)
        cpu.forward_pass(x, training=True)
        dev.forward_pass(x, training=True)
        for a, b in zip(cpu.layers[:-1], dev.layers[:-1], strict=True):
            if a.dropout_mask is not None:
                np.testing.assert_array_equal(dev._backend.to_host(b.dropout_mask),
                                              a.dropout_mask)
    else:  # a GPU draws its own masks: the same rates, and it learns as the CPU does
        assert h2["loss"][-1] < h2["loss"][0] and np.isfinite(h2["loss"]).all()
        assert abs(h2["loss"][-1] - h1["loss"][-1]) < 0.1
    dev.forward_pass(x, training=True)
    for layer, rate in zip(dev.layers, dev.dropout, strict=True):
        if rate:  # about that fraction dropped, the rest scaled by 1 / (1 - rate)
            mask = dev._backend.to_host(layer.dropout_mask)
            assert abs(np.mean(mask == 0) - rate) < 0.05
            assert np.allclose(mask[mask != 0], 1 / (1 - rate))


def test_a_gpu_draws_dropout_masks_on_the_device_without_touching_the_shuffle():
    """CuPy's path (the stand-in overrides it to draw as the CPU): one device generator per
    shuffling generator, seeded from its state, never advancing it."""
    from nnframe import _standin

    backend = backends._ArrayModuleBackend("cuda-like", _standin.namespace)
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    source = backend.dropout_source(rng)
    assert backend.dropout_source(rng) is source and rng.bit_generator.state == state
    draws = source.random((4, 5), dtype=np.float32)
    assert backend.owns(draws) and draws.dtype == np.float32
    assert backend.dropout_source(np.random.default_rng(8)) is not source


def test_one_sgd_step_in_float32_matches_the_cpu_to_1e5(device):
    x, y = data(64, dtype=np.float32)
    cpu, dev = (network(d, dtype=np.float32) for d in ("cpu", device))
    for net in (cpu, dev):
        net.train(64, x, y, 1, 0.1, seed=0)
    assert_close(cpu.parameters(), host(dev, dev.parameters()), device, tolerance=1e-5)


def test_validation_history_and_callbacks(device):
    x, y = data()
    seen = []
    (cpu, dev), (h1, h2) = train_both(
        device, validation_data=(x[:50], y[:50]),
        callbacks=[nnframe.callbacks.EarlyStopping(patience=5, restore_best_weights=True)],
        callback=lambda state: seen.append((type(state.loss), type(state.accuracy))))
    assert_same_training(cpu, dev, h1, h2, device)
    assert set(seen) <= {(float, float)}


# -- inputs and outputs --------------------------------------------------------------------
def test_device_inputs_and_labels_are_accepted(device):
    x, y = data()
    b = backends.get_backend(device)
    cpu, dev = network(), network(device)
    cpu.train(32, x, y, 2, 0.1, seed=2)
    dev.train(32, b.asarray(x), b.asarray(y), 2, 0.1, seed=2,
              validation_data=(b.asarray(x[:20]), b.asarray(y[:20])))
    assert_close(cpu.parameters(), host(dev, dev.parameters()), device)
    np.testing.assert_array_equal(dev.predict_classes(b.asarray(x)), cpu.predict_classes(x))
    assert dev.check_accuracy(None, b.asarray(x), b.asarray(y)) == cpu.check_accuracy(None, x, y)
    # A CPU network takes device arrays too (copied to the host).
    np.testing.assert_array_equal(cpu.predict_classes(b.asarray(x)), cpu.predict_classes(x))


def test_outputs_are_numpy_unless_asked(device):
    x, y = data()
    dev = network(device)
    dev.train(32, x, y, 1, 0.1, seed=0)
    for out in (dev.predict(None, x), dev.predict_classes(x), dev.forward_pass(x),
                *dev.gradients(y)):
        assert type(out) is np.ndarray
    assert type(dev.predict(None, x[0])) is np.ndarray and dev.predict(None, x[0]).ndim == 1
    on_device = dev.forward_pass(x, to_host=False)
    assert dev._backend.owns(on_device) and not isinstance(on_device, np.ndarray)
    assert all(dev._backend.owns(g) for g in dev.gradients(y, to_host=False))
    assert type(dev.calculate_error(y)) is float
    with pytest.raises(InputError, match="to_host must be True or False"):
        dev.forward_pass(x, to_host="no")


def test_classic_step_by_step_api(device):
    x, y = data(40)
    cpu, dev = network(), network(device)
    for net in (cpu, dev):
        net.forward_pass(x)
        net.calculate_error(y)
        net.back_pass(y, 0.1)
    assert cpu.error == pytest.approx(dev.error, rel=1e-12)
    assert_close(cpu.parameters(), host(dev, dev.parameters()), device)


def test_lazily_converted_inputs_move_one_batch_at_a_time(device, monkeypatch):
    x, y = data()
    images = (x * 255).astype(np.uint8)
    monkeypatch.setattr("nnframe._validation.LAZY_BYTES", 0)  # every conversion is lazy
    cpu, dev = network(), network(device)
    h1 = cpu.train(32, images, y, 1, 0.01, seed=3)
    h2 = dev.train(32, images, y, 1, 0.01, seed=3)
    assert_same_training(cpu, dev, h1, h2, device)
    np.testing.assert_array_equal(dev.predict_classes(images), cpu.predict_classes(images))


# -- moving, saving, loading ---------------------------------------------------------------
def test_to_moves_weights_and_optimizer_state(device):
    x, y = data()
    net = network()
    net.train(32, x, y, 1, 0.01, optimizer="adam", seed=4)
    before = [p.copy() for p in net.parameters()]
    assert net.to(device) is net and net.device == device
    assert all(net._backend.owns(p) for p in net.parameters())
    assert all(net._backend.owns(v) for state in net._run.states for v in state.values())
    assert "device=" + device in repr(net)
    assert_close(before, host(net, net.parameters()), device, tolerance=0)
    net.train(32, x, y, 1, 0.01, seed=5)
    assert net.to("cpu") is net and net.device == "cpu"
    assert all(type(p) is np.ndarray for p in net.parameters())
    reference = network()
    reference.train(32, x, y, 1, 0.01, optimizer="adam", seed=4)
    reference.train(32, x, y, 1, 0.01, seed=5)
    assert_close(reference.parameters(), net.parameters(), device)


def test_save_on_the_device_load_anywhere_and_continue(device, tmp_path):
    x, y = data()
    path = tmp_path / "model.pkl"
    dev = network(device)
    dev.train(32, x, y, 2, 0.01, optimizer="adam", schedule="cosine", seed=6, filename=path)
    on_cpu = nnframe.load(path)
    assert on_cpu.device == "cpu"
    assert_close(host(dev, dev.parameters()), on_cpu.parameters(), device, tolerance=0)
    back = nnframe.load(path, device=device)
    assert back.device == device and all(back._backend.owns(p) for p in back.parameters())
    assert nnframe.NeuralNetwork.load(path, device=device).device == device
    h1 = on_cpu.train(32, x, y, 1, 0.01)  # continues the saved optimizer and schedule
    h2 = back.train(32, x, y, 1, 0.01)
    assert_same_training(on_cpu, back, h1, h2, device)
    assert back.history.keys() == on_cpu.history.keys()
    for key, values in on_cpu.history.items():
        assert back.history[key] == pytest.approx(values, rel=1e-9)


def test_load_refuses_an_unknown_device_before_reading(tmp_path):
    with pytest.raises(InputError, match="device 'tpu' is not a device nnframe knows"):
        nnframe.load(tmp_path / "missing.pkl", device="tpu")


# -- failures on the device ----------------------------------------------------------------
def test_divergence_is_caught_and_restored(device):
    x, y = data()
    x = x * 1e4
    net = network(device, hidden="tanh")
    net.train(32, x, y, 1, 0.01, seed=0)
    before = host(net, net.parameters())
    with pytest.raises(TrainingDivergedError, match="training diverged at epoch 1"):
        net.train(32, x, y, 1, 1e300, seed=1)
    assert_close(before, host(net, net.parameters()), device, tolerance=0)
    assert len(net.history["loss"]) == 1


def test_nonfinite_device_inputs_are_named(device):
    x, y = data()
    x[7, 2] = np.nan
    b = backends.get_backend(device)
    net = network(device)
    for inputs in (x, b.asarray(x)):
        with pytest.raises(InputError, match="row 7, column 2"):
            net.train(32, inputs, y, 1, 0.1)
        with pytest.raises(InputError, match="row 7, column 2"):
            net.predict_classes(inputs)


def test_overflowing_inputs_are_named(device):
    x, _ = data(dtype=np.float32)
    x[5] = 3e38
    net = network(device, dtype=np.float32)
    with pytest.raises(InputError, match="inputs row 5 has values too large"):
        net.predict_classes(x)


class HostActivation(nnframe.Activation):
    """Converts to NumPy: fine on the CPU, refused on a GPU."""

    name = "host_relu"

    def forward(self, z):
        return np.maximum(np.asarray(z), 0)

    def backward(self, z, a, grad):
        return grad * (np.asarray(z) > 0)


class HostStateOptimizer(nnframe.Optimizer):
    name = "host_state"

    def __init__(self):
        super().__init__()

    def init_state(self, param):
        return {"m": np.zeros(param.shape, dtype=param.dtype)}

    def update(self, param, grad, state, learning_rate, step):
        param -= learning_rate * grad


class HostUpdateOptimizer(nnframe.Optimizer):
    name = "host_update"

    def __init__(self):
        super().__init__()

    def update(self, param, grad, state, learning_rate, step):
        param -= learning_rate * np.asarray(grad)


def test_a_plugin_that_converts_to_numpy_is_named(device):
    x, y = data()
    net = network(device, hidden=HostActivation())
    with pytest.raises(PluginRuntimeError,
                       match=r"activation 'host_relu'.*raised TypeError in forward.*GPU-safe"):
        net.train(32, x, y, 1, 0.1)
    with pytest.raises(PluginRuntimeError, match="activation 'host_relu'"):
        net.predict_classes(x)
    network(hidden=HostActivation()).train(32, x, y, 1, 0.1)  # on the CPU it is fine


def test_an_optimizer_that_keeps_host_state_is_named(device):
    x, y = data()
    with pytest.raises(PluginContractError, match=r"host_state.*init_state.*np.zeros_like"):
        network(device).train(32, x, y, 1, 0.1, optimizer=HostStateOptimizer())
    with pytest.raises(PluginRuntimeError, match=r"host_update.*raised TypeError in update"):
        network(device).train(32, x, y, 1, 0.1, optimizer=HostUpdateOptimizer())


# -- the conformance kit on the device -----------------------------------------------------
def test_the_kit_passes_every_plugin_on_the_device(device):
    registry = get_registry()
    for name in nnframe.list_activations():
        check_activation(nnframe.get_activation(name), device=device)
    for name in nnframe.list_costs():
        check_cost(nnframe.get_cost(name), device=device)
    for name in nnframe.list_optimizers():
        check_optimizer(registry.lookup("optimizer", name).obj, device=device)


def test_the_kit_names_what_breaks_on_the_device(device):
    with pytest.raises(AssertionError, match=r"host_relu.*forward on the device.*GPU-safe"):
        check_activation(HostActivation(), device=device)
    check_activation(HostActivation())  # the CPU checks alone pass
    with pytest.raises(AssertionError, match=r"init_state.*device"):
        check_optimizer(HostStateOptimizer, device=device)
    with pytest.raises(AssertionError, match=r"update on the device.*TypeError"):
        check_optimizer(HostUpdateOptimizer, device=device)


# -- the stand-in behaves as CuPy does -------------------------------------------------------
def test_the_standin_refuses_implicit_conversion_and_host_operands():
    b = backends.get_backend("standin")
    z = b.asarray(np.arange(6.0).reshape(2, 3))
    for convert in (np.asarray, np.array, lambda v: np.ascontiguousarray(v),
                    lambda v: np.float64(1.0) + np.ones((2, 3)) + v):
        with pytest.raises(TypeError, match="Implicit conversion|host numpy.ndarray"):
            convert(z)
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        z @ np.ones((3, 1))
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        z[np.array([0])]
    with pytest.raises(TypeError, match="where="):
        np.divide(z, 2.0, out=z, where=z > 1)
    # What stays on the device: ufuncs, functions, reductions, operators, indexing.
    for value in (np.exp(z), np.where(z > 1, z, 0.0), z.sum(), z @ z.T, z[b.asarray(
            np.array([1]))], np.zeros_like(z), np.count_nonzero(z)):
        assert isinstance(value, StandinArray)
    assert b.to_host(z).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert float(z.sum()) == 15.0 and type(z.get()) is np.ndarray


# -- choosing a device: the errors ---------------------------------------------------------
@pytest.mark.parametrize(("name", "hint"), [("gpu", "Did you mean 'cuda'"),
                                            ("cdua", "Did you mean 'cuda'"), ("tpu", "")])
def test_unknown_device_names_are_refused(name, hint):
    with pytest.raises(InputError, match=f"device '{name}' is not a device nnframe knows.*"
                                         f"'cpu'.*'cuda'.*{hint}"):
        network(name)
    with pytest.raises(InputError, match="device must be a name"):
        network(3)


def test_cuda_without_cupy_names_the_extras(monkeypatch):
    monkeypatch.setattr(backends, "_backends", {})
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(DeviceUnavailableError,
                       match=r"needs CuPy.*nnframe\[cuda12\].*nnframe\[cuda13\]"):
        network("cuda")
    with pytest.raises(DeviceUnavailableError, match="needs CuPy"):
        network().to("cuda")


@pytest.mark.parametrize("count", [0, RuntimeError("cudaErrorNoDevice: no CUDA-capable "
                                                   "device is detected")])
def test_cuda_without_a_gpu_says_so(monkeypatch, count):
    def device_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=device_count)))
    monkeypatch.setattr(backends, "_backends", {})
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(DeviceUnavailableError, match=r"CuPy is installed but .*no CUDA GPU|"
                                                     r"sees no CUDA GPU"):
        network("cuda")


# -- the command line ----------------------------------------------------------------------
def cli_train(out, *args):
    from nnframe.cli import main

    return main(["train", "--sample", "--subset", "300", "--hidden", "16", "--no-plot",
                 "--epochs", "2", "--out", str(out), *args])


def test_nnframe_train_on_the_device_and_resume_on_the_cpu(device, tmp_path, capsys):
    assert cli_train(tmp_path / "dev", "--device", device, "--dtype", "float64") == 0
    assert cli_train(tmp_path / "cpu", "--dtype", "float64") == 0
    capsys.readouterr()
    on_device = nnframe.load(tmp_path / "dev" / "model.pkl")
    on_cpu = nnframe.load(tmp_path / "cpu" / "model.pkl")
    assert_close(on_cpu.parameters(), on_device.parameters(), device)
    checkpoint = str(tmp_path / "dev" / "checkpoint.pkl")
    from nnframe.cli import main

    assert main(["train", "--resume", checkpoint, "--epochs", "3", "--device", "cpu"]) == 0
    assert nnframe.load(checkpoint).epochs == 3


def test_nnframe_train_refuses_a_device_it_cannot_use(tmp_path, capsys, monkeypatch):
    assert cli_train(tmp_path, "--device", "gpu") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Did you mean 'cuda'" in err[0]
    monkeypatch.setattr(backends, "_backends", {})
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert cli_train(tmp_path, "--device", "cuda") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nnframe[cuda12]" in err[0], err
    assert "--device cuda needs CuPy" in err[0] and "use --device cpu" in err[0]
    assert "device='" not in err[0]  # Python's spelling is for Python callers


def test_training_moves_the_data_once_and_nothing_back(monkeypatch):
    """The stand-in counts explicit copies: an in-memory training set goes to the device
    once per train call (inputs, targets, class ids) with one permutation per epoch, and
    nothing comes back to the host, so no explicit round trip hides in the loop either."""
    from nnframe import _standin

    x, y = data()
    net = network("standin")
    net.train(32, x, y, 1, 0.1, seed=0)  # the first call sets things up
    monkeypatch.setattr(_standin, "transfers", {"to_device": 0, "to_host": 0})
    epochs = 3
    net.train(32, x, y, epochs, 0.1)
    assert _standin.transfers == {"to_device": 3 + epochs, "to_host": 0}
    # Validation data too moves once per call (inputs, targets, class ids), not per epoch.
    monkeypatch.setattr(_standin, "transfers", {"to_device": 0, "to_host": 0})
    net.train(32, x, y, epochs, 0.1, validation_data=(x[:50], y[:50]))
    assert _standin.transfers == {"to_device": 6 + epochs, "to_host": 0}


def test_distributed_training_on_a_device_is_refused_clearly():
    x, y = data()  # mpi4py and MPICH are installed by make test (the mpi extra)
    try:
        from mpi4py import MPI  # noqa: F401
    except (ImportError, RuntimeError) as exc:  # a GPU machine without MPI
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            raise
        pytest.skip(f"needs mpi4py with an MPI library ({exc})")
    with pytest.raises(InputError, match=r"distributed training runs on the CPU.*"
                                         r"network.to\('cpu'\)"):
        network("standin").train(32, x, y, 1, 0.1, distributed=True)
