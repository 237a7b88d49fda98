import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nnframe
from nnframe.testing import check_cost, check_optimizer

NAMES = ["leaky_relu", "softplus", "silu", "gelu", "softsign"]
COSTS = ["huber"]
OPTIMIZERS = ["lion"]
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_module():
    """The nnframe_extras of this checkout, whatever copy of it pip installed: `make`
    installs the package non-editable and reinstalls it only when it runs."""
    path = os.path.join(HERE, "nnframe_extras", "__init__.py")
    spec = importlib.util.spec_from_file_location("nnframe_extras_checkout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_names_resolve_through_entry_points_in_a_fresh_interpreter():
    code = (
        "import sys, json, nnframe\n"
        "assert 'nnframe_extras' not in sys.modules\n"
        "out = {}\n"
        f"for kind, names in (('activation', {NAMES!r}), ('cost', {COSTS!r}),\n"
        f"                    ('optimizer', {OPTIMIZERS!r})):\n"
        "    for n in names:\n"
        "        e = nnframe.registry.get_registry().lookup(kind, n)\n"
        "        out[n] = [e.provider.distribution, e.provider.plugin, e.obj.__module__]\n"
        "print(json.dumps(out))\n"
    )
    # The installed entry point, resolved to this checkout's module (first on the path).
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    for name in NAMES + COSTS + OPTIMIZERS:
        assert found[name] == ["nnframe-extras", "extras", "nnframe_extras"]


def test_huber_is_half_the_squared_error_up_to_delta_and_linear_beyond():
    huber = checkout_module().Huber()
    assert huber.delta == 0.5
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    # row 1: residuals 0.1, 0.1 -> 0.005 + 0.005; row 2: 0.8, 0.8 -> 2 * 0.5 * (0.8 - 0.25)
    assert huber.loss(a, y) == pytest.approx((0.01 + 0.55) / 2)
    assert np.allclose(huber.gradient(a, y), [[-0.05, 0.05], [-0.25, 0.25]])
    small = np.array([[0.6, 0.4]]), np.array([[1.0, 0.0]])
    assert huber.loss(*small) == pytest.approx(nnframe.get_cost("mean_squared").loss(*small))


def test_the_huber_cost_passes_the_kit():
    check_cost(checkout_module().Huber())  # as test_conformance does, for the installed copy


def test_a_network_trains_with_huber():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    inputs = np.c_[labels + rng.normal(0, 0.3, 200), rng.normal(0, 1, 200)]
    net = nnframe.NeuralNetwork(3, [2, 8, 2], [None, "tanh", "softmax"],
                                checkout_module().Huber(), seed=0)
    history = net.train(20, inputs, labels, 30, 0.5, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    assert net.check_accuracy(None, inputs, labels) > 90


def test_lion_steps_by_the_sign_of_the_interpolated_momentum():
    lion = checkout_module().Lion(beta1=0.8, beta2=0.9)
    param = np.array([[1.0, -2.0, 0.5]])
    state = lion.init_state(param)
    grads = [np.array([[0.3, -0.1, 0.0]]), np.array([[-0.2, -0.4, 1.0]])]
    expected, m = param.copy(), np.zeros_like(param)
    for step, grad in enumerate(grads, start=1):
        lion.update(param, grad, state, 0.01, step)
        expected -= 0.01 * np.sign(0.8 * m + 0.2 * grad)
        m = 0.9 * m + 0.1 * grad
        np.testing.assert_allclose(param, expected, rtol=1e-15)
        np.testing.assert_allclose(state["m"], m, rtol=1e-15)
    # every coordinate with a non-zero direction moved by exactly the learning rate
    assert np.allclose(np.abs(param - [[1.0, -2.0, 0.5]]), [[0.0, 0.02, 0.01]])


def test_lion_weight_decay_is_decoupled_and_float32_stays_float32():
    lion = checkout_module().Lion(weight_decay=0.5)
    param = np.ones((2, 2), dtype=np.float32)
    state = lion.init_state(param)
    lion.update(param, np.zeros_like(param), state, 0.1, 1)  # no gradient: only the decay
    assert param.dtype == state["m"].dtype == np.float32
    assert np.allclose(param, 1 - 0.1 * 0.5)
    with pytest.raises(nnframe.InputError, match="beta1 must be a number in"):
        checkout_module().Lion(beta1=1.5)


def test_lion_passes_the_kit_and_trains_a_network_by_name():
    check_optimizer(checkout_module().Lion)  # as test_conformance does, for the installed copy
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    inputs = np.c_[labels + rng.normal(0, 0.3, 200), rng.normal(0, 1, 200)]
    net = nnframe.NeuralNetwork(3, [2, 8, 2], [None, "tanh", "softmax"], "cross_entropy",
                                seed=0)
    history = net.train(20, inputs, labels, 10, 0.01, optimizer="lion", seed=0)
    assert history["loss"][-1] < history["loss"][0]
    assert net.check_accuracy(None, inputs, labels) > 90
