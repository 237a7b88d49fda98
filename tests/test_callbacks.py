"""Callback objects (`train(..., callbacks=[...])`): the protocol's order, stopping, errors
that stay the user's, and the built-ins EarlyStopping, ModelCheckpoint and ProgressBar."""

import io
import math

import numpy as np
import pytest
from test_training_interrupts import data, network

import nnframe
from nnframe import InputError, NeuralNetwork
from nnframe.callbacks import Callback, EarlyStopping, ModelCheckpoint, ProgressBar

BATCH = 10  # four batches per epoch of the 40 rows of data()


def weights(net):
    return [p.copy() for p in net.parameters()]


def assert_weights(net, expected):
    for a, b in zip(net.parameters(), expected, strict=True):
        np.testing.assert_array_equal(a, b)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, state):
        self.calls.append(("train_begin", state.epoch, state.batch))

    def on_epoch_begin(self, state):
        self.calls.append(("epoch_begin", state.epoch, state.batch))

    def on_batch_end(self, state):
        self.calls.append(("batch_end", state.epoch, state.batch))

    def on_epoch_end(self, state):
        assert state.epoch_done and len(state.history["loss"]) == state.epoch
        self.calls.append(("epoch_end", state.epoch, state.batch))

    def on_train_end(self, state):
        self.calls.append(("train_end", state.epoch, state.batch))


def test_the_protocol_runs_in_order_and_after_the_plain_callback():
    net, (x, ids), rec = network(), data(), Recorder()
    order = []
    net.train(BATCH, x, ids, 2, 0.1, seed=0, callbacks=[rec],
              callback=lambda s: order.append(("function", s.epoch, s.batch)))
    epoch = [("epoch_begin", 1, 0), *[("batch_end", 1, b) for b in range(1, 5)],
             ("epoch_end", 1, 4)]
    second = [(what, 2, b) for what, _, b in epoch]
    assert rec.calls == [("train_begin", 0, 0), *epoch, *second, ("train_end", 2, 4)]
    # the plain function: after every batch and at the epoch's end, as before
    assert order == [("function", e, b) for e in (1, 2) for b in (1, 2, 3, 4, 4)]


def test_state_gives_the_network_and_the_live_history():
    net, (x, ids) = network(), data()
    seen = []

    class Look(Callback):
        def on_epoch_end(self, state):
            seen.append((state.network is net, dict(state.history)["loss"][:]))

    history = net.train(BATCH, x, ids, 2, 0.1, seed=0, callbacks=[Look()])
    assert seen == [(True, history["loss"][:1]), (True, history["loss"])]


@pytest.mark.parametrize("method", ["on_batch_end", "on_epoch_end"])
def test_stop_ends_training_after_the_epoch(method):
    net, (x, ids) = network(), data()

    class Stop(Recorder):
        pass

    old = getattr(Recorder, method)

    def stop(self, state):
        old(self, state)
        if state.epoch == 2:
            state.stop()

    setattr(Stop, method, stop)
    rec = Stop()
    history = net.train(BATCH, x, ids, 5, 0.1, seed=0, callbacks=[rec])
    assert len(history["loss"]) == 2 and net.epochs == 2
    assert rec.calls[-1] == ("train_end", 2, 4)


class Raising(nnframe.Activation):
    """tanh that raises once armed: a callback's error replayed through it would be blamed
    on this plugin if the loop took the callback's exception for a plugin's."""

    name = "raising_tanh"
    armed = False

    def forward(self, z):
        if self.armed:
            raise RuntimeError("armed")
        return np.tanh(z)

    def backward(self, z, a, grad):
        return grad * (1 - a * a)


@pytest.mark.parametrize("method", ["on_train_begin", "on_epoch_begin", "on_batch_end",
                                    "on_epoch_end"])
def test_an_exception_from_a_callback_is_the_users_and_rolls_back_the_epoch(method):
    act = Raising()
    net, (x, ids) = network(act), data()
    starts = {1: weights(net)}
    error = ValueError("mine")

    class Boom(Callback):
        pass

    def boom(self, state):
        if state.epoch in (0, 2) and state.batch in (0, 3, 4):
            act.armed = True  # the plugin now fails on any replay of the batch
            raise error

    def keep(state):
        if state.epoch_done:
            starts[state.epoch + 1] = weights(net)

    setattr(Boom, method, boom)
    with pytest.raises(ValueError) as info:
        net.train(BATCH, x, ids, 3, 0.1, seed=0, callback=keep, callbacks=[Boom()])
    assert info.value is error  # not a PluginRuntimeError naming raising_tanh
    done = 0 if method == "on_train_begin" else 1
    assert net.epochs == done and len(net.history.get("loss", [])) == done
    assert_weights(net, starts[done + 1])


