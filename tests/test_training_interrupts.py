"""Whatever stops train() (Ctrl-C, SystemExit, a callback raising, even at an epoch's end)
leaves the weights of the interrupted epoch's start and a history of the completed epochs,
and the original exception propagates."""

import numpy as np
import pytest

import nnframe
from nnframe import NeuralNetwork

N, BATCH = 40, 8  # five batches per epoch


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, 3)).astype(np.float32), rng.integers(0, 3, N)


def network(hidden="tanh"):
    return NeuralNetwork(3, [3, 6, 3], [None, hidden, "softmax"], "cross_entropy", seed=0)


def stop_at(net, epoch, batch, exc, starts):
    """A callback raising ``exc`` after ``batch`` of ``epoch`` (``"end"``: at the epoch's
    end), recording in ``starts`` the weights at the start of every epoch."""
    def callback(state):
        if state.epoch_done:
            starts[state.epoch + 1] = [p.copy() for p in net.parameters()]
        if state.epoch == epoch and (state.epoch_done if batch == "end"
                                     else not state.epoch_done and state.batch == batch):
            raise exc
    return callback


def assert_weights(net, expected):
    for a, b in zip(net.parameters(), expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), ValueError("callback")],
                         ids=["KeyboardInterrupt", "SystemExit", "ValueError"])
@pytest.mark.parametrize("epoch, batch", [(1, 1), (2, 3), (2, 5), (2, "end"), (1, "end")])
def test_a_callback_raising_leaves_the_start_of_the_epoch(epoch, batch, exc):
    net = network()
    x, ids = data()
    starts = {1: [p.copy() for p in net.parameters()]}
    seen = []
    with pytest.raises(type(exc)) as info:
        net.train(BATCH, x, ids, 3, 0.5, seed=0, validation_data=(x[:10], ids[:10]),
                  callback=lambda s: (seen.append(s.history),
                                      stop_at(net, epoch, batch, exc, starts)(s)))
    assert info.value is exc  # the original exception, not a wrapper
    assert_weights(net, starts[epoch])
    assert set(net.history) == ({"loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"}
                                if epoch > 1 else set())  # no keys for nothing completed
    assert all(len(v) == epoch - 1 for v in net.history.values())
    history = seen[-1]  # the dict train would have returned: in step too
    assert all(len(v) == epoch - 1 for v in history.values())


def test_earlier_training_stays_in_the_history():
    net = network()
    x, ids = data()
    net.train(BATCH, x, ids, 2, 0.5, seed=0)
    before = {k: list(v) for k, v in net.history.items()}
    starts = {1: [p.copy() for p in net.parameters()]}
    with pytest.raises(KeyboardInterrupt):  # validation keys are new to this run
        net.train(BATCH, x, ids, 3, 0.5, validation_data=(x, ids),
                  callback=stop_at(net, 2, 2, KeyboardInterrupt(), starts))
    assert_weights(net, starts[2])
    assert set(net.history) == {"loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"}
    assert net.history["loss"][:2] == before["loss"] and len(net.history["loss"]) == 3
    assert len(net.history["val_loss"]) == 1


def test_a_first_epoch_interrupted_leaves_no_new_keys():
    net = network()
    x, ids = data()
    start = [p.copy() for p in net.parameters()]
    with pytest.raises(KeyboardInterrupt):
        net.train(BATCH, x, ids, 2, 0.5, validation_data=(x, ids),
                  callback=stop_at(net, 1, 4, KeyboardInterrupt(), {}))
    assert net.history == {}
    assert_weights(net, start)


class InterruptedBackward(nnframe.Activation):
    """tanh whose backward raises once armed: the output layer's weights are already
    updated then, the hidden layer's not."""

    name = "interrupted_tanh"

    def __init__(self, exc):
        self.exc, self.armed = exc, False

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad):
        if self.armed:
            raise self.exc
        return grad * (1 - a * a)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1)],
                         ids=["KeyboardInterrupt", "SystemExit"])
@pytest.mark.parametrize("epoch, batch", [(1, 1), (2, 3), (3, 5)])
def test_an_interrupt_inside_backward_mid_layer_leaves_the_start_of_the_epoch(exc, epoch,
                                                                              batch):
    hidden = InterruptedBackward(exc)
    net = network(hidden)
    x, ids = data()
    starts = {1: [p.copy() for p in net.parameters()]}

    def callback(state):
        if state.epoch_done:
            starts[state.epoch + 1] = [p.copy() for p in net.parameters()]
        hidden.armed = (state.epoch, state.batch) == (epoch, batch - 1) or (
            batch == 1 and state.epoch_done and state.epoch == epoch - 1)

    hidden.armed = (epoch, batch) == (1, 1)
    with pytest.raises(type(exc)):
        net.train(BATCH, x, ids, 3, 0.5, seed=0, callback=callback)
    assert_weights(net, starts[epoch])
    assert len(net.history.get("loss", [])) == epoch - 1


def test_num_epochs_beyond_any_count_runs_until_stopped():
    net = network()
    x, ids = data()
    starts = {1: [p.copy() for p in net.parameters()]}
    with pytest.raises(KeyboardInterrupt):
        net.train(BATCH, x, ids, 10**400, 0.5, callback=stop_at(net, 3, 1, KeyboardInterrupt(),
                                                                  starts))
    assert len(net.history["loss"]) == 2
    assert_weights(net, starts[3])
