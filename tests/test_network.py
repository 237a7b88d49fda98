import numpy as np
import pytest

import nnframe
from nnframe import NeuralNetwork

ACTIVATIONS = nnframe.list_activations()
COSTS = nnframe.list_costs()
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def blobs(n=150, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-4, 4, (classes, 2))
    ids = rng.integers(0, classes, n)
    return (centres[ids] + rng.normal(0, 0.4, (n, 2))).astype(np.float32), ids


def test_learns_xor():
    net = NeuralNetwork(3, [2, 8, 2], [None, "tanh", "softmax"], "cross_entropy", seed=0)
    net.train(4, XOR_X, XOR_Y, 1500, 0.5, seed=0)
    assert net.check_accuracy(None, XOR_X, XOR_Y) == 100.0
    np.testing.assert_array_equal(net.predict(None, XOR_X), np.eye(2)[XOR_Y])


def test_learns_xor_with_a_single_sigmoid_output_and_the_classic_api():
    net = nnframe.neural_network(3, [2, 6, 1], [None, "tanh", "sigmoid"], "mean_squared",
                                 seed=3)
    for _ in range(3000):
        net.forward_pass(XOR_X)
        net.back_pass(XOR_Y.reshape(-1, 1).astype(float), 2.0)
    assert net.calculate_error(XOR_Y.reshape(-1, 1)) < 0.05
    assert net.check_accuracy(None, XOR_X, XOR_Y) == 100.0


def test_learns_a_three_class_problem():
    x, ids = blobs()
    net = NeuralNetwork(3, [2, 16, 3], [None, "relu", "softmax"], "cross_entropy", seed=1)
    history = net.train(16, x, ids, 60, 0.1, seed=2)
    assert net.check_accuracy(None, x, ids) == 100.0
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] == 100.0


def test_layers_follow_the_classic_shapes():
    net = NeuralNetwork(4, [5, 7, 3, 2], [None, "relu", "tanh", "softmax"], "cross_entropy")
    assert len(net.layers) == 4
    for layer, n_in, n_out in zip(net.layers[:-1], [5, 7, 3], [7, 3, 2], strict=True):
        assert isinstance(layer, nnframe.Layer)
        assert layer.weights_for_layer.shape == (n_in, n_out)
        assert layer.bias_for_layer.shape == (1, n_out)
    assert net.layers[-1].weights_for_layer is None and net.layers[-1].bias_for_layer is None
    net.train(4, np.ones((10, 5)), np.zeros(10, dtype=int), 2, 0.1)
    for layer, n_out in zip(net.layers[:-1], [7, 3, 2], strict=True):
        assert layer.bias_for_layer.shape == (1, n_out)  # no batch dimension creeps in


def test_layer_can_be_built_alone():
    layer = nnframe.layer(4, 3, "relu", rng=0)
    assert layer.weights_for_layer.shape == (4, 3) and layer.bias_for_layer.shape == (1, 3)
    assert layer.activation_function is nnframe.get_activation("relu")
    assert "relu" in repr(layer)


@pytest.mark.parametrize("output", ACTIVATIONS)
@pytest.mark.parametrize("cost", COSTS)
def test_back_pass_applies_exactly_minus_rate_times_gradient(output, cost):
    """For every output activation and cost (hidden layers: every activation in turn)."""
    rng = np.random.default_rng(0)
    hidden = ACTIVATIONS[(ACTIVATIONS.index(output) + COSTS.index(cost)) % len(ACTIVATIONS)]
    net = NeuralNetwork(4, [3, 5, 4, 3], [None, hidden, "tanh", output], cost,
                        dtype=np.float64, seed=1)
    error_ratio = back_pass_step_error(net, rng.normal(size=(6, 3)), rng.integers(0, 3, 6))
    assert error_ratio < 1e-6, f"{hidden} -> {output} with {cost}: {error_ratio:.2e}"


def back_pass_step_error(net, x, ids, rate=0.3, h=1e-6) -> float:
    """Relative difference between the step ``back_pass`` applies and ``-rate`` times the
    central finite-difference gradient of ``calculate_error`` (float64 networks)."""
    def error():
        net.forward_pass(x)
        return net.calculate_error(ids)

    before = [p.copy() for p in net.parameters()]
    numeric = []
    for p in net.parameters():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = error()
            p[i] = old - h
            down = error()
            p[i] = old
            g[i] = (up - down) / (2 * h)
        numeric.append(g)
    net.forward_pass(x)
    net.back_pass(ids, rate)
    applied = np.concatenate([(b - p).ravel() for b, p in zip(before, net.parameters(),
                                                              strict=True)])
    expected = rate * np.concatenate([g.ravel() for g in numeric])
    return float(np.linalg.norm(applied - expected) / max(np.linalg.norm(expected), 1e-12))