def test_callbacks_are_checked():
    net, (x, ids) = network(), data()
    with pytest.raises(InputError, match=r"callbacks\[0\] is the class EarlyStopping; pass "):
        net.train(BATCH, x, ids, 1, 0.1, callbacks=[EarlyStopping])
    with pytest.raises(InputError, match=r"callbacks\[1\] is builtin_.* use callback=f"):
        net.train(BATCH, x, ids, 1, 0.1, callbacks=[Recorder(), print])
    with pytest.raises(InputError, match="must be a list of nnframe.callbacks.Callback"):
        net.train(BATCH, x, ids, 1, 0.1, callbacks="EarlyStopping")
    assert net.epochs == 0


# -- EarlyStopping: Keras' rule on given values ----------------------------------------------
class Params:
    def __init__(self):
        self.params = [np.zeros(2)]

    def parameters(self):
        return self.params


def run_early_stopping(values, monitor="val_loss", **kwargs):
    """Feed ``values`` as the monitored history, one epoch at a time; the epoch it stopped
    at, with the weights (a marker per epoch) the network ends with."""
    stop = EarlyStopping(monitor=monitor, **kwargs)
    net = Params()
    history = {"loss": [], monitor: []}
    state = nnframe.TrainingState(0, len(values), 0, 1, math.nan, math.nan, history=history)
    state.network = net
    stopped = []
    state._trainer = type("T", (), {"stop_requested": False})()
    stop.on_train_begin(state)
    for epoch, value in enumerate(values, start=1):
        history[monitor].append(value)
        net.params[0][...] = epoch  # the weights after this epoch
        state.epoch = epoch
        stop.on_epoch_end(state)
        if state._trainer.stop_requested:
            stopped.append(epoch)
            break
    return stop, (stopped[0] if stopped else None), int(net.params[0][0])


@pytest.mark.parametrize("values, kwargs, stopped, best, final", [
    # patience 2: epoch 2 is best, 3 and 4 do not improve -> stop after 4 with epoch 2's weights
    ([1.0, 0.9, 0.95, 0.91, 0.5], {"patience": 2}, 4, 2, 2),
    ([1.0, 0.9, 0.95, 0.91, 0.5], {"patience": 2, "restore_best_weights": False}, 4, 2, 4),
    # patience 0: the first epoch without improvement stops
    ([1.0, 1.0, 0.5], {"patience": 0}, 2, 1, 1),
    # min_delta: 0.95 is not better than 1.0 by more than 0.1
    ([1.0, 0.95, 0.93], {"patience": 1, "min_delta": 0.1}, 2, 1, 1),
    ([1.0, 0.85, 0.80], {"patience": 1, "min_delta": -0.1}, 3, 2, 2),  # |min_delta|
    # never runs out of patience: the last weights stay (Keras restores only on a stop)
    ([1.0, 0.9, 0.95, 0.8], {"patience": 2}, None, 4, 4),
])
def test_early_stopping_follows_keras(values, kwargs, stopped, best, final):
    stop, at, weights_of = run_early_stopping(values, **kwargs)
    assert at == stopped and stop.best_epoch == best and weights_of == final
    assert stop.stopped_epoch == (stopped or 0)


def test_early_stopping_maximises_accuracies():
    stop, at, weights_of = run_early_stopping([50.0, 60.0, 55.0, 59.0], "val_accuracy",
                                              patience=2)
    assert (at, stop.best, weights_of, stop.mode) == (4, 60.0, 2, "max")
    stop, at, _ = run_early_stopping([50.0, 60.0, 55.0], "val_accuracy", patience=1,
                                     mode="min")
    assert at == 2


def test_early_stopping_in_training_restores_the_best_epoch():
    net, (x, ids) = network(), data()
    vx, vids = data(1)  # random labels: the validation loss soon stops falling
    after = {}

    class Keep(Callback):
        def on_epoch_end(self, state):
            after[state.epoch] = weights(net)

    stop = EarlyStopping(patience=2)
    history = net.train(BATCH, x, ids, 200, 0.5, seed=0, validation_data=(vx, vids),
                        callbacks=[Keep(), stop])
    assert 0 < stop.stopped_epoch < 200 and len(history["loss"]) == stop.stopped_epoch
    assert stop.stopped_epoch == stop.best_epoch + 2
    assert stop.best == min(history["val_loss"])
    assert_weights(net, after[stop.best_epoch])


