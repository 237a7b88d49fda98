"""Dropout: inverted, only in training, reproducible, exact gradients for a frozen mask,
saved with the model and resumed exactly."""

from __future__ import annotations

import numpy as np
import pytest

import nnframe
from nnframe import InputError

SIZES = [6, 24, 12, 3]
RATES = [0.2, 0.5, 0.3, 0.0]


def network(dropout=RATES, seed=0, dtype=np.float64):
    return nnframe.NeuralNetwork(4, SIZES, [None, "relu", "tanh", "softmax"], "cross_entropy",
                                 dtype=dtype, seed=seed, dropout=dropout)


def data(n=120, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZES[0]))
    return x, (x[:, 0] > x[:, 1]).astype(int) + (x[:, 2] > 0.6)


def same(a, b) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_dropout_everywhere_trains_bit_identically_to_none(dtype):
    x, ids = data()
    plain, zero = network(None, dtype=dtype), network([0, 0.0, 0, 0], dtype=dtype)
    plain.train(16, x, ids, 3, 0.1, seed=1)
    zero.train(16, x, ids, 3, 0.1, seed=1)
    assert same(plain, zero)


def test_dropout_changes_training_and_is_reproducible_with_the_seed():
    x, ids = data()
    a, b, plain = network(), network(), network(None)
    for net in (a, b, plain):
        net.train(16, x, ids, 2, 0.1, seed=5)
    assert same(a, b)
    assert not same(a, plain)
    c = network()
    c.train(16, x, ids, 2, 0.1, seed=6)
    assert not same(a, c)


def test_inference_uses_every_unit():
    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.1, seed=0)
    out1, out2 = net.forward_pass(x), net.forward_pass(x)
    assert np.array_equal(out1, out2)
    undropped = network(None)
    for p, q in zip(undropped.parameters(), net.parameters(), strict=True):
        p[...] = q
    np.testing.assert_array_equal(out1, undropped.forward_pass(x))
    assert np.array_equal(net.predict(None, x), undropped.predict(None, x))
    assert net.check_accuracy(None, x, ids) == undropped.check_accuracy(None, x, ids)


def test_a_training_forward_pass_drops_the_rate_and_scales_the_rest():
    net = nnframe.NeuralNetwork(2, [2000, 3], [None, "softmax"], "cross_entropy", seed=0,
                                dtype=np.float64, dropout=[0.25, 0])
    x = np.ones((50, 2000))
    net.train(50, x, np.zeros(50, int), 0, 0.1, seed=0)  # sets the training generator
    net.forward_pass(x, training=True)
    kept = net.layers[0].activations
    assert set(np.unique(kept)) == {0.0, 1 / 0.75}
    assert np.mean(kept == 0) == pytest.approx(0.25, abs=0.01)
    assert np.mean(kept) == pytest.approx(1.0, abs=0.02)  # inverted: the mean is kept


def replay_loss(net, x, ids, masks):
    """The cost with the dropout masks of the last training pass frozen."""
    a = x * masks[0]
    for i, (w, b) in enumerate(zip(net.parameters()[0::2], net.parameters()[1::2],
                                   strict=True)):
        z = a @ w + b
        a = net.layers[i + 1].activation_function.forward(z)
        if masks[i + 1] is not None:
            a = a * masks[i + 1]
    return -np.mean(np.log(a[np.arange(len(ids)), ids]))


def test_the_gradient_is_exact_for_a_frozen_mask():
    x, ids = data(20)
    net = network()
    net.train(20, x, ids, 0, 0.1, seed=0)
    net.forward_pass(x, training=True)
    masks = [layer.dropout_mask for layer in net.layers]
    assert all(m is not None for m in masks[:3]) and masks[3] is None
    loss = net.calculate_error(ids)
    assert loss == pytest.approx(replay_loss(net, x, ids, masks), rel=1e-12)
    grads = net.gradients(ids)
    rng = np.random.default_rng(0)
    for param, grad in zip(net.parameters(), grads, strict=True):
        for _ in range(4):
            k = tuple(rng.integers(0, n) for n in param.shape)
            old = param[k]
            param[k] = old + 1e-6
            up = replay_loss(net, x, ids, masks)
            param[k] = old - 1e-6
            down = replay_loss(net, x, ids, masks)
            param[k] = old
            assert grad[k] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_back_pass_after_a_training_forward_pass_goes_through_the_mask():
    x, ids = data(20)
    net = network()
    net.train(20, x, ids, 0, 0.1, seed=0)
    net.forward_pass(x, training=True)
    grads = net.gradients(ids)
    before = [p.copy() for p in net.parameters()]
    net.back_pass(ids, 0.1)
    for p, b, g in zip(net.parameters(), before, grads, strict=True):
        np.testing.assert_allclose(p, b - 0.1 * g, rtol=1e-12, atol=1e-15)


def test_rates_are_saved_and_two_epochs_save_load_three_more_equal_five(tmp_path):
    x, ids = data()
    first = network()
    first.train(16, x, ids, 2, 0.01, optimizer="adam", seed=4)
    first.save(tmp_path / "m.pkl")
    resumed = nnframe.load(tmp_path / "m.pkl")
    assert resumed.dropout == RATES
    resumed.train(16, x, ids, 3, 0.01)
    whole = network()
    whole.train(16, x, ids, 5, 0.01, optimizer="adam", seed=4)
    assert same(resumed, whole)


@pytest.mark.parametrize("rates, message", [
    ([0.2, 0.5, 0.5, 0.1], r"dropout\[3\] is 0.1, but the output layer"),
    ([0.2, 1.0, 0.5, 0.0], r"dropout\[1\] is 1.0; a dropout rate is a number in \[0, 1\)"),
    ([0.2, -0.1, 0.5, 0.0], r"dropout\[1\] is -0.1"),
    ([0.2, "0.5", 0.5, 0.0], r"dropout\[1\] is '0.5'"),
    ([0.2, 0.5, 0.0], "dropout has 3 entries but num_layers is 4"),
    (0.5, "dropout must be a list with one entry per layer"),
])
def test_bad_rates_say_what_is_expected(rates, message):
    with pytest.raises(InputError, match=message):
        network(rates)


def test_training_must_be_a_bool():
    x, _ = data()
    with pytest.raises(InputError, match="training must be True or False"):
        network().forward_pass(x, training="yes")
