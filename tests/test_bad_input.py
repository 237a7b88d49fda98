"""Every kind of bad input gets an nnframe error naming the problem, before any work."""

import numpy as np
import pytest

from nnframe import NeuralNetwork
from nnframe.errors import InputError, NNFrameError, UnknownNameError

GOOD_X = np.zeros((4, 3))
GOOD_Y = np.array([0, 1, 0, 1])


def net():
    return NeuralNetwork(3, [3, 4, 2], [None, "relu", "softmax"], "cross_entropy", seed=0)


@pytest.mark.parametrize("args, needle", [
    ((1, [3], [None], "cross_entropy"), "num_layers must be an integer >= 2"),
    ((3, [3, 4], [None, "relu", "softmax"], "cross_entropy"), "num_nodes has 2 entries"),
    ((3, [3, 4, 2], [None, "relu"], "cross_entropy"), "activation_function has 2 entries"),
    ((3, [3, 0, 2], [None, "relu", "softmax"], "cross_entropy"), "num_nodes[1]"),
    ((3, [3, 2.5, 2], [None, "relu", "softmax"], "cross_entropy"), "num_nodes[1]"),
    ((3, "342", [None, "relu", "softmax"], "cross_entropy"), "num_nodes must be a list"),
    ((3, [3, 4, 2], [None, None, "softmax"], "cross_entropy"), "activation_function[1] is None"),
    ((3, [3, 4, 2], ["relu", "relu", "softmax"], "cross_entropy"), "input layer"),
    ((3, [3, 4, 2], [None, 5, "softmax"], "cross_entropy"), "an activation must be a name"),
    ((3, [3, 4, 2], [None, "relu", "softmax"], 7), "cost_function must be a name"),
    ((True, [3, 4], [None, "relu"], "cross_entropy"), "num_layers"),
])
def test_constructor_rejects(args, needle):
    with pytest.raises(InputError) as info:
        NeuralNetwork(*args)
    assert needle in str(info.value)


def test_constructor_rejects_unknown_names_at_build_time():
    with pytest.raises(UnknownNameError, match="Did you mean 'relu'"):
        NeuralNetwork(3, [3, 4, 2], [None, "rellu", "softmax"], "cross_entropy")
    with pytest.raises(UnknownNameError, match="cost 'crossentropy'.*'cross_entropy'"):
        NeuralNetwork(3, [3, 4, 2], [None, "relu", "softmax"], "crossentropy")


def test_constructor_rejects_bad_dtype():
    with pytest.raises(InputError, match="float32 or np.float64"):
        NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", dtype=np.int32)
    with pytest.raises(InputError, match="float32 or np.float64"):
        NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", dtype="nonsense")


BAD_INPUTS = [
    (np.zeros(3), "must be 2-D"),
    (np.zeros((2, 3, 1)), "must be 2-D"),
    (np.zeros((4, 5)), "5 features per sample but the network's input layer has 3"),
    (np.zeros((0, 3)), "empty"),
    (np.array([[0, np.nan, 0]] * 4), "NaN or infinity (first at row 0, column 1)"),
    (np.array([[0, np.inf, 0]] * 4), "NaN or infinity"),
    (np.array([["a", "b", "c"]] * 4), "strings"),
    (np.array([[object()] * 3] * 4), "Python objects"),
    (np.zeros((4, 3), dtype=complex), "complex"),
    ([[1, 2, 3], [1, 2]], "could not be read as a numeric array"),
    ("abc", "must be a numeric array"),
    (np.full((4, 3), 1e300), "too large for float32"),
]

