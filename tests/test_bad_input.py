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
    (np.array([[1, 1], [0, 1], [1, 0], [0, 1]]), "row 0 is [1, 1], which sums to 2"),
    (np.array([[1, 0], [0, 0], [1, 0], [0, 1]]), "row 1 is [0, 0], which sums to 0"),
    (np.array([[1, 0], [0, 1], [-1, 2], [0, 1]]), "row 2 is [-1, 2], which has a value outside"),
    (np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.6]]), "row 3 is [0.5, 0.6], which sums to 1.1"),
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
    ({"learning_rate": 10**400}, "does not fit a float"),
    ({"learning_rate": -10**400}, "does not fit a float"),
    ({"batch_size": -10**5000}, "batch_size must be an integer >= 1"),  # too long to print
    ({"num_epochs": -10**400}, "num_epochs must be an integer >= 0, got -1000000"),
    ({"seed": -10**5000}, "seed must be None or a non-negative integer"),
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


@pytest.mark.parametrize("rate", [10**400, -10**400])
def test_back_pass_rejects_a_learning_rate_beyond_any_float(rate):
    from fractions import Fraction

    network = net()
    network.forward_pass(GOOD_X)
    before = [p.copy() for p in network.parameters()]
    for value in (rate, Fraction(rate, 3)):
        with pytest.raises(InputError, match="learning_rate .*does not fit a float"):
            network.back_pass(GOOD_Y, value)
    for a, b in zip(network.parameters(), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch_size", [10**400, 2**64, 2**63 - 1, 1000])
def test_a_batch_larger_than_the_data_is_one_batch_of_all_of_it(batch_size):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    whole, huge = net(), net()
    expected = whole.train(30, x, y, 2, 0.1, seed=0)
    batches = []
    history = huge.train(batch_size, x, y, 2, 0.1, seed=0,
                         callback=lambda s: batches.append((s.batch, s.num_batches)))
    assert history == expected and history["loss"][0] > 0  # not an epoch of no batches
    assert batches == [(1, 1)] * 4  # one batch, then the epoch end, twice
    for a, b in zip(whole.parameters(), huge.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_huge_integers_elsewhere_get_input_errors():
    with pytest.raises(InputError, match="num_layers is 100000"):
        NeuralNetwork(10**400, [3, 2], [None, "softmax"], "cross_entropy")
    with pytest.raises(InputError, match="num_layers must be an integer >= 2"):
        NeuralNetwork(-10**5000, [3, 2], [None, "softmax"], "cross_entropy")
    with pytest.raises(InputError, match=r"more than 2\*\*\d+ bytes.*more than one array"):
        NeuralNetwork(3, [3, 10**400, 2], [None, "relu", "softmax"], "cross_entropy")
    net().train(2, GOOD_X, GOOD_Y, 1, 0.1, seed=10**400)  # any seed is a seed


@pytest.mark.parametrize("y", [
    np.array([[0.9, 0.1], [0.05, 0.95], [0.5, 0.5], [0, 1]]),  # label smoothing
    np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool),
    np.array([[0.7, 0.3 + 5e-5], [0, 1], [1, 0], [0, 1]]),  # within the tolerance
])
def test_probability_rows_are_accepted(y):
    network = net()
    network.train(2, GOOD_X, y, 1, 0.1)
    assert 0 <= network.check_accuracy(None, GOOD_X, y) <= 100


def test_float32_softmax_rows_are_probability_rows():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 1000)).astype(np.float32)
    rows = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True, dtype=np.float32)
    big = NeuralNetwork(2, [3, 1000], [None, "softmax"], "cross_entropy", seed=0)
    big.train(10, np.zeros((50, 3)), rows, 1, 0.1)


def single_output(cost="mean_squared"):
    return NeuralNetwork(3, [3, 4, 1], [None, "tanh", "sigmoid"], cost, seed=0)


@pytest.mark.parametrize("y", [[0, 1, 1, 0], [[0], [1], [1], [0]], [[0.2], [1], [0.9], [0]]])
def test_a_single_output_unit_takes_0_1_labels(y):
    single_output().train(2, GOOD_X, y, 1, 0.1)
    single_output("cross_entropy").train(2, GOOD_X, y, 1, 0.1)


@pytest.mark.parametrize("y, needle", [
    ([[0], [2], [1], [0]], "row 1 is [2], which has a value outside [0, 1]"),
    ([[0], [1], [-1], [0]], "row 2 is [-1]"),
])
def test_a_single_output_unit_refuses_other_labels(y, needle):
    with pytest.raises(InputError) as info:
        single_output().train(2, GOOD_X, y, 1, 0.1)
    assert needle in str(info.value) and "probability of class 1" in str(info.value)


def test_validation_labels_must_be_probability_rows_too():
    with pytest.raises(InputError, match="validation labels row 0 is"):
        net().train(2, GOOD_X, GOOD_Y, 1, 0.1,
                    validation_data=(GOOD_X, [[1, 1], [0, 1], [1, 0], [0, 1]]))


@pytest.mark.parametrize("hidden", ["relu", "tanh"])  # tanh hides the overflow from the loss
@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1e308)])  # finite
def test_training_on_inputs_that_overflow_the_network_is_refused(hidden, dtype, big):
    import warnings

    network = NeuralNetwork(3, [3, 4, 2], [None, hidden, "softmax"], "cross_entropy",
                            dtype=dtype, seed=0)
    network.layers[0].weights_for_layer[...] = 1.0  # so the sums of `big` surely overflow
    before = [p.copy() for p in network.parameters()]
    x = np.zeros((6, 3))
    x[4] = big
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=f"inputs row 4 has values too large for the "
                                             f"network's {np.dtype(dtype).name}.*[Ss]cale"):
            network.train(2, x, [0, 1, 0, 1, 0, 1], 2, 0.1)
        with pytest.raises(InputError, match="validation inputs row 4 has values too large"):
            network.train(2, x[:4], GOOD_Y, 1, 0.1, validation_data=(x, [0, 1] * 3))
    for a, b in zip(network.parameters(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert network.history == {}


@pytest.mark.parametrize("sizes", [[3, 1], [3, 1, 2]])
def test_a_softmax_on_one_unit_is_refused(sizes):
    activations = [None, "softmax"] + ["softmax"] * (len(sizes) - 2)
    with pytest.raises(InputError, match=r"'softmax' on a layer of one unit.*'sigmoid'"):
        NeuralNetwork(len(sizes), sizes, activations, "cross_entropy")
    NeuralNetwork(2, [3, 1], [None, "sigmoid"], "cross_entropy")


def test_layers_too_large_for_memory_are_refused_before_allocating():
    with pytest.raises(InputError) as info:
        NeuralNetwork(3, [784, 10**12, 10], [None, "relu", "softmax"], "cross_entropy")
    message = str(info.value)
    assert "[784, 1000000000000, 10]" in message and "2.82 PiB" in message
    assert "float32" in message and "memory" in message
    with pytest.raises(InputError, match="5.65 PiB for the weights and biases in float64"):
        NeuralNetwork(3, [784, 10**12, 10], [None, "relu", "softmax"], "cross_entropy",
                      dtype=np.float64)


def test_a_memory_error_while_building_becomes_an_input_error(monkeypatch):
    from nnframe import ops

    def no_memory(rng, fan_in, fan_out, scheme, dtype):
        raise MemoryError(f"Unable to allocate ({fan_in}, {fan_out})")

    monkeypatch.setattr(ops, "init_weights", no_memory)
    with pytest.raises(InputError, match=r"num_nodes \[3, 4, 2\] needs 104 bytes.*not enough "
                                         "memory"):
        net()
