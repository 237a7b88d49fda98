"""Closed-form output deltas are chosen by identity (the built-in classes), never by name.

A user's own activation that happens to be called "softmax" or "sigmoid" must go through its
own backward; otherwise back_pass silently applies a step that is not the gradient.
"""

import numpy as np
import pytest
from test_network import back_pass_step_error

import nnframe
from nnframe import NeuralNetwork
from nnframe.builtins.activations import Sigmoid, Softmax
from nnframe.builtins.costs import BinaryCrossEntropy, CrossEntropy


class TemperatureSoftmax(nnframe.Activation):
    """softmax(z / T), honestly named "softmax" by a user who kept the familiar name."""

    name = "softmax"
    T = 2.0

    def forward(self, z):
        e = np.exp(z / self.T - (z / self.T).max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backward(self, z, a, grad):
        return a * (grad - (a * grad).sum(axis=1, keepdims=True)) / self.T


class SteepSigmoid(nnframe.Activation):
    """sigmoid(2 z), named "sigmoid"."""

    name = "sigmoid"

    def forward(self, z):
        return 1.0 / (1.0 + np.exp(-2.0 * z))

    def backward(self, z, a, grad):
        return grad * 2.0 * a * (1.0 - a)


class SubclassedSoftmax(Softmax):
    """A subclass of the built-in that overrides the maths: isinstance would trust it."""

    def forward(self, z):
        return super().forward(z / 2.0)

    def backward(self, z, a, grad):
        return super().backward(z, a, grad) / 2.0


class ScaledCrossEntropy(CrossEntropy):
    """A subclass of the built-in cost with its own loss: the inherited closed form is wrong."""

    name = "scaled_cross_entropy"

    def loss(self, a, y):
        return 3.0 * super().loss(a, y)

    def gradient(self, a, y):
        return 3.0 * super().gradient(a, y)


class ScaledBinaryCrossEntropy(BinaryCrossEntropy):
    name = "scaled_binary_cross_entropy"

    def loss(self, a, y):
        return 3.0 * super().loss(a, y)

    def gradient(self, a, y):
        return 3.0 * super().gradient(a, y)


def step_error(output, cost):
    """Relative difference between the step back_pass applies and -rate * the true
    (central finite-difference) gradient of calculate_error."""
    rng = np.random.default_rng(0)
    net = NeuralNetwork(3, [3, 5, 3], [None, "tanh", output], cost, dtype=np.float64, seed=1)
    return back_pass_step_error(net, rng.normal(size=(6, 3)), rng.integers(0, 3, 6))


@pytest.mark.parametrize("output, cost", [
    (TemperatureSoftmax(), "cross_entropy"),        # the reproduction: a step twice too big
    (SteepSigmoid(), "cross_entropy"),              # for_output chose BCE by the name
    (SteepSigmoid(), "binary_cross_entropy"),       # BCE's closed form chosen by the name
    (SubclassedSoftmax(), "cross_entropy"),         # a subclass is not the built-in
    ("softmax", ScaledCrossEntropy()),              # a cost subclass inherits fused_delta
    ("sigmoid", ScaledBinaryCrossEntropy()),
    ("sigmoid", ScaledCrossEntropy()),              # ...and for_output
])
def test_back_pass_is_the_true_gradient_for_look_alikes(output, cost):
    assert step_error(output, cost) < 1e-6


@pytest.mark.parametrize("output, cost", [("softmax", "cross_entropy"),
                                          ("sigmoid", "binary_cross_entropy"),
                                          ("sigmoid", "cross_entropy")])
def test_builtins_still_get_their_closed_forms(output, cost):
    net = NeuralNetwork(2, [3, 3], [None, output], cost, dtype=np.float64)
    assert net._fused is not None
    assert step_error(output, cost) < 1e-6


def test_closed_forms_are_offered_to_the_builtin_classes_only():
    ce, bce = CrossEntropy(), BinaryCrossEntropy()
    assert ce.fused_delta(Softmax()) is not None
    assert bce.fused_delta(Sigmoid()) is not None
    assert type(ce.for_output(Sigmoid())) is BinaryCrossEntropy
    for impostor in (TemperatureSoftmax(), SubclassedSoftmax()):
        assert ce.fused_delta(impostor) is None
    assert bce.fused_delta(SteepSigmoid()) is None
    assert ce.for_output(SteepSigmoid()) is ce
    assert ScaledCrossEntropy().fused_delta(Softmax()) is None
    scaled = ScaledCrossEntropy()
    assert scaled.for_output(Sigmoid()) is scaled