def test_early_stopping_names_the_keys_it_could_monitor():
    net, (x, ids) = network(), data()
    start = weights(net)
    with pytest.raises(InputError, match=r"monitors 'val_loss', which this training does not "
                                         r"record; it records 'loss', 'accuracy', "
                                         r"'learning_rate'; pass validation_data"):
        net.train(BATCH, x, ids, 3, 0.1, callbacks=[EarlyStopping()])
    assert_weights(net, start)
    with pytest.raises(InputError, match="patience must be"):
        EarlyStopping(patience=-1)
    with pytest.raises(InputError, match="mode must be 'auto', 'min' or 'max'"):
        EarlyStopping(mode="down")


# -- ModelCheckpoint ---------------------------------------------------------------------
def test_model_checkpoint_saves_every_epoch_and_a_checkpoint_resumes_exactly(tmp_path):
    x, ids = data()
    path = tmp_path / "ckpt.pkl"
    net = network()
    with pytest.raises(KeyboardInterrupt):
        net.train(BATCH, x, ids, 5, 0.1, seed=3, optimizer="adam", schedule="cosine",
                  callbacks=[ModelCheckpoint(path)],
                  callback=lambda s: (_ for _ in ()).throw(KeyboardInterrupt())
                  if (s.epoch, s.batch, s.epoch_done) == (3, 2, False) else None)
    resumed = nnframe.load(path)
    assert resumed.epochs == 2
    resumed.train(BATCH, x, ids, 3, 0.1)
    whole = network()
    whole.train(BATCH, x, ids, 5, 0.1, seed=3, optimizer="adam", schedule="cosine")
    assert_weights(resumed, weights(whole))
    assert resumed.history == whole.history


def test_model_checkpoint_best_only_saves_improvements(tmp_path):
    x, ids = data()
    vx, vids = data(1)
    path = tmp_path / "best.pkl"
    check = ModelCheckpoint(path, save_best_only=True)
    history = NeuralNetwork.train(network(), BATCH, x, ids, 12, 0.5, seed=0,
                                  validation_data=(vx, vids), callbacks=[check])
    losses = history["val_loss"]
    improving = [e for e in range(1, 13) if losses[e - 1] < min(losses[:e - 1], default=1e9)]
    assert check.saved_epochs == improving and len(improving) < 12
    saved = nnframe.load(path)
    assert saved.epochs == improving[-1] and check.best == min(losses)


def test_model_checkpoint_refuses_a_missing_directory_before_training(tmp_path):
    net, (x, ids) = network(), data()
    with pytest.raises(InputError, match="does not end in .pkl"):
        ModelCheckpoint(tmp_path / "model.txt")
    with pytest.raises(InputError, match="directory .* does not exist; create it first"):
        net.train(BATCH, x, ids, 2, 0.1,
                  callbacks=[ModelCheckpoint(tmp_path / "no" / "m.pkl")])
    assert net.epochs == 0


def test_model_checkpoint_path_template_keeps_a_file_per_epoch(tmp_path):
    x, ids = data()
    vx, vids = data(1)
    net = network()
    net.train(BATCH, x, ids, 1, 0.5, seed=0)
    check = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.pkl")
    history = net.train(BATCH, x, ids, 2, 0.5, validation_data=(vx, vids),
                        callbacks=[check])
    expected = [f"m-{e + 2:02d}-{loss:.3f}.pkl" for e, loss in enumerate(history["val_loss"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    assert nnframe.load(tmp_path / expected[0]).epochs == 2


@pytest.mark.parametrize("path, message", [
    ("m-{epoch.pkl", "is not a valid template"),
    ("m-{}.pkl", "has a field without a name"),
])
def test_model_checkpoint_refuses_a_malformed_template_at_once(tmp_path, path, message):
    with pytest.raises(InputError, match=message):
        ModelCheckpoint(tmp_path / path)


def test_model_checkpoint_refuses_an_unrecorded_field_before_training(tmp_path):
    net, (x, ids) = network(), data()
    with pytest.raises(InputError, match=r"names \{val_loss\}, which this training does not "
                       r"record; use \{epoch\} or one of \{loss\}"):
        net.train(BATCH, x, ids, 2, 0.1, callbacks=[ModelCheckpoint(tmp_path / "{val_loss}.pkl")])
    assert net.epochs == 0 and list(tmp_path.iterdir()) == []


# -- ProgressBar -------------------------------------------------------------------------
def test_progress_bar_writes_one_finished_line_per_epoch_off_a_terminal():
    net, (x, ids) = network(), data()
    out = io.StringIO()
    net.train(BATCH, x, ids, 2, 0.1, seed=0, validation_data=(x, ids),
              callbacks=[ProgressBar(out, initial_epoch=3, total_epochs=9,
                                     validation_name="test")])
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 4/9", "epoch 5/9"]
    assert all(" 4/4 [" in line and "batch/s, loss=" in line and " lr=0.1 " in line
               and " test_loss=" in line and " test_acc=" in line for line in lines)