BAD_LABELS = [
    (np.array([0, 1, 0]), "3 rows but there are 4 input samples"),
    (np.array([0, 1, 2, 1]), "class ids from 0 to 2, but the network has 2 classes"),
    (np.array([0, -1, 0, 1]), "negative ids are never wrapped"),
    (np.array([0.5, 1, 0, 1]), "fractional"),
    (np.zeros((4, 3)), "3 columns but the network has 2 output nodes"),
    (np.array([0, np.nan, 0, 1]), "NaN"),
    (np.array(["0", "1", "0", "1"]), "strings"),
    (np.zeros(4, dtype=complex), "complex"),
    (np.zeros((4, 2, 1)), "1-D class ids or 2-D one-hot rows"),
    (5, "1-D class ids or 2-D one-hot rows"),
]


@pytest.mark.parametrize("x, needle", BAD_INPUTS)
def test_train_rejects_bad_inputs(x, needle):
    network = net()
    before = [p.copy() for p in network.parameters()]
    with pytest.raises(InputError) as info:
        network.train(2, x, GOOD_Y, 1, 0.1)
    assert needle in str(info.value)
    for a, b in zip(network.parameters(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # nothing half-done


@pytest.mark.parametrize("y, needle", BAD_LABELS)
def test_train_rejects_bad_labels(y, needle):
    with pytest.raises(InputError) as info:
        net().train(2, GOOD_X, y, 1, 0.1)
    assert needle in str(info.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 2.0}, "batch_size must be an integer"),
    ({"num_epochs": -1}, "num_epochs must be an integer >= 0"),
    ({"learning_rate": 0}, "learning_rate must be a positive finite number"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"learning_rate": "0.1"}, "learning_rate"),
    ({"filename": "model.h5"}, "does not end in .pkl"),
    ({"filename": "/no/such/dir/model.pkl"}, "does not exist"),
])
def test_train_rejects_bad_settings(kwargs, needle):
    args = {"batch_size": 2, "inputs": GOOD_X, "labels": GOOD_Y, "num_epochs": 1,
            "learning_rate": 0.1, **kwargs}
    with pytest.raises(InputError) as info:
        net().train(**args)
    assert needle in str(info.value)


def test_train_rejects_bad_validation_data():
    with pytest.raises(InputError, match="pair"):
        net().train(2, GOOD_X, GOOD_Y, 1, 0.1, validation_data=GOOD_X)
    with pytest.raises(InputError, match="validation labels"):
        net().train(2, GOOD_X, GOOD_Y, 1, 0.1, validation_data=(GOOD_X, [0, 1]))


@pytest.mark.parametrize("x, needle", [b for b in BAD_INPUTS if b[1] != "must be 2-D"])
@pytest.mark.parametrize("method", ["forward_pass", "predict", "check_accuracy"])
def test_inference_entry_points_reject_bad_inputs(method, x, needle):
    network = net()
    call = {
        "forward_pass": lambda: network.forward_pass(x),
        "predict": lambda: network.predict(None, x),
        "check_accuracy": lambda: network.check_accuracy(None, x, GOOD_Y),
    }[method]
    with pytest.raises(InputError) as info:
        call()
    assert needle in str(info.value)


def test_predict_accepts_one_1d_sample_but_not_3d():
    assert net().predict(None, np.zeros(3)).shape == (2,)
    with pytest.raises(InputError, match="one 1-D sample"):
        net().predict(None, np.zeros((1, 1, 3)))


@pytest.mark.parametrize("y, needle", BAD_LABELS)
def test_check_accuracy_and_step_api_reject_bad_labels(y, needle):
    network = net()
    with pytest.raises(InputError) as info:
        network.check_accuracy(None, GOOD_X, y)
    assert needle in str(info.value)
    network.forward_pass(GOOD_X)
    with pytest.raises(InputError):
        network.calculate_error(y)
    with pytest.raises(InputError):
        network.back_pass(y, 0.1)


def test_no_raw_numpy_error_escapes_for_any_bad_input():
    network = net()
    for x, _ in BAD_INPUTS:
        for y, _ in BAD_LABELS:
            with pytest.raises(NNFrameError):
                network.train(2, x, y, 1, 0.1)
