"""One table over every registered activation and cost, built-in or installed."""

import numpy as np
import pytest

import nnframe
from nnframe.testing import check_activation, check_cost

ACTIVATIONS = nnframe.list_activations()
COSTS = nnframe.list_costs()


def test_the_example_plugin_is_installed_for_real():
    # The test command installs plugins/nnframe-extras; its names must be in this table.
    assert {"leaky_relu", "softplus", "silu", "gelu", "softsign"} <= set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_contract(name):
    check_activation(nnframe.get_activation(name))


@pytest.mark.parametrize("name", COSTS)
def test_cost_contract(name):
    check_cost(nnframe.get_cost(name))


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_keeps_shape_dtype_and_input(name, dtype):
    activation = nnframe.get_activation(name)
    z = np.random.default_rng(1).standard_normal((8, 5)).astype(dtype)
    before = z.copy()
    a = activation.forward(z)
    assert a.shape == z.shape and a.dtype == dtype
    np.testing.assert_array_equal(z, before)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_is_finite_at_extremes(name, dtype):
    activation = nnframe.get_activation(name)
    z = np.array([[-1e3, -50.0, 0.0, 50.0, 1e3]], dtype=dtype)
    with np.errstate(all="raise", under="ignore"):
        a = activation.forward(z)
        g = activation.backward(z, a, np.ones_like(a))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(name):
    activation = nnframe.get_activation(name)
    rng = np.random.default_rng(7)
    z = rng.uniform(-2.5, 2.5, (3, 4))
    z[np.abs(z) < 1e-3] = 0.3
    w = rng.standard_normal((3, 4))
    h = 1e-6
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (np.sum(activation.forward(up) * w) - np.sum(activation.forward(down) * w))
        numeric[i] /= 2 * h
    analytic = activation.backward(z, activation.forward(z), w)
    assert np.linalg.norm(numeric - analytic) / np.linalg.norm(numeric) < 1e-6


@pytest.mark.parametrize("name", COSTS)
def test_cost_gradient_matches_finite_differences(name):
    cost = nnframe.get_cost(name)
    rng = np.random.default_rng(3)
    a = rng.uniform(0.05, 0.95, (5, 3))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    h = 1e-6
    numeric = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (cost.loss(up, y) - cost.loss(down, y)) / (2 * h)
    analytic = cost.gradient(a, y)
    assert np.linalg.norm(numeric - analytic) / np.linalg.norm(numeric) < 1e-6


@pytest.mark.parametrize("name", COSTS)
def test_cost_never_nan_on_saturated_outputs(name):
    cost = nnframe.get_cost(name)
    for dtype in (np.float32, np.float64):
        a = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
        y = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
        with np.errstate(all="raise", under="ignore"):
            assert np.isfinite(cost.loss(a, y))
            assert np.all(np.isfinite(cost.gradient(a, y)))


def test_cross_entropy_on_sigmoid_means_binary_cross_entropy():
    cost = nnframe.get_cost("cross_entropy")
    assert cost.for_output(nnframe.get_activation("sigmoid")).name == "binary_cross_entropy"
    assert cost.for_output(nnframe.get_activation("softmax")) is cost