def test_fused_softmax_cross_entropy_delta_is_chosen_at_build_time():
    net = NeuralNetwork(2, [3, 4], [None, "softmax"], "cross_entropy")
    assert net._fused is not None
    net = NeuralNetwork(2, [3, 4], [None, "sigmoid"], "cross_entropy")
    assert net._loss.name == "binary_cross_entropy" and net._fused is not None
    net = NeuralNetwork(2, [3, 4], [None, "tanh"], "mean_squared")
    assert net._fused is None


def test_train_uses_every_sample_with_a_smaller_last_batch():
    x, ids = blobs(n=10)
    trained = NeuralNetwork(3, [2, 4, 3], [None, "tanh", "softmax"], "cross_entropy",
                            dtype=np.float64, seed=5)
    manual = NeuralNetwork(3, [2, 4, 3], [None, "tanh", "softmax"], "cross_entropy",
                           dtype=np.float64, seed=5)
    batches = []
    trained.train(3, x, ids, 2, 0.2, seed=9, callback=lambda s: batches.append(s.batch))
    assert batches == [1, 2, 3, 4, 4, 1, 2, 3, 4, 4]  # 4 batches per epoch, then epoch end
    rng = np.random.default_rng(9)
    for _ in range(2):
        order = rng.permutation(10)
        for start in range(0, 10, 3):
            index = order[start:start + 3]
            manual.forward_pass(x[index])
            manual.back_pass(ids[index], 0.2)
    for a, b in zip(trained.parameters(), manual.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_any_batch_size_works(batch_size):
    x, ids = blobs(n=50)
    net = NeuralNetwork(3, [2, 8, 3], [None, "relu", "softmax"], "cross_entropy", seed=0)
    history = net.train(batch_size, x, ids, 2, 0.05, seed=0)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


def test_training_is_reproducible_with_seeds():
    x, ids = blobs()

    def run(seed):
        net = NeuralNetwork(3, [2, 8, 3], [None, "relu", "softmax"], "cross_entropy", seed=1)
        net.train(10, x, ids, 3, 0.1, seed=seed)
        return net.parameters()

    for a, b in zip(run(4), run(4), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run(4)[0], run(5)[0])


def test_one_hot_and_integer_labels_train_identically():
    x, ids = blobs(n=40)
    nets = [NeuralNetwork(3, [2, 5, 3], [None, "sigmoid", "softmax"], "cross_entropy", seed=2)
            for _ in range(2)]
    nets[0].train(8, x, ids, 3, 0.1, seed=1)
    nets[1].train(8, x, np.eye(3)[ids], 3, 0.1, seed=1)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_uint8_inputs_are_converted_before_arithmetic():
    x = np.array([[200, 255], [0, 10]], dtype=np.uint8)
    net = NeuralNetwork(2, [2, 2], [None, "softmax"], "cross_entropy", seed=0)
    out = net.forward_pass(x)
    expected = net.forward_pass(x.astype(np.float32))
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_float32_by_default_and_float64_on_request():
    net = NeuralNetwork(3, [4, 3, 2], [None, "relu", "softmax"], "cross_entropy")
    assert all(p.dtype == np.float32 for p in net.parameters())
    assert net.forward_pass(np.ones((2, 4))).dtype == np.float32
    net64 = NeuralNetwork(3, [4, 3, 2], [None, "relu", "softmax"], "cross_entropy",
                          dtype=np.float64)
    assert all(p.dtype == np.float64 for p in net64.parameters())


def test_initialisation_suits_the_activation():
    relu = NeuralNetwork(2, [400, 300], [None, "relu"], "mean_squared", seed=0)
    w = relu.layers[0].weights_for_layer
    assert abs(w.std() - np.sqrt(2 / 400)) < 0.003  # He
    tanh = NeuralNetwork(2, [400, 300], [None, "tanh"], "mean_squared", seed=0)
    w = tanh.layers[0].weights_for_layer
    limit = np.sqrt(6 / 700)
    assert np.abs(w).max() <= limit and abs(w.std() - limit / np.sqrt(3)) < 0.003  # Glorot
    again = NeuralNetwork(2, [400, 300], [None, "tanh"], "mean_squared", seed=0)
    np.testing.assert_array_equal(w, again.layers[0].weights_for_layer)


def test_predict_is_argmax_per_row_not_a_global_max():
    net = NeuralNetwork(2, [2, 3], [None, "softmax"], "cross_entropy", seed=0)
    net.layers[0].weights_for_layer[...] = [[5, 0, 0], [0, 0, 1]]
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    predicted = net.predict(None, x)
    assert predicted.shape == (3, 3)
    np.testing.assert_array_equal(predicted.argmax(axis=1), [0, 2, 0])
    np.testing.assert_array_equal(predicted.sum(axis=1), [1, 1, 1])
    single = net.predict(None, np.array([0.0, 1.0]))
    assert single.shape == (3,) and single.argmax() == 2
    assert net.predict_classes(x).tolist() == [0, 2, 0]


def test_check_accuracy_is_a_percentage():
    net = NeuralNetwork(2, [2, 2], [None, "softmax"], "cross_entropy", seed=0)
    net.layers[0].weights_for_layer[...] = [[1, 0], [0, 1]]
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert net.check_accuracy(None, x, [0, 1, 1, 1]) == 75.0
    assert net.check_accuracy(None, x, np.eye(2)[[0, 1, 0, 0]]) == 75.0


def test_objects_are_accepted_in_place_of_names():
    class Square(nnframe.Activation):
        name = "square"

        def forward(self, z):
            return z * z

        def backward(self, z, a, grad):
            return 2 * z * grad

    class Half(nnframe.Cost):
        name = "half"

        def loss(self, a, y):
            return float(0.25 * ((a - y) ** 2).sum() / len(a))

        def gradient(self, a, y):
            return 0.5 * (a - y) / len(a)

    net = NeuralNetwork(3, [2, 3, 2], [None, Square(), nnframe.get_activation("softmax")],
                        Half(), seed=0)
    assert net.activation_function == [None, "square", "softmax"]
    assert net.cost_function == "half"
    net.train(2, XOR_X, XOR_Y, 2, 0.1)


def test_repr_shows_the_architecture():
    net = NeuralNetwork(4, [784, 256, 128, 10], [None, "relu", "relu", "softmax"],
                        "cross_entropy")
    assert repr(net) == ("NeuralNetwork(784 -> 256 relu -> 128 relu -> 10 softmax, "
                         "cost=cross_entropy, dtype=float32, parameters=235,146)")


def test_history_and_validation_metrics():
    x, ids = blobs()
    net = NeuralNetwork(3, [2, 8, 3], [None, "relu", "softmax"], "cross_entropy", seed=0)
    history = net.train(16, x, ids, 3, 0.1, validation_data=(x[:30], ids[:30]))
    assert set(history) == {"loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.values())
    assert history["val_accuracy"][-1] == net.check_accuracy(None, x[:30], ids[:30])
    net.train(16, x, ids, 2, 0.1)
    assert len(net.history["loss"]) == 5  # the network keeps the whole history


def test_back_pass_defaults_to_the_last_training_rate():
    x, ids = blobs(n=20)
    net = NeuralNetwork(3, [2, 4, 3], [None, "tanh", "softmax"], "cross_entropy", seed=0)
    with pytest.raises(nnframe.InputError, match="learning_rate"):
        net.forward_pass(x)
        net.back_pass(ids)
    net.train(5, x, ids, 1, 0.05)
    assert net.learning_rate == 0.05
    twin = NeuralNetwork(3, [2, 4, 3], [None, "tanh", "softmax"], "cross_entropy", seed=0)
    for a, b in zip(twin.parameters(), net.parameters(), strict=True):
        a[...] = b
    net.forward_pass(x)
    net.back_pass(ids)
    twin.forward_pass(x)
    twin.back_pass(ids, 0.05)
    for a, b in zip(twin.parameters(), net.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_calculate_error_before_forward_pass_is_explained():
    net = NeuralNetwork(2, [2, 2], [None, "softmax"], "cross_entropy")
    with pytest.raises(nnframe.InputError, match="forward_pass"):
        net.calculate_error([0])


def test_cross_entropy_is_finite_for_saturated_outputs():
    net = NeuralNetwork(2, [1, 2], [None, "softmax"], "cross_entropy", seed=0)
    net.layers[0].weights_for_layer[...] = [[1e4, -1e4]]
    net.forward_pass([[1.0]])
    error = net.calculate_error([1])
    assert np.isfinite(error) and error > 50


def test_divergence_stops_with_epoch_and_batch_and_leaves_the_saved_model(tmp_path):
    x, ids = blobs()
    x = x * 1e4
    net = NeuralNetwork(3, [2, 8, 3], [None, "relu", "softmax"], "cross_entropy", seed=0)
    path = tmp_path / "model.pkl"
    net.save(path)
    before = path.read_bytes()
    weights = [p.copy() for p in net.parameters()]
    with pytest.raises(nnframe.TrainingDivergedError) as info:
        net.train(10, x, ids, 5, 1e6, path)
    assert info.value.epoch == 1 and info.value.batch >= 1
    assert "epoch 1, batch" in str(info.value) and "learning_rate" in str(info.value)
    assert path.read_bytes() == before
    for a, b in zip(net.parameters(), weights, strict=True):
        np.testing.assert_array_equal(a, b)  # restored to the start of the epoch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_blas_shortcut_and_plain_numpy_give_the_same_training(monkeypatch, dtype):
    from nnframe import _blas, ops

    x, ids = blobs(n=64)

    def run():
        net = NeuralNetwork(3, [2, 16, 3], [None, "relu", "softmax"], "cross_entropy",
                            dtype=dtype, seed=4)
        net.train(8, x, ids, 3, 0.1, seed=1)
        return net.parameters()

    assert _blas.available()  # loaded (and self-tested) before counting calls
    calls = []
    blas_call = _blas._call
    monkeypatch.setattr(_blas, "_call", lambda *args: calls.append(1) or blas_call(*args))
    monkeypatch.setattr(ops, "FUSED_UPDATE_MIN_SIZE", 0)  # these small layers too
    fast = run()
    assert len(calls) == 2 * 3 * 8  # two layers, three epochs, eight batches
    monkeypatch.setattr(_blas, "_gemm", {})  # as without a reachable BLAS
    monkeypatch.setitem(_blas._state, "ready", True)
    plain = run()
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_biased_product_through_blas_equals_numpy(monkeypatch, dtype):
    from nnframe import _blas, ops

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 40)).astype(dtype)
    weights = rng.standard_normal((40, 250)).astype(dtype)
    bias = rng.standard_normal((1, 250)).astype(dtype)
    assert _blas.available()
    calls = []
    accumulate = _blas._call_accumulate
    monkeypatch.setattr(_blas, "_call_accumulate",
                        lambda *args: calls.append(1) or accumulate(*args))
    z = ops.affine(a, weights, bias)
    assert calls == [1]  # 300 x 250 outputs: the fused path
    assert z.dtype == dtype and z.shape == (300, 250)
    np.testing.assert_allclose(z, a @ weights + bias, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    small = ops.affine(a[:3], weights, bias)  # too small: plain NumPy
    assert calls == [1]
    np.testing.assert_allclose(small, z[:3], rtol=1e-5, atol=1e-5)


def test_the_blas_shortcut_is_found_on_a_numpy_wheel():
    # NumPy wheels from PyPI ship OpenBLAS; if this fails the fast path silently went away.
    from nnframe import _blas

    assert _blas.available()


def test_verbose_prints_one_line_per_epoch_to_stderr_and_nothing_otherwise(capsys):
    x, ids = blobs(n=30)
    net = NeuralNetwork(3, [2, 4, 3], [None, "tanh", "softmax"], "cross_entropy", seed=0)
    net.train(10, x, ids, 2, 0.1)
    assert capsys.readouterr() == ("", "")  # a library does not print unless asked
    net.train(10, x, ids, 3, 0.1, verbose=True, validation_data=(x, ids))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 3
    # tqdm's finished bar, one line per epoch off a terminal, with the epoch's results
    assert lines[0].startswith("epoch 1/3: 100%|") and " 3/3 [" in lines[0]
    assert "batch/s, loss=" in lines[0] and " val_acc=" in lines[0]
    assert all(line.startswith(f"epoch {i}/3: ") for i, line in enumerate(lines, 1))
