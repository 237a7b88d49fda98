"""Training with optimizers: the default is today's fused SGD bit for bit, every built-in
trains a network as torch.optim does, and the optimizer's state is saved, resumed exactly,
restored with interrupted epochs and blamed when it fails."""

from __future__ import annotations

import numpy as np
import pytest
from test_optimizer_registry import THROWAWAY_LION

import nnframe
from nnframe import ops
from nnframe.errors import InputError, MissingPluginError, PluginRuntimeError

SIZES = [6, 16, 8, 3]


def network(dtype=np.float64, seed=0):
    return nnframe.NeuralNetwork(4, SIZES, [None, "relu", "tanh", "softmax"], "cross_entropy",
                                 dtype=dtype, seed=seed)


def data(n=150, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZES[0]))
    ids = (x[:, 0] + x[:, 1] > x[:, 2] + 0.5).astype(int) + (x[:, 3] > 0.7)
    return x, ids


def same(a, b) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# -- the default is the SGD of before, bit for bit ----------------------------------------
def reference_sgd(net, x, ids, batch_size, epochs, lr, seed):
    """The training loop before optimizers existed: forward, fused delta, and per layer
    (top down) propagate then `ops.weight_step`, written out independently."""
    rng = np.random.default_rng(seed)
    params = [p.copy() for p in net.parameters()]
    weights, biases = params[0::2], params[1::2]
    acts = [layer.activation_function for layer in net.layers[1:]]
    y = ops.one_hot(ids, net.num_nodes[-1], net.dtype)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            a, zs, outs = x[rows].astype(net.dtype), [], []
            outs.append(a)
            for w, b, act in zip(weights, biases, acts, strict=True):
                z = ops.affine(outs[-1], w, b)
                zs.append(z)
                outs.append(act.forward(z))
            delta = net._fused(outs[-1], y[rows])
            for i in range(len(weights) - 1, -1, -1):
                if i:
                    grad_a = delta @ weights[i].T
                ops.weight_step(outs[i], delta, lr, weights[i], biases[i])
                if i:
                    delta = acts[i - 1].backward(zs[i - 1], outs[i], grad_a)
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", [None, "sgd", "SGD"])
def test_default_sgd_is_the_fused_sgd_of_before_bit_for_bit(dtype, optimizer):
    x = np.random.default_rng(1).random((300, 80))
    ids = (x[:, :40].sum(axis=1) > x[:, 40:].sum(axis=1)).astype(int)
    # 80 x 128 is updated by the fused gemm, 128 x 3 by NumPy: both paths of weight_step.
    net = nnframe.NeuralNetwork(3, [80, 128, 3], [None, "relu", "softmax"], "cross_entropy",
                                dtype=dtype, seed=0)
    assert net.parameters()[0].size >= ops.FUSED_UPDATE_MIN_SIZE > net.parameters()[2].size
    expected = reference_sgd(net, x, ids, 32, 3, 0.3, seed=5)
    net.train(32, x, ids, 3, 0.3, optimizer=optimizer, seed=5)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), expected, strict=True))


