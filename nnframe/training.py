"""The training loop: epochs, batches, shuffling, history, callbacks, divergence and restore.

`NeuralNetwork.train` validates its arguments and hands them to a `Trainer`. One batch is
three steps with a seam between each (`Trainer.step`): the network computes the gradients
(backprop, `NeuralNetwork._gradients`), `Trainer.reduce_gradients` may combine them (the place where
data-parallel averaging goes; on one process it passes them on), and the network's
`OptimizerRun` applies them at the epoch's learning rate (`Trainer.epoch_learning_rate`).

An epoch happens whole or not at all: whatever stops it (an error, Ctrl-C, SystemExit, a
callback raising, even at the epoch's end) puts back the weights, the optimizer's state and
the shuffling generator of its start, and takes the epoch out of both histories.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _diagnosis, ops
from ._text import brief
from .errors import NNFrameError, PluginRuntimeError
from .optimizers import Gradients, OptimizerRun
from .schedules import ScheduleRun


@dataclass
class TrainingState:
    """What callbacks receive: a `train(..., callback=f)` function after every batch, and
    the methods of [Callback][nnframe.callbacks.Callback] objects (`callbacks=[...]`).

    The function is called once more after the last batch of an epoch (and its validation
    pass), with `epoch_done=True` and the epoch's `history`. A callback ends training with
    [stop][nnframe.TrainingState.stop].

    Attributes:
        epoch: The current epoch of this `train` call, from 1 (0 before the first).
        num_epochs: The number of epochs `train` was asked for.
        batch: The batch just done, from 1 (equal to `num_batches` when `epoch_done`; 0
            before the epoch's first batch).
        num_batches: Batches per epoch.
        loss: Running mean of the loss over the epoch so far (NaN before any batch).
        accuracy: Running percentage of correctly classified samples over the epoch so far.
        epoch_done: True only for the call that ends an epoch.
        history: The history of this `train` call so far (the dict `train` returns), its
            completed epochs.
        learning_rate: The learning rate of this epoch.
        rank: This process's rank in distributed training (0 otherwise): a callback that
            prints or writes can act on rank 0 only.
        network: The [NeuralNetwork][nnframe.NeuralNetwork] being trained.
    """

    epoch: int
    num_epochs: int
    batch: int
    num_batches: int
    loss: float  # running mean over the epoch so far
    accuracy: float  # running percentage over the epoch so far
    epoch_done: bool = False
    history: dict = field(default_factory=dict)
    learning_rate: float = 0.0
    rank: int = 0
    network: Any = field(default=None, repr=False, compare=False)
    _trainer: Trainer | None = field(default=None, init=False, repr=False, compare=False)

    def stop(self) -> None:
        """End training once the current epoch is complete (it is kept, not rolled back);
        `train` then returns normally."""
        if self._trainer is not None:
            self._trainer.stop_requested = True


class Trainer:
    """One `train` call: runs the epochs over validated, converted arrays.

    Args:
        network: The [NeuralNetwork][nnframe.NeuralNetwork] to train.
        run: The optimizer attached to the network's parameters.
        batch_size: Rows per step (at most the number of rows).
        num_epochs: Epochs to run.
        learning_rate: The base learning rate.
        rng: The shuffling generator (the network's; it advances one permutation per epoch).
        schedule: The network's learning-rate schedule, or None for the base rate throughout.
        validation: ``(inputs, targets, class ids)`` evaluated after every epoch, or None.
        callback: Called with a [TrainingState][nnframe.TrainingState] after every batch
            and at every epoch's end, or None.
        callbacks: [Callback][nnframe.callbacks.Callback] objects, called in order after
            ``callback``.
        verbose: Show a [ProgressBar][nnframe.callbacks.ProgressBar] on standard error.
    """

    def __init__(self, network, run: OptimizerRun, *, batch_size: int, num_epochs: int,
                 learning_rate: float, rng: np.random.Generator,
                 schedule: ScheduleRun | None = None, validation=None,
                 callback: Callable[[TrainingState], None] | None = None,
                 callbacks=(), verbose: bool = False) -> None:
        from .callbacks import Callback, ProgressBar

        self.network = network
        self.run = run
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.learning_rate = learning_rate
        self.rng = rng
        self.schedule = schedule
        self.validation = validation
        self.callback = callback
        self.verbose = verbose
        self.callbacks = list(callbacks)
        if callback is not None:
            self.callbacks.insert(0, _FunctionCallback(callback))
        if verbose:
            self.callbacks.append(ProgressBar())
        # Only those that override on_batch_end cost anything per batch.
        self._batch_callbacks = [c for c in self.callbacks
                                 if type(c).on_batch_end is not Callback.on_batch_end]
        self.stop_requested = False
        self.rank = 0  # of this process in distributed training

    # -- the seams -------------------------------------------------------------------------
    def epoch_learning_rate(self) -> float:
        """The learning rate of the epoch about to run (the network's epoch
        ``network.epochs``): the schedule's, or the base rate."""
        if self.schedule is None:
            return self.learning_rate
        schedule = self.schedule.schedule
        try:
            rate = self.schedule.rate(self.learning_rate, self.network.epochs)
            ok = isinstance(rate, (int, float, np.floating)) and not isinstance(rate, bool)
            ok = ok and math.isfinite(rate) and rate >= 0
        except Exception as exc:
            _diagnosis.plugin_fault(schedule, exc, "", method="rate")
        if not ok:
            raise PluginRuntimeError(
                f"the schedule {schedule._label()} ({_diagnosis.provider_of(schedule)}) "
                f"returned {brief(rate)} as the learning rate of epoch "
                f"{self.network.epochs + 1}; it must return a finite number >= 0.")
        return float(rate)

    def reduce_gradients(self, grads: Gradients) -> Gradients:
        """Between "gradients computed" and "update applied": the gradients to apply."""
        return grads

    def share(self, start: int, stop: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of the shuffled epoch that form one batch: the part
        this process computes (all of them; a data-parallel trainer takes its rank's)."""
        return start, stop

    def step(self, xb: np.ndarray, yb: np.ndarray, ids: np.ndarray, learning_rate: float,
             rows: tuple[int, int]) -> tuple[float, int, bool]:
        """One batch: forward, loss, gradients, update, for this process's rows ``xb``
        (targets ``yb``, class ids ``ids``), which are ``rows`` = ``(offset, total)``: they
        start at ``offset`` in a batch of ``total`` rows. Returns the batch's mean loss,
        its number of correctly classified rows and whether the pass was finite; the
        update is skipped when it was not (the caller reports divergence)."""
        network = self.network
        out = network._forward(xb, self.rng if any(network.dropout) else None)
        loss = network._loss.loss(out, yb)
        correct = int(np.count_nonzero(ops.argmax_rows(out) == ids))
        # The first layer's sums too, as in inference: a saturating activation (tanh)
        # would hide inputs that overflow them from the loss.
        if not (math.isfinite(loss) and ops.all_finite(network.layers[1].pre_activations)):
            return loss, correct, False
        grads = self.reduce_gradients(network._gradients(yb))
        self.apply(grads, learning_rate)
        return loss, correct, True

    def apply(self, grads: Gradients, learning_rate: float) -> None:
        """The optimizer's update of every parameter with ``grads``."""
        try:
            self.run.apply(self.network.parameters(), grads, learning_rate)
        except Exception as exc:
            raise _OptimizerFault(exc) from exc

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, ids: np.ndarray) -> dict[str, list[float]]:
        """Run every epoch over ``x`` (targets ``y``, class ids ``ids``); the history of
        this call (also appended to the network's)."""
        network = self.network
        self._num_batches = -(-len(x) // self.batch_size)
        history: dict[str, list[float]] = {"loss": [], "accuracy": [], "learning_rate": []}
        if self.validation is not None:
            history.update(val_loss=[], val_accuracy=[])
        self._history = history
        self._notify("on_train_begin", self._state(0, 0, math.nan, math.nan))
        # Overflow is detected (the loss turns non-finite) and reported as one clear error
        # naming the epoch and batch, instead of a stream of NumPy RuntimeWarnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            epoch = 0
            while epoch < self.num_epochs and not self.stop_requested:
                epoch += 1
                restore = self._checkpoint()
                recorded = {key: len(values) for key, values in network.history.items()}
                try:
                    self._epoch(epoch, x, y, ids, history, restore)
                    self._end_epoch(epoch, history)
                except BaseException:
                    restore()
                    _forget_epoch(history, epoch - 1)
                    _forget_epoch(network.history, recorded)
                    raise
        done = len(history["loss"])
        self._notify("on_train_end", self._state(
            done, self._num_batches, history["loss"][-1] if done else math.nan,
            history["accuracy"][-1] if done else math.nan, epoch_done=done > 0))
        return history

    def _state(self, epoch: int, batch: int, loss: float, accuracy: float, *,
               epoch_done: bool = False, learning_rate: float = 0.0) -> TrainingState:
        if epoch_done and self._history["learning_rate"]:
            learning_rate = self._history["learning_rate"][-1]
        state = TrainingState(epoch, self.num_epochs, batch, self._num_batches, loss,
                              accuracy, epoch_done=epoch_done, history=self._history,
                              learning_rate=learning_rate)
        state.network = self.network
        state.rank = self.rank
        state._trainer = self
        return state

    def _notify(self, method: str, state: TrainingState, callbacks=None) -> None:
        """Call ``method`` of every callback with ``state``; what they raise propagates."""
        for callback in self.callbacks if callbacks is None else callbacks:
            getattr(callback, method)(state)

    def _checkpoint(self) -> Callable[[], None]:
        """Copy what an epoch changes; the function that puts it back."""
        params = [p.copy() for p in self.network.parameters()]
        optimizer = self.run.snapshot()
        shuffle = self.rng.bit_generator.state
        epochs = self.network.epochs

        def restore() -> None:
            for param, saved in zip(self.network.parameters(), params, strict=True):
                param[...] = saved
            self.run.restore(optimizer)
            self.rng.bit_generator.state = shuffle
            self.network.epochs = epochs

        return restore

    def _epoch(self, epoch, x, y, ids, history, restore) -> None:
        network = self.network
        n = len(x)
        num_batches = self._num_batches
        learning_rate = self.epoch_learning_rate()
        self._notify("on_epoch_begin", self._state(epoch, 0, math.nan, math.nan,
                                                   learning_rate=learning_rate))
        batch_callbacks = self._batch_callbacks
        in_callback = False
        total_loss = 0.0
        correct = 0
        batch, xb, yb = 0, x[:0], y[:0]
        backend = network._backend
        order = self.rng.permutation(n)  # on the host, so every device shuffles alike
        index = backend.asarray(order)  # on a device, moved there once (NumPy: itself)
        on_device = backend.owns(x)  # else lazily converted host data, one batch at a time
        # Targets and class ids are small: shuffle them once per epoch and slice per batch.
        # The inputs are large, so each batch gathers only its own rows.
        y_epoch, ids_epoch = y[index], ids[index]
        where = f"training stopped at epoch {epoch}, batch {{}} of {num_batches}"
        note = f" The weights are restored to the start of epoch {epoch}."
        try:
            for batch in range(num_batches):
                start, stop = batch * self.batch_size, min((batch + 1) * self.batch_size, n)
                lo, hi = self.share(start, stop)
                xb = x[index[lo:hi]] if on_device else x[order[lo:hi]]
                yb = y_epoch[lo:hi]
                if xb.dtype != network.dtype:  # uint8 images, a memmap: one batch at a time
                    xb = xb.astype(network.dtype)
                if not on_device:
                    xb = backend.asarray(xb)
                loss, right, finite = self.step(xb, yb, ids_epoch[lo:hi], learning_rate,
                                                (lo - start, stop - start))
                if not finite:
                    _diagnosis.diverged(network, epoch, batch + 1, num_batches, learning_rate,
                                        restore, f"the loss became {loss}", x, order[lo:hi])
                total_loss += loss * (stop - start)
                correct += right
                if batch_callbacks:
                    seen = min((batch + 1) * self.batch_size, n)
                    in_callback = True  # what a callback raises is never a plugin's fault
                    self._notify("on_batch_end",
                                 self._state(epoch, batch + 1, total_loss / seen,
                                             100.0 * correct / seen,
                                             learning_rate=learning_rate), batch_callbacks)
                    in_callback = False
        except NNFrameError:
            raise
        except _OptimizerFault as fault:
            restore()
            _diagnosis.plugin_fault(self.run.optimizer, fault.exc,
                                       where.format(batch + 1), note)
        except Exception as exc:
            if in_callback:
                raise
            _diagnosis.blame_plugin(network, exc, xb, yb, where.format(batch + 1), note,
                                    before_raise=restore)
        if not ops.all_finite(*network.parameters()):
            _diagnosis.diverged(network, epoch, num_batches, num_batches, learning_rate,
                                restore, "the weights became non-finite", x, order)
        history["loss"].append(total_loss / n)
        history["accuracy"].append(100.0 * correct / n)
        history["learning_rate"].append(learning_rate)
        network.epochs += 1

    def _end_epoch(self, epoch: int, history: dict[str, list[float]]) -> None:
        network = self.network
        if self.validation is not None:
            val_loss, val_accuracy = self.validate()
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        for key, values in history.items():  # the network's record stays in step
            network.history.setdefault(key, []).append(values[-1])
        self._notify("on_epoch_end", self._state(epoch, self._num_batches,
                                                 history["loss"][-1], history["accuracy"][-1],
                                                 epoch_done=True))


    def validate(self) -> tuple[float, float]:
        """The loss and accuracy (percent) on the validation data."""
        network = self.network
        vdata, vx, vy, vids = self.validation
        vout = network._validation_outputs(vdata, vx)
        return float(network._loss.loss(vout, vy)), percent(ops.argmax_rows(vout), vids)


class _FunctionCallback:
    """The plain ``callback=`` function as a callback: called after every batch and at
    every epoch's end with the same [TrainingState][nnframe.TrainingState]."""

    def __init__(self, function: Callable[[TrainingState], None]) -> None:
        self.function = function

    def on_train_begin(self, state: TrainingState) -> None:
        pass

    on_epoch_begin = on_train_end = on_train_begin

    def on_batch_end(self, state: TrainingState) -> None:
        self.function(state)

    on_epoch_end = on_batch_end


class _OptimizerFault(Exception):
    """An exception raised by the optimizer's update, carried out of the batch loop."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _forget_epoch(history: dict[str, list], kept: int | dict[str, int]) -> None:
    """Cut ``history`` back to ``kept`` entries per key (a count, or a count per key; keys
    missing from that dict did not exist and are removed)."""
    for key in list(history):
        count = kept if isinstance(kept, int) else kept.get(key)
        if count is None:
            del history[key]
        else:
            del history[key][count:]


def percent(predicted: np.ndarray, ids: np.ndarray) -> float:
    """The percentage of ``predicted`` class ids equal to ``ids``."""
    return float(100.0 * np.count_nonzero(predicted == ids) / len(ids))
