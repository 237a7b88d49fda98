"""Callbacks: code of yours that runs at fixed points of `train`, as in Keras.

A callback subclasses [Callback][nnframe.callbacks.Callback] and overrides any of its five
methods; each receives the [TrainingState][nnframe.TrainingState] of the moment, whose
`network` is the network being trained and whose `history` is the history of this `train`
call so far. `state.stop()` ends training once the current epoch is complete.

```
on_train_begin                     once, before the first epoch
    on_epoch_begin                 before each epoch's first batch
        on_batch_end               after every batch
    on_epoch_end                   after the epoch's validation; `state.history` holds it
on_train_end                       once, when training ends normally (or by `stop()`)
```

Callbacks run in the order given, after the plain `callback=` function if there is one.
What a callback raises propagates unchanged (never blamed on a plugin), and, as any
interruption, puts back the weights, optimizer state and shuffling of the start of the
epoch in progress (`on_epoch_end` included: that epoch is then left out of the history).

Built in: [EarlyStopping][nnframe.callbacks.EarlyStopping],
[ModelCheckpoint][nnframe.callbacks.ModelCheckpoint] and
[ProgressBar][nnframe.callbacks.ProgressBar] (what `verbose=True` shows).
"""

from __future__ import annotations

import math
import string
import sys
import time
from pathlib import Path

from . import _validation
from ._text import brief
from .errors import InputError
from .training import TrainingState

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ProgressBar"]


class Callback:
    """The base class of callbacks: every method does nothing until overridden.

    In distributed training (`train(..., distributed=True)`) callbacks run on every rank
    and see the same, whole-data history; those with `rank_zero_only` set (the progress
    bar, checkpoints: whatever writes or prints) run on rank 0 alone.

    Attributes:
        rank_zero_only: Run only on rank 0 in distributed training (False here).

    Examples:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, state):
        ...         print(f"epoch {state.epoch}: loss {state.loss:.3f}")
    """

    rank_zero_only = False

    def on_train_begin(self, state: TrainingState) -> None:
        """Called once before the first epoch (`state.epoch` is 0, `state.loss` NaN).

        Args:
            state: The training state; `state.history` has this call's keys, empty.
        """

    def on_epoch_begin(self, state: TrainingState) -> None:
        """Called before the first batch of every epoch (`state.batch` is 0).

        Args:
            state: The training state of the epoch about to run.
        """

    def on_batch_end(self, state: TrainingState) -> None:
        """Called after every batch, with the epoch's running loss and accuracy.

        Args:
            state: The training state after the batch.
        """

    def on_epoch_end(self, state: TrainingState) -> None:
        """Called after every epoch and its validation pass; `state.history` holds it.

        Args:
            state: The training state, `epoch_done=True`.
        """

    def on_train_end(self, state: TrainingState) -> None:
        """Called once when training ends normally: all epochs done, or `stop()` called.
        Not called when an exception ends training.

        Args:
            state: The training state after the last completed epoch.
        """


def _mode(monitor: str, mode: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise InputError(f"{who} mode must be 'auto', 'min' or 'max', got {brief(mode)}.")
    if mode == "auto":  # Keras: accuracies rise, everything else (losses) falls
        return "max" if "acc" in monitor else "min"
    return mode


def _check_monitor(monitor: str, state: TrainingState, who: str) -> None:
    if monitor not in state.history:
        available = ", ".join(repr(k) for k in state.history)
        fix = ("; pass validation_data to train to get 'val_loss' and 'val_accuracy'"
               if monitor.startswith("val_") else "")
        raise InputError(f"{who} monitors {monitor!r}, which this training does not record; "
                         f"it records {available}{fix}.")


class _Monitor:
    """The best value of one history key so far, with Keras' rule for an improvement."""

    def __init__(self, monitor: str, mode: str, min_delta: float, who: str) -> None:
        if not isinstance(monitor, str):
            raise InputError(f"{who} monitor must be a history key such as 'val_loss', got "
                             f"{brief(monitor)}.")
        if (not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool)
                or not math.isfinite(min_delta)):
            raise InputError(f"{who} min_delta must be a finite number such as 0.001, got "
                             f"{brief(min_delta)}.")
        self.monitor = monitor
        self.mode = _mode(monitor, mode, who)
        self.min_delta = abs(float(min_delta))
        self.who = who
        self.best = math.inf if self.mode == "min" else -math.inf

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, current: float) -> bool:
        """True when ``current`` beats the best by more than ``min_delta`` (then the new best)."""
        better = (current < self.best - self.min_delta if self.mode == "min"
                  else current > self.best + self.min_delta)
        if better:
            self.best = current
        return better