def test_plain_sgd_through_update_equals_the_fused_path():
    """The fused path is only a faster way to do what SGD.update does."""
    from nnframe.builtins.optimizers import SGD

    class Unfused(SGD):
        def update(self, param, grad, state, learning_rate, step):
            super().update(param, grad, state, learning_rate, step)

    x, ids = data()
    fused, unfused = network(), network()
    fused.train(16, x, ids, 3, 0.2, seed=0)
    unfused.train(16, x, ids, 3, 0.2, optimizer=Unfused(), seed=0)
    for p, q in zip(fused.parameters(), unfused.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


# -- every built-in trains a network as torch.optim does ---------------------------------
TORCH_CASES = [
    ("sgd", {}, "SGD", {}),
    ("sgd", {"momentum": 0.9}, "SGD", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, "SGD",
     {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("adam", {}, "Adam", {}),
    ("adam", {"weight_decay": 1e-2}, "Adam", {"weight_decay": 1e-2}),
    ("adamw", {}, "AdamW", {}),
    ("rmsprop", {"momentum": 0.5}, "RMSprop", {"momentum": 0.5}),
    ("adagrad", {}, "Adagrad", {}),
]


@pytest.mark.parametrize("name, hyper, torch_name, torch_kwargs", TORCH_CASES,
                         ids=[f"{c[0]}{c[1] or ''}" for c in TORCH_CASES])
def test_training_a_network_matches_torch_optim(torch, name, hyper, torch_name, torch_kwargs):
    x, ids = data()
    net = network()
    params = [torch.tensor(p.copy(), requires_grad=True) for p in net.parameters()]
    opt = getattr(torch.optim, torch_name)(params, lr=0.01, foreach=False, **torch_kwargs)
    rng = np.random.default_rng(7)
    tx, tids = torch.tensor(x), torch.tensor(ids)
    for _ in range(3):
        order = torch.tensor(rng.permutation(len(x)))
        for start in range(0, len(x), 16):
            rows = order[start:start + 16]
            h = torch.relu(tx[rows] @ params[0] + params[1])
            h = torch.tanh(h @ params[2] + params[3])
            logits = h @ params[4] + params[5]
            loss = torch.nn.functional.cross_entropy(logits, tids[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.train(16, x, ids, 3, 0.01, optimizer=nnframe.get_optimizer(name, **hyper), seed=7)
    for ours, theirs in zip(net.parameters(), params, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


# -- choosing, continuing and replacing the optimizer -------------------------------------
def test_train_accepts_a_name_or_an_instance_and_keeps_it():
    x, ids = data()
    net = network()
    assert net.optimizer is None
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    adam = net.optimizer
    assert type(adam).__name__ == "Adam"
    net.train(16, x, ids, 1, 0.01)  # continues adam
    assert net.optimizer is adam and net._run.steps == [20] * 6
    net.train(16, x, ids, 1, 0.01, optimizer=adam)  # the current instance continues too
    assert net._run.steps == [30] * 6
    net.train(16, x, ids, 1, 0.01, optimizer=nnframe.get_optimizer("adam"))  # fresh state
    assert net._run.steps == [10] * 6


@pytest.mark.parametrize("bad, message", [
    (3, "optimizer must be a name such as 'adam'"),
    (nnframe.Optimizer, "optimizer is the class Optimizer; pass an instance"),
])
def test_a_wrong_optimizer_argument_says_what_is_expected(bad, message):
    x, ids = data()
    with pytest.raises(InputError, match=message):
        network().train(16, x, ids, 1, 0.01, optimizer=bad)


def test_an_optimizer_instance_with_a_bad_name_or_unrecorded_settings_is_refused():
    x, ids = data()

    class Unnamed(nnframe.Optimizer):
        def update(self, param, grad, state, learning_rate, step):
            param -= learning_rate * grad

    class Unrecorded(Unnamed):
        name = "unrecorded"

        def __init__(self):
            pass

    with pytest.raises(nnframe.PluginContractError, match="name"):
        network().train(16, x, ids, 1, 0.01, optimizer=Unnamed())
    with pytest.raises(nnframe.PluginContractError, match="super"):
        network().train(16, x, ids, 1, 0.01, optimizer=Unrecorded())


def test_an_unknown_optimizer_name_lists_the_known_ones():
    x, ids = data()
    with pytest.raises(nnframe.UnknownNameError, match="Did you mean 'adam'"):
        network().train(16, x, ids, 1, 0.01, optimizer="adan")


def test_back_pass_uses_and_continues_the_current_optimizer():
    x, ids = data(16)
    stepped, trained = network(), network()
    stepped.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    trained.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    for _ in range(3):  # one batch is the whole data: only the order of sums differs
        stepped.forward_pass(x)
        stepped.back_pass(ids)
    trained.train(16, x, ids, 3, 0.01)
    assert stepped._run.steps == trained._run.steps == [4] * 6
    for p, q in zip(stepped.parameters(), trained.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_gradients_are_arrays_aligned_with_the_parameters_and_change_nothing():
    x, ids = data(20)
    net = network()
    before = [p.copy() for p in net.parameters()]
    net.forward_pass(x)
    grads = net.gradients(ids)
    assert [g.shape for g in grads] == [p.shape for p in net.parameters()]
    assert all(np.array_equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    eps, k = 1e-6, (1, 2)  # one weight of the first matrix, by central differences
    net.parameters()[0][k] += eps
    net.forward_pass(x)
    up = net.calculate_error(ids)
    net.parameters()[0][k] -= 2 * eps
    net.forward_pass(x)
    down = net.calculate_error(ids)
    assert grads[0][k] == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_a_callback_can_stop_training_after_the_epoch():
    x, ids = data()
    net = network()

    def callback(state):
        if state.epoch == 2 and state.batch == 1:
            state.stop()

    history = net.train(16, x, ids, 10, 0.01, seed=0, callback=callback)
    assert len(history["loss"]) == 2 and len(net.history["loss"]) == 2


# -- save, load, resume -------------------------------------------------------------------
OPTIMIZERS = [("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("adam", {}),
              ("adamw", {"weight_decay": 0.1}), ("rmsprop", {"momentum": 0.9}),
              ("adagrad", {})]


@pytest.mark.parametrize("name, hyper", OPTIMIZERS, ids=[f"{n}{h or ''}" for n, h in OPTIMIZERS])
def test_two_epochs_save_load_three_more_equal_five(tmp_path, name, hyper):
    x, ids = data()
    first = network()
    first.train(16, x, ids, 2, 0.01, optimizer=nnframe.get_optimizer(name, **hyper), seed=3)
    first.save(tmp_path / "m.pkl")
    resumed = nnframe.load(tmp_path / "m.pkl")
    assert resumed.optimizer.hyperparameters == first.optimizer.hyperparameters
    resumed.train(16, x, ids, 3, 0.01)
    whole = network()
    whole.train(16, x, ids, 5, 0.01, optimizer=nnframe.get_optimizer(name, **hyper), seed=3)
    assert same(resumed, whole)
    assert resumed.history == whole.history


def test_a_plugin_optimizer_resumes_exactly_and_is_named_when_missing(tmp_path, make_plugin,
                                                                      monkeypatch):
    make_plugin("nnframe-lion", THROWAWAY_LION, version="2.1")
    nnframe.reload_plugins()
    x, ids = data()
    first = network()
    first.train(16, x, ids, 2, 1e-3,
                optimizer=nnframe.get_optimizer("throwaway_lion", beta2=0.9), seed=1)
    first.save(tmp_path / "lion.pkl")
    resumed = nnframe.load(tmp_path / "lion.pkl")
    resumed.train(16, x, ids, 3, 1e-3)
    whole = network()
    whole.train(16, x, ids, 5, 1e-3,
                optimizer=nnframe.get_optimizer("throwaway_lion", beta2=0.9), seed=1)
    assert same(resumed, whole)

    # Without the plugin the model still loads, predicts and saves its optimizer unchanged.
    monkeypatch.setenv("NNFRAME_BUILTINS_ONLY", "1")
    nnframe.reload_plugins()
    orphan = nnframe.load(tmp_path / "lion.pkl")
    assert orphan.optimizer is None
    assert orphan.check_accuracy(None, x, ids) == first.check_accuracy(None, x, ids)
    orphan.save(tmp_path / "again.pkl")
    with pytest.raises(MissingPluginError,
                       match="optimizer 'throwaway_lion'.*nnframe-lion.*NNFRAME_BUILTINS"):
        orphan.train(16, x, ids, 1, 1e-3)
    orphan.train(16, x, ids, 1, 1e-3, optimizer="sgd")  # a new optimizer starts afresh
    monkeypatch.delenv("NNFRAME_BUILTINS_ONLY")
    nnframe.reload_plugins()
    assert nnframe.load(tmp_path / "again.pkl").optimizer.hyperparameters["beta2"] == 0.9


def test_a_missing_optimizer_distribution_names_the_package(tmp_path):
    from nnframe import persistence

    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    payload = persistence.to_payload(net)
    payload["optimizer"].update(name="lamb", distribution="nnframe-lamb", version="0.3")
    loaded = persistence.from_payload(payload)
    loaded.predict(None, x)
    with pytest.raises(MissingPluginError, match=r"pip install nnframe-lamb"):
        loaded.train(16, x, ids, 1, 0.01)


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.update(steps=[1, 2]), "step counts"),
    (lambda r: r.update(state="x"), "the optimizer's state"),
    (lambda r: r["state"][0]["exp_avg"].update(dtype="O"), "dtype"),
    (lambda r: r["state"][0]["exp_avg"].update(data=b"\0" * 3), "holds 3 bytes"),
    (lambda r: r.update(hyperparameters={"beta1": [0.9]}), "hyperparameters"),
    (lambda r: r.update(name=7), "not a named record"),
])
def test_a_damaged_optimizer_record_is_a_model_file_error(change, problem):
    from nnframe import persistence

    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    payload = persistence.to_payload(net)
    change(payload["optimizer"])
    with pytest.raises(nnframe.ModelFileError, match=problem):
        persistence.from_payload(payload)


def test_saved_state_that_the_optimizer_no_longer_makes_leaves_a_usable_model():
    from nnframe import persistence

    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=0)
    payload = persistence.to_payload(net)
    del payload["optimizer"]["state"][0]["exp_avg"]
    loaded = persistence.from_payload(payload)
    assert loaded.optimizer is None
    with pytest.raises(nnframe.ModelFileError, match="cannot continue here.*optimizer="):
        loaded.train(16, x, ids, 1, 0.01)


# -- failures -----------------------------------------------------------------------------
class Exploding(nnframe.Optimizer):
    name = "exploding"

    def __init__(self, at=5):
        super().__init__(at=at)
        self.calls = 0

    def init_state(self, param):
        return {"m": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        self.calls += 1
        state["m"] += grad
        param -= learning_rate * state["m"]
        if self.calls == self.at:
            raise ZeroDivisionError("boom")


def test_an_optimizer_that_raises_is_named_and_everything_is_restored():
    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer=Exploding(at=10**9), seed=0)
    start = [p.copy() for p in net.parameters()]
    state = [s["m"].copy() for s in net._run.states]
    net.optimizer.at = net.optimizer.calls + 6 * 4 + 3  # mid-batch 5 of the next epoch
    with pytest.raises(PluginRuntimeError,
                       match=r"epoch 1, batch 5.*optimizer 'exploding'.*ZeroDivisionError"):
        net.train(16, x, ids, 1, 0.01)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), start, strict=True))
    assert all(np.array_equal(s["m"], m) for s, m in zip(net._run.states, state, strict=True))
    assert net._run.steps == [10] * 6


def test_an_interrupted_epoch_restores_the_optimizer_state_and_the_shuffling():
    x, ids = data()
    net, whole = network(), network()
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=2)

    def interrupt(state):
        if state.epoch == 1 and state.batch == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.train(16, x, ids, 2, 0.01, callback=interrupt)
    net.train(16, x, ids, 2, 0.01)  # as if the interrupted call never happened
    whole.train(16, x, ids, 3, 0.01, optimizer="adam", seed=2)
    assert same(net, whole)


def test_back_pass_that_fails_in_the_optimizer_changes_nothing():
    x, ids = data(16)
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer=Exploding(at=10**9), seed=0)
    start = [p.copy() for p in net.parameters()]
    net.optimizer.at = net.optimizer.calls + 3
    net.forward_pass(x)
    with pytest.raises(PluginRuntimeError, match="back_pass failed.*'exploding'"):
        net.back_pass(ids)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), start, strict=True))
    assert net._run.steps == [1] * 6


@pytest.mark.parametrize("how", ["bad schedule", "interrupted first epoch"])
def test_a_call_that_completes_no_epoch_keeps_the_optimizer_schedule_and_shuffling(how):
    x, ids = data()
    net = network()
    net.train(16, x, ids, 1, 0.01, optimizer="adam", seed=1)
    run, shuffle, steps = net._run, net._shuffle.bit_generator.state, list(net._run.steps)

    def interrupt(state):
        raise KeyboardInterrupt

    with pytest.raises((nnframe.UnknownNameError, KeyboardInterrupt)):
        if how == "bad schedule":
            net.train(16, x, ids, 2, 0.5, optimizer="sgd", schedule="bogus")
        else:
            net.train(16, x, ids, 2, 0.5, optimizer="sgd", schedule="cosine", seed=9,
                      callback=interrupt)
    assert net._run is run and net._run.steps == steps and net.schedule is None
    assert net._shuffle.bit_generator.state == shuffle and net.learning_rate == 0.01