class EarlyStopping(Callback):
    """Stop training when a monitored value stops improving, as Keras' `EarlyStopping`.

    After every epoch the monitored value is compared with the best so far: it improves
    when it is lower (`mode="min"`) or higher (`"max"`) by more than `min_delta`. After
    `patience` epochs in a row without an improvement, training stops at the end of that
    epoch, and with `restore_best_weights` the network's weights become those of the best
    epoch (only then: training that runs all its epochs keeps the last weights, as in
    Keras). Each `train` call starts afresh.

    Args:
        monitor: The history key to watch: `"val_loss"`, `"val_accuracy"`, `"loss"` or
            `"accuracy"`.
        patience: Epochs without improvement before stopping (an int >= 0).
        min_delta: The smallest change that counts as an improvement (its absolute value).
        restore_best_weights: Put back the best epoch's weights when stopping.
        mode: `"min"`, `"max"`, or `"auto"`: `"max"` for a key containing `"acc"`, else
            `"min"`.

    Attributes:
        best: The best value seen.
        best_epoch: The epoch of this `train` call (from 1) that had it; 0 before any.
        stopped_epoch: The epoch at whose end training stopped; 0 if it did not.
        wait: Epochs since the last improvement.

    Raises:
        InputError: An argument has the wrong type or value; at the start of training,
            `monitor` is not recorded (the message lists the keys that are).

    Examples:
        >>> stop = EarlyStopping(monitor="val_loss", patience=3)
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0,
                 restore_best_weights: bool = True, mode: str = "auto") -> None:
        self._monitor = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.monitor, self.mode = monitor, self._monitor.mode
        self.min_delta = self._monitor.min_delta
        self.patience = _validation.positive_int(patience, "EarlyStopping patience",
                                                 minimum=0)
        if not isinstance(restore_best_weights, bool):
            raise InputError(f"EarlyStopping restore_best_weights must be True or False, got "
                             f"{brief(restore_best_weights)}.")
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self._monitor.reset()
        self.best = self._monitor.best
        self.best_epoch = self.stopped_epoch = self.wait = 0
        self._best_weights = None

    def on_train_begin(self, state: TrainingState) -> None:
        """Start afresh; refuse a `monitor` this training does not record.

        Args:
            state: The training state.
        """
        _check_monitor(self.monitor, state, "EarlyStopping")
        self._reset()
        carried, self._carried = getattr(self, "_carried", None), None
        if carried is not None:  # what an interrupted run had seen (nnframe train --resume)
            values, weights = carried
            for epoch, value in enumerate(values, start=1 - len(values)):
                self.wait += 1
                if self._monitor.improved(value):
                    self.best, self.best_epoch, self.wait = value, epoch, 0
            self._best_weights = weights if self.restore_best_weights else None

    def _carry_over(self, values: list[float], best_weights) -> None:
        """Continue, in the next `train` call, after the monitored ``values`` of earlier
        epochs whose best had ``best_weights`` (`nnframe train --resume`)."""
        self._carried = (list(values), best_weights)

    def on_epoch_end(self, state: TrainingState) -> None:
        """Count the epoch, and stop (restoring the best weights) when patience runs out.

        Args:
            state: The training state.
        """
        current = state.history[self.monitor][-1]
        self.wait += 1
        if self._monitor.improved(current):
            self.best, self.best_epoch, self.wait = current, state.epoch, 0
            if self.restore_best_weights:
                self._best_weights = [p.copy() for p in state.network.parameters()]
            return
        if self.wait >= self.patience:
            self.stopped_epoch = state.epoch
            state.stop()
            if self._best_weights is not None:
                for param, best in zip(state.network.parameters(), self._best_weights,
                                       strict=True):
                    param[...] = best


class ModelCheckpoint(Callback):
    """Save the network after every epoch, or only after those that improve a value (in
    distributed training, on rank 0 alone).

    The file is written atomically with [save][nnframe.NeuralNetwork.save] (a crash never
    leaves a damaged file; the previous one stays until the new one is complete), so it
    holds everything training needs to continue exactly: weights, optimizer state,
    schedule, shuffling and the epoch count.

    Args:
        path: The `.pkl` file to write (overwritten each time); its directory must exist
            when training starts. It may name fields to fill in, as `str.format` does:
            `{epoch}` (the network's epochs trained, from 1) and any history key of the
            epoch (`{val_loss}`...), so that `"run/model-{epoch:03d}.pkl"` keeps every
            epoch's file.
        monitor: The history key that decides what "best" means with `save_best_only`.
        save_best_only: Save only when `monitor` improves on the best so far (lower for
            losses, higher for accuracies, as [EarlyStopping][nnframe.callbacks.EarlyStopping]).
        mode: `"min"`, `"max"` or `"auto"`, as for EarlyStopping.

    Attributes:
        best: The best value of `monitor` seen (with `save_best_only`).
        saved_epochs: The epochs of the latest `train` call (from 1) after which the file
            was written.

    Raises:
        InputError: `path` does not end in `.pkl` or another argument is wrong; at the
            start of training, the directory is missing or (with `save_best_only`) the
            monitored key is not recorded.
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto") -> None:
        self.path = _validation.model_path(path, name="ModelCheckpoint path")
        _template_fields(str(self.path))  # a malformed template fails here, not after an epoch
        self._monitor = _Monitor(monitor, mode, 0, "ModelCheckpoint")
        self.monitor, self.mode = monitor, self._monitor.mode
        if not isinstance(save_best_only, bool):
            raise InputError(f"ModelCheckpoint save_best_only must be True or False, got "
                             f"{brief(save_best_only)}.")
        self.save_best_only = save_best_only
        self.best = self._monitor.best
        self.saved_epochs: list[int] = []

    rank_zero_only = True

    def on_train_begin(self, state: TrainingState) -> None:
        """Refuse a missing directory or monitored key before any epoch runs.

        Args:
            state: The training state.
        """
        fields = _template_fields(str(self.path))
        unknown = sorted(fields - {"epoch", *state.history})
        if unknown:
            raise InputError(f"ModelCheckpoint path {str(self.path)!r} names "
                             f"{', '.join('{' + f + '}' for f in unknown)}, which this "
                             f"training does not record; use {{epoch}} or one of "
                             f"{', '.join('{' + k + '}' for k in state.history)}.")
        if not self.path.parent.is_dir():
            raise InputError(f"ModelCheckpoint cannot save to {str(self.path)!r}: the "
                             f"directory {str(self.path.parent)!r} does not exist; create "
                             "it first.")
        if self.save_best_only:
            _check_monitor(self.monitor, state, "ModelCheckpoint")
        self._monitor.reset()
        for value in getattr(self, "_carried", None) or []:
            self._monitor.improved(value)
        self._carried = None
        self.best = self._monitor.best
        self.saved_epochs = []

    def _carry_over(self, values: list[float]) -> None:
        """Count the monitored ``values`` of earlier epochs in the next `train` call's best
        (`nnframe train --resume`)."""
        self._carried = list(values)

    def on_epoch_end(self, state: TrainingState) -> None:
        """Write the file (with `save_best_only`, only when the value improved).

        Args:
            state: The training state.
        """
        if self.save_best_only:
            if not self._monitor.improved(state.history[self.monitor][-1]):
                return
            self.best = self._monitor.best
        path = self.path
        if _template_fields(str(path)):
            values = {key: values[-1] for key, values in state.history.items() if values}
            path = Path(str(path).format(epoch=state.network.epochs, **values))
        state.network.save(path)
        self.saved_epochs.append(state.epoch)


def _template_fields(text: str) -> set[str]:
    """The fields a path names for `str.format` (``{epoch:03d}`` names ``epoch``)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InputError(f"ModelCheckpoint path {text!r} is not a valid template ({exc}); "
                         "write fields as {epoch} and a literal brace as {{ or }}.") from None
    fields = {name for _, name, _, _ in parsed if name is not None}
    if "" in fields or any(not name.isidentifier() for name in fields):
        raise InputError(f"ModelCheckpoint path {text!r} has a field without a name; use "
                         "{epoch} or a history key such as {val_loss}.")
    return fields


class ProgressBar(Callback):
    """A progress bar per epoch on standard error (tqdm): batches done, running loss and
    accuracy (`acc`), the learning rate (`lr`), batches per second and the time left in the
    epoch; the epoch's line ends with its validation results (`val_loss`, `val_acc`). On a
    terminal it is redrawn in place; elsewhere (a log, CI) each epoch writes its one
    finished line, for example::

        epoch 2/5: 100%|##########| 63/63 [00:01<00:00, 52.1batch/s, loss=0.3122 acc=91.05%
        lr=0.1 val_loss=0.3397 val_acc=90.20%]

    (one line; wrapped here).

    `train(..., verbose=True)` adds one; the `nnframe train` command shows the same.

    Args:
        file: Where to write; `None` means `sys.stderr` at the start of training.
        initial_epoch: Added to the epoch numbers shown (the epochs trained before, so that
            a continued run counts on: "epoch 3/5").
        total_epochs: The last epoch shown; `None` means `initial_epoch` plus this call's
            epochs.
        validation_name: How the `val_` results are labelled (`"test"` shows `test_loss`).
    """

    rank_zero_only = True

    def __init__(self, file=None, *, initial_epoch: int = 0, total_epochs: int | None = None,
                 validation_name: str = "val") -> None:
        self.file = file
        self.initial_epoch = initial_epoch
        self.total_epochs = total_epochs
        self.validation_name = validation_name
        self._bar = None

    def on_train_begin(self, state: TrainingState) -> None:
        """Pick the stream and whether to draw live.

        Args:
            state: The training state.
        """
        self._out = self.file if self.file is not None else sys.stderr
        isatty = getattr(self._out, "isatty", None)
        self._live = bool(isatty and isatty())
        self._total = (self.total_epochs if self.total_epochs is not None
                       else self.initial_epoch + state.num_epochs)

    def on_epoch_begin(self, state: TrainingState) -> None:
        """Start the epoch's bar.

        Args:
            state: The training state.
        """
        from tqdm import tqdm

        self._start = time.perf_counter()
        self._desc = f"epoch {self.initial_epoch + state.epoch}/{self._total}"
        self._bar = tqdm(total=state.num_batches, file=self._out, unit="batch",
                         desc=self._desc,
                         leave=True, dynamic_ncols=True, disable=not self._live,
                         mininterval=0.1)

    def on_batch_end(self, state: TrainingState) -> None:
        """Advance the bar and show the running loss, accuracy and rate.

        Args:
            state: The training state.
        """
        bar = self._bar
        if bar is None:
            return
        bar.n = state.batch
        if not bar.disable:
            bar.set_postfix_str(self._postfix(state.loss, state.accuracy,
                                              state.learning_rate), refresh=False)
            bar.refresh() if state.batch == state.num_batches else bar.update(0)

    def on_epoch_end(self, state: TrainingState) -> None:
        """Finish the epoch's line with its results (one line off a terminal).

        Args:
            state: The training state.
        """
        bar, self._bar = self._bar, None
        if bar is None:
            return
        history = state.history
        postfix = self._postfix(history["loss"][-1], history["accuracy"][-1],
                                history["learning_rate"][-1])
        for key in ("val_loss", "val_accuracy"):
            if history.get(key):
                name = key.replace("val", self.validation_name, 1).replace("accuracy", "acc")
                postfix += f" {name}={self._value(key, history[key][-1])}"
        bar.n = state.num_batches
        if bar.disable:
            elapsed = time.perf_counter() - self._start
            line = bar.format_meter(state.num_batches, state.num_batches, elapsed,
                                    prefix=self._desc, unit="batch", postfix=postfix,
                                    ncols=None, ascii=True)
            print(line, file=self._out, flush=True)
        else:
            bar.set_postfix_str(postfix, refresh=True)
        bar.close()

    def on_train_end(self, state: TrainingState) -> None:
        """Close a bar left open.

        Args:
            state: The training state.
        """
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @staticmethod
    def _value(key: str, value: float) -> str:
        if "accuracy" in key:
            return f"{value:.2f}%"
        return f"{value:.4g}" if key == "learning_rate" else f"{value:.4f}"

    def _postfix(self, loss: float, accuracy: float, rate: float) -> str:
        return (f"loss={self._value('loss', loss)} "
                f"acc={self._value('accuracy', accuracy)} "
                f"lr={self._value('learning_rate', rate)}")
