"""NeuralNetwork: the classic "neural network from scratch" API, with exact backprop."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from . import _parallel, _validation, ops
from ._text import brief
from .base import Activation, Cost
from .errors import InputError, NNFrameError, PluginRuntimeError, TrainingDivergedError
from .layer import Layer, resolve_activation
from .registry import get_cost

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INFERENCE_CHUNK = 16384  # rows per forward pass in predict: bounds memory


def resolve_cost(spec) -> Cost:
    if isinstance(spec, str):
        return get_cost(spec)
    if isinstance(spec, Cost):
        from .registry import check_contract

        check_contract(spec, "cost")
        return spec
    raise InputError(f"cost_function must be a name such as 'cross_entropy' or an nnframe.Cost "
                     f"object, got {type(spec).__name__} {brief(spec)}.")


@dataclass
class TrainingState:
    """What a `train(..., callback=f)` callback receives after every batch.

    After the last batch of an epoch (and its validation pass) the callback is called once
    more, with `epoch_done=True` and the epoch's `history`.

    Attributes:
        epoch: The current epoch, from 1.
        num_epochs: The number of epochs `train` was asked for.
        batch: The batch just done, from 1 (equal to `num_batches` when `epoch_done`).
        num_batches: Batches per epoch.
        loss: Running mean of the loss over the epoch so far.
        accuracy: Running percentage of correctly classified samples over the epoch so far.
        epoch_done: True only for the call that ends an epoch.
        history: On that call, the history so far (the dict `train` returns); else empty.
    """

    epoch: int
    num_epochs: int
    batch: int
    num_batches: int
    loss: float  # running mean over the epoch so far
    accuracy: float  # running percentage over the epoch so far
    epoch_done: bool = False
    history: dict = field(default_factory=dict)


class NeuralNetwork:
    """A fully connected network built by name.

    Every name is resolved, and every weight initialised, when the network is built, so a
    misspelled name fails at once. Weights start He-initialised before activations whose
    `init` is `"he"` and Glorot-initialised otherwise; biases start at zero.

    Args:
        num_layers: Number of layers, the input layer included (at least 2).
        num_nodes: One size per layer, input layer first; each at least 1.
        activation_function: One entry per layer: `None` for the input layer, then for
            every other layer a name such as `"relu"` or an [Activation][nnframe.Activation]
            object. A softmax over a single unit is refused: use `"sigmoid"` there.
        cost_function: A cost name such as `"cross_entropy"` or a [Cost][nnframe.Cost]
            object.
        dtype: `np.float32` (the default) or `np.float64`, as a type or by name.
        seed: Seed of the weight initialisation (a non-negative int or a
            `numpy.random.Generator`); `None` draws fresh entropy.

    Attributes:
        layers: One [Layer][nnframe.Layer] per layer, input first; each holds the weights
            and bias to the next layer.
        num_layers: As given.
        num_nodes: As given, as a list of ints.
        activation_function: The activation names per layer (`None` for the input layer).
        cost_function: The cost's name.
        dtype: The dtype of every weight, bias and output.
        history: Per-epoch `loss` and `accuracy` (and `val_loss`, `val_accuracy`) of every
            `train` call so far, completed epochs only.
        learning_rate: The learning rate of the last `train` call, or `None`.
        error: What the last `calculate_error` returned, or `None`.

    Raises:
        InputError: An argument has the wrong type, size or value (the message says which).
        UnknownNameError: An activation or cost name is not registered.
        PluginContractError: An activation or cost object breaks the plugin contract.

    Examples:
        >>> net = NeuralNetwork(3, [2, 8, 2], [None, "tanh", "softmax"], "cross_entropy",
        ...                     seed=0)
        >>> net
        NeuralNetwork(2 -> 8 tanh -> 2 softmax, cost=cross_entropy, dtype=float32, parameters=42)
    """

    def __init__(self, num_layers: int, num_nodes: Sequence[int],
                 activation_function: Sequence[str | Activation | None],
                 cost_function: str | Cost, *, dtype=np.float32, seed: int | None = None):
        self.num_layers = _validation.positive_int(num_layers, "num_layers", minimum=2)
        self.num_nodes = _sequence(num_nodes, "num_nodes", self.num_layers)
        for i, size in enumerate(self.num_nodes):
            _validation.positive_int(size, f"num_nodes[{i}]")
        self.num_nodes = [int(n) for n in self.num_nodes]
        specs = _sequence(activation_function, "activation_function", self.num_layers)
        if specs[0] is not None:
            raise InputError(f"activation_function[0] is {brief(specs[0])}, but the first entry "
                             "belongs to the input layer, which has no activation; use None.")
        resolved = None
        # Only names and types: np.dtype() reads a nested list as a record layout, which for a
        # list sharing its sublists takes time exponential in its depth.
        if isinstance(dtype, (str, type, np.dtype)):
            try:
                resolved = np.dtype(dtype)
            except (TypeError, ValueError):
                resolved = None
        if resolved is None or resolved not in DTYPES:
            raise InputError(f"dtype must be np.float32 or np.float64, got {brief(dtype)}.")
        self.dtype = resolved
        activations: list[Activation | None] = [None]
        for i, spec in enumerate(specs[1:], start=1):
            if spec is None:
                raise InputError(f"activation_function[{i}] is None; every layer after the "
                                 "input needs an activation such as 'relu' or 'softmax'.")
            activations.append(resolve_activation(spec))
            if activations[i].name == "softmax" and self.num_nodes[i] == 1:
                raise InputError(
                    f"activation_function[{i}] is 'softmax' on a layer of one unit "
                    f"(num_nodes[{i}] = 1): the softmax of one value is always 1.0, so "
                    "every sample would be class 1. For one output unit use 'sigmoid' (the "
                    "probability of class 1), or give the layer 2 units for softmax.")
        self.cost = resolve_cost(cost_function)
        self.activation_function = [a.name if a else None for a in activations]
        self.cost_function = self.cost.name
        self._configure_output(activations[-1])
        rng = np.random.default_rng(_validation.seed(seed))
        _validation.parameters_fit(self.num_nodes, self.dtype)
        try:
            self.layers = [
                Layer(self.num_nodes[i], self.num_nodes[i + 1], activations[i],
                      init=getattr(activations[i + 1], "init", "glorot"), dtype=self.dtype,
                      rng=rng)
                for i in range(self.num_layers - 1)
            ]
        except MemoryError:
            raise InputError(_validation.too_large_message(self.num_nodes, self.dtype,
                                                           "there is not enough memory")
                             ) from None
        self.layers.append(Layer(self.num_nodes[-1], 0, activations[-1], dtype=self.dtype))
        self.learning_rate: float | None = None
        self.error: float | None = None
        self.history: dict[str, list[float]] = {}

    def _configure_output(self, output: Activation) -> None:
        """Choose, once, the cost this name means on the output and any fused delta."""
        self._loss = self.cost.for_output(output)
        self._fused = self._loss.fused_delta(output)

    # -- structure -------------------------------------------------------------------------
    def parameters(self) -> list[np.ndarray]:
        """Every weight and bias array, input side first.

        Returns:
            `[weights, bias, weights, bias, ...]`: the arrays themselves, not copies, so
                writing into them changes the network.
        """
        return [p for layer in self.layers[:-1]
                for p in (layer.weights_for_layer, layer.bias_for_layer)]

    def __repr__(self) -> str:
        parts = [str(self.num_nodes[0])]
        parts += [f"{n} {a}" for n, a in zip(self.num_nodes[1:], self.activation_function[1:],
                                               strict=True)]
        count = sum(p.size for p in self.parameters())
        return (f"NeuralNetwork({' -> '.join(parts)}, cost={self.cost_function}, "
                f"dtype={self.dtype.name}, parameters={count:,})")

    # -- the maths -------------------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:
        layers = self.layers
        layers[0].activations = x
        for i in range(len(layers) - 1):
            layer, nxt = layers[i], layers[i + 1]
            nxt.pre_activations = ops.affine(layer.activations, layer.weights_for_layer,
                                             layer.bias_for_layer)
            nxt.activations = nxt.activation_function.forward(nxt.pre_activations)
            if nxt.activations.shape != nxt.pre_activations.shape:
                raise _ShapeBreach(nxt.activation_function)  # NumPy would broadcast silently
        return layers[-1].activations

    def _infer(self, x: np.ndarray, *, classes: bool = False) -> np.ndarray:
        """Forward pass that leaves the layers' stored activations alone: the outputs, or
        with ``classes=True`` the class id per row. Large inputs run in row blocks on all
        cores (see `nnframe._parallel`)."""
        rows = self._infer_classes if classes else self._infer_rows
        outputs = []
        # Overflow is found by the checks of _infer_rows and explained by the caller
        # (_explain_nonfinite), instead of NumPy warning; worker blocks share this state.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, len(x), INFERENCE_CHUNK):
                outputs += _parallel.map_rows(rows, x[start:start + INFERENCE_CHUNK])
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _infer_rows(self, a: np.ndarray) -> np.ndarray:
        """The outputs for rows ``a``; NonFiniteRows if the pass is not finite: an input is
        NaN or infinite, or finite inputs overflow the weighted sums (the first layer's,
        which a saturating activation would hide, or any later one's, which reach the
        outputs)."""
        first = True
        for layer, nxt in zip(self.layers[:-1], self.layers[1:], strict=True):
            z = ops.affine(a, layer.weights_for_layer, layer.bias_for_layer)
            if first:
                # A non-finite input makes its whole row of z non-finite (in IEEE arithmetic
                # inf * w is inf or NaN, and NaN spreads), so the smaller z, still in cache,
                # is checked instead of the inputs; the caller finds out which it was.
                _validation.require_finite_rows(z)
                first = False
            a = nxt.activation_function.forward_inplace(z)  # z is our temporary
        _validation.require_finite_rows(a)  # the outputs: a few columns, cheap
        return a

    def _infer_classes(self, a: np.ndarray) -> np.ndarray:
        return ops.argmax_rows(self._infer_rows(a))

    def _validation_outputs(self, data, x: np.ndarray) -> np.ndarray:
        try:
            return self._infer(x)
        except _validation.NonFiniteRows:
            self._explain_nonfinite(data, x, "validation inputs")

    def _explain_nonfinite(self, data, x: np.ndarray, name: str) -> NoReturn:
        """Raise the error for a forward pass of ``x`` (``data`` converted) that was not
        finite: NaN or infinity in the data, values too large for the dtype, or finite
        inputs whose weighted sums overflow in the network (replayed to find the row)."""
        _validation.explain_nonfinite(data, name, self.dtype, converted=x)
        found = self._first_nonfinite(x)
        if found is None:  # pragma: no cover - the replay repeats the pass that failed
            raise NNFrameError(f"the forward pass of {name} was not finite.")
        what, row, layer = found
        if what == "activation":
            act = self.layers[layer].activation_function
            raise PluginRuntimeError(
                f"the activation {brief(act.name)} ({_provider_of(act)}) returned NaN or infinity "
                f"for finite inputs ({name} row {row}); fix or replace the plugin that "
                "provides it.")
        if not ops.all_finite(*self.parameters()):
            raise NNFrameError("the network's weights are not finite (NaN or infinity); "
                               "train it again or load a saved model.")
        raise InputError(_validation.overflow_message(name, row, layer, x[row], self.dtype))

    def _first_nonfinite(self, x: np.ndarray, rows: np.ndarray | None = None):
        """Replay the forward pass of finite rows of ``x`` (all, or ``rows``), quietly, layer
        by layer: ``(what, row, layer)`` for the first row (an index into ``x``) whose pass
        is not finite, where ``what`` is ``"sums"`` when layer ``layer``'s weighted
        sums overflow and ``"activation"`` when its activation returned NaN or infinity
        for finite sums; None when every row stays finite. Only run after a failure."""
        index = np.arange(len(x)) if rows is None else np.asarray(rows)
        with np.errstate(all="ignore"):
            for start in range(0, len(index), INFERENCE_CHUNK):
                a = x[index[start:start + INFERENCE_CHUNK]]
                for k in range(1, len(self.layers)):
                    layer, nxt = self.layers[k - 1], self.layers[k]
                    z = ops.affine(a, layer.weights_for_layer, layer.bias_for_layer)
                    bad = ~np.isfinite(z).all(axis=1)
                    what = "sums"
                    if not bad.any():
                        a = nxt.activation_function.forward(z)
                        bad = ~np.isfinite(a).all(axis=1)
                        what = "activation"
                    if bad.any():
                        return what, int(index[start + int(np.argmax(bad))]), k
        return None

    def _infer_all_classes(self, x: np.ndarray) -> np.ndarray:
        return self._infer(x, classes=True)

    def _unchecked_inputs(self, data, name: str, allow_1d: bool = False):
        return _validation.inputs(data, self.num_nodes[0], self.dtype, name=name,
                                  allow_1d=allow_1d, check_finite=False)

    def _classes(self, context: str, x: np.ndarray, data, name: str) -> np.ndarray:
        """Class ids for ``x`` (``data`` validated but for NaN and infinity), classified in
        row blocks that each check their rows first: one pass, on every core."""
        try:
            return self._guarded(context, x, None, self._infer_all_classes, x)
        except _validation.NonFiniteRows:
            self._explain_nonfinite(data, x, name)

    def _output_delta(self, targets: np.ndarray) -> np.ndarray:
        out = self.layers[-1]
        if self._fused is not None:
            return self._fused(out.activations, targets)
        grad = self._loss.gradient(out.activations, targets)
        if grad.shape != out.activations.shape:
            raise _ShapeBreach(self._loss)
        return out.activation_function.backward(out.pre_activations, out.activations, grad)

    def _backward(self, targets: np.ndarray, learning_rate: float) -> None:
        delta = self._output_delta(targets)
        if delta.shape != self.layers[-1].activations.shape:
            raise _ShapeBreach(self._loss)
        for i in range(len(self.layers) - 2, -1, -1):
            layer = self.layers[i]
            weights = layer.weights_for_layer
            if i:  # propagate before this layer's weights change
                grad_a = delta @ weights.T
            ops.weight_step(layer.activations, delta, learning_rate, weights,
                            layer.bias_for_layer)
            if i:
                delta = layer.activation_function.backward(layer.pre_activations,
                                                           layer.activations, grad_a)
                if delta.shape != grad_a.shape:
                    raise _ShapeBreach(layer.activation_function)

    # -- the classic step-by-step API ------------------------------------------------------
    def _guarded(self, context: str, x: np.ndarray, targets, fn, *args):
        """Call ``fn``; if a plugin breaks it, raise an error naming that plugin."""
        try:
            return fn(*args)
        except NNFrameError:
            raise
        except Exception as exc:
            self._blame_plugin(exc, x, targets, f"{context} failed")

    def _blame_plugin(self, exc: Exception, x, targets, context: str, note: str = "",
                      before_raise: Callable[[], None] | None = None) -> None:
        """Re-raise ``exc`` as a PluginRuntimeError naming the plugin that broke the
        contract on ``x``, or unchanged when no plugin is at fault."""
        culprit = self._find_faulty_plugin(x, targets)
        if culprit is None:
            raise exc
        if before_raise is not None:
            before_raise()
        raise PluginRuntimeError(f"{context}: {culprit}.{note} Run `nnframe plugins --check` "
                                 "to test installed plugins.") from exc

    def forward_pass(self, inputs) -> np.ndarray:
        """Run `inputs` through the network, keeping every layer's activations.

        The stored activations are what [calculate_error][nnframe.NeuralNetwork.calculate_error]
        and [back_pass][nnframe.NeuralNetwork.back_pass] then use.

        Args:
            inputs: A 2-D array-like, one row per sample, one column per input node.

        Returns:
            The output layer's activations, one row per sample.

        Raises:
            InputError: `inputs` has the wrong shape or type, holds NaN or infinity, or is
                so large that the weighted sums overflow.
            PluginRuntimeError: A plugin activation raised or broke its contract.
        """
        x, _ = _validation.inputs(inputs, self.num_nodes[0], self.dtype)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = self._guarded("forward_pass", x, None, self._forward, x)
        if not ops.all_finite(self.layers[1].pre_activations, out):  # as _infer_rows checks
            self.layers[-1].activations = None  # no back_pass from a broken pass
            self._explain_nonfinite(inputs, x, "inputs")
        return out

    def _last_targets(self, labels, what: str) -> np.ndarray:
        out = self.layers[-1].activations
        if out is None:
            raise InputError(f"{what} needs a forward pass first: call "
                             "network.forward_pass(inputs) with the inputs these labels "
                             "belong to.")
        targets, _ = _validation.labels(labels, len(out), self.num_nodes[-1], self.dtype)
        return targets

    def calculate_error(self, labels) -> float:
        """The cost of the last forward pass against `labels`.

        Args:
            labels: For the inputs of the last
                [forward_pass][nnframe.NeuralNetwork.forward_pass]: 1-D integer class ids,
                or 2-D probability rows (one column per output node).

        Returns:
            The mean over the batch of the per-sample loss; also stored in `error`.

        Raises:
            InputError: There was no forward pass yet, or `labels` do not fit it.
        """
        self.error = float(self._loss.loss(self.layers[-1].activations,
                                           self._last_targets(labels, "calculate_error")))
        return self.error

    def back_pass(self, labels, learning_rate: float | None = None) -> None:
        """Backpropagate the last forward pass's error and update every weight and bias.

        Applies exactly `-learning_rate` times the gradient of what
        [calculate_error][nnframe.NeuralNetwork.calculate_error] returns for the same
        `labels`. If anything fails midway, no weight is changed.

        Args:
            labels: For the inputs of the last
                [forward_pass][nnframe.NeuralNetwork.forward_pass]: 1-D integer class ids,
                or 2-D probability rows.
            learning_rate: A positive finite step size; `None` uses the one of the last
                [train][nnframe.NeuralNetwork.train].

        Raises:
            InputError: There was no forward pass yet, `labels` do not fit it, or there is
                no learning rate.
            PluginRuntimeError: A plugin activation or cost raised or broke its contract.
        """
        if learning_rate is None:
            if self.learning_rate is None:
                raise InputError("back_pass needs a learning_rate: pass one, e.g. "
                                 "back_pass(labels, 0.1), or call train first.")
            learning_rate = self.learning_rate
        learning_rate = _validation.learning_rate(learning_rate)
        targets = self._last_targets(labels, "back_pass")
        snapshot = [p.copy() for p in self.parameters()]
        try:
            self._guarded("back_pass", self.layers[0].activations, targets, self._backward,
                          targets, learning_rate)
        except BaseException:
            self._restore(snapshot)  # nothing half-done
            raise

    # -- training --------------------------------------------------------------------------
    def train(self, batch_size: int, inputs, labels, num_epochs: int, learning_rate: float,
              filename: str | Path | None = None, *, seed: int | None = None,
              validation_data: tuple | None = None, verbose: bool = False,
              callback: Callable[[TrainingState], None] | None = None) -> dict[str, list]:
        """Mini-batch gradient descent over every sample, every epoch.

        The order is shuffled each epoch (reproducibly with `seed`); the last batch may be
        smaller. An epoch happens whole or not at all: whatever interrupts it (Ctrl-C, an
        exception from a plugin or the callback, divergence) restores the weights of its
        start, leaves it out of both histories and propagates.

        Args:
            batch_size: Samples per gradient step; one larger than the data makes the whole
                data one batch.
            inputs: A 2-D array-like, one row per sample.
            labels: 1-D integer class ids, or 2-D probability rows (values in [0, 1], each
                row summing to 1; with one output node, the probability of class 1).
            num_epochs: Passes over the data (0 trains nothing).
            learning_rate: A positive finite step size; losses are batch means, so it means
                the same for any batch size.
            filename: Where to save the trained network (a `.pkl` in an existing directory),
                or `None`.
            seed: Seed of the shuffling (a non-negative int or a `numpy.random.Generator`).
            validation_data: `(inputs, labels)` evaluated after every epoch.
            verbose: Print one line per epoch to standard error.
            callback: Called with a [TrainingState][nnframe.TrainingState] after every batch
                and once more at the end of every epoch.

        Returns:
            The history of this call: `loss` and `accuracy` per epoch (means over the epoch's
                batches), plus `val_loss` and `val_accuracy` with `validation_data`. The same
                values are appended to `history`.

        Raises:
            InputError: An argument has the wrong type, shape or value.
            TrainingDivergedError: The loss or the weights became NaN or infinite.
            PluginRuntimeError: A plugin activation or cost raised or broke its contract.
        """
        batch_size = _validation.positive_int(batch_size, "batch_size")
        num_epochs = _validation.positive_int(num_epochs, "num_epochs", minimum=0)
        learning_rate = _validation.learning_rate(learning_rate)
        seed = _validation.seed(seed)
        if callback is not None and not callable(callback):
            raise InputError(f"callback must be callable (it receives a TrainingState after "
                             f"every batch), got {type(callback).__name__}.")
        path = None
        if filename is not None:
            path = _validation.model_path(filename)
            if not path.parent.is_dir():
                raise InputError(f"cannot save to {str(filename)!r}: the directory "
                                 f"{str(path.parent)!r} does not exist; create it first.")
        x, _ = _validation.inputs(inputs, self.num_nodes[0], self.dtype)
        y, ids = _validation.labels(labels, len(x), self.num_nodes[-1], self.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise InputError("validation_data must be a pair (inputs, labels).")
            vx, _ = _validation.inputs(validation_data[0], self.num_nodes[0], self.dtype,
                                       name="validation inputs")
            vy, vids = _validation.labels(validation_data[1], len(vx), self.num_nodes[-1],
                                          self.dtype, name="validation labels")
            val = (vx, vy, vids)

        self.learning_rate = learning_rate
        rng = np.random.default_rng(seed)
        n = len(x)
        batch_size = min(batch_size, n)  # a batch larger than the data is all of it
        num_batches = -(-n // batch_size)
        history: dict[str, list[float]] = {"loss": [], "accuracy": []}
        if val is not None:
            history.update(val_loss=[], val_accuracy=[])
        # Overflow is detected (the loss turns non-finite) and reported as one clear error
        # naming the epoch and batch, instead of a stream of NumPy RuntimeWarnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, num_epochs + 1):
                # An epoch happens whole or not at all: whatever stops it (an error, Ctrl-C,
                # SystemExit, a callback raising, even at the epoch's end) restores the
                # weights of its start and takes it out of both histories.
                snapshot = [p.copy() for p in self.parameters()]
                recorded = {key: len(values) for key, values in self.history.items()}
                try:
                    self._train_epoch(epoch, num_epochs, x, y, ids, batch_size, learning_rate,
                                      rng.permutation(n), history, callback, snapshot)
                    if val is not None:
                        vout = self._validation_outputs(validation_data[0], val[0])
                        history["val_loss"].append(float(self._loss.loss(vout, val[1])))
                        history["val_accuracy"].append(_percent(ops.argmax_rows(vout),
                                                                val[2]))
                    for key, values in history.items():  # the network's record stays in step
                        self.history.setdefault(key, []).append(values[-1])
                    if verbose:
                        line = " ".join(f"{k}={v[-1]:.2f}%" if "accuracy" in k
                                        else f"{k}={v[-1]:.4f}" for k, v in history.items())
                        print(f"epoch {epoch}/{num_epochs} {line}", file=sys.stderr)
                    if callback is not None:
                        callback(TrainingState(epoch, num_epochs, num_batches, num_batches,
                                               history["loss"][-1], history["accuracy"][-1],
                                               epoch_done=True, history=history))
                except BaseException:
                    self._restore(snapshot)
                    _forget_epoch(history, epoch - 1)
                    _forget_epoch(self.history, recorded)
                    raise
        if path is not None:
            self.save(path)
        return history

    def _train_epoch(self, epoch, num_epochs, x, y, ids, batch_size, learning_rate, order,
                     history, callback, snapshot) -> None:
        n = len(x)
        num_batches = -(-n // batch_size)
        total_loss = 0.0
        correct = 0
        batch, xb, yb = 0, x[:0], y[:0]
        # Targets and class ids are small: shuffle them once per epoch and slice per batch.
        # The inputs are large, so each batch gathers only its own rows.
        y_epoch, ids_epoch = y[order], ids[order]
        try:
            for batch in range(num_batches):
                start, stop = batch * batch_size, (batch + 1) * batch_size
                xb, yb = x[order[start:stop]], y_epoch[start:stop]
                out = self._forward(xb)
                loss = self._loss.loss(out, yb)
                # The first layer's sums too, as in inference: a saturating activation
                # (tanh) would hide inputs that overflow them from the loss.
                if not (math.isfinite(loss) and ops.all_finite(self.layers[1].pre_activations)):
                    self._diverged(epoch, batch + 1, num_batches, learning_rate, snapshot,
                                   f"the loss became {loss}", x, order[start:stop])
                self._backward(yb, learning_rate)
                total_loss += loss * len(yb)
                correct += int(np.count_nonzero(ops.argmax_rows(out) == ids_epoch[start:stop]))
                if callback is not None:
                    seen = min((batch + 1) * batch_size, n)
                    callback(TrainingState(epoch, num_epochs, batch + 1, num_batches,
                                           total_loss / seen, 100.0 * correct / seen))
        except NNFrameError:
            raise
        except Exception as exc:
            self._blame_plugin(
                exc, xb, yb, f"training stopped at epoch {epoch}, batch {batch + 1} of "
                f"{num_batches}", f" The weights are restored to the start of epoch {epoch}.",
                before_raise=lambda: self._restore(snapshot))
        if not ops.all_finite(*self.parameters()):
            self._diverged(epoch, num_batches, num_batches, learning_rate, snapshot,
                           "the weights became non-finite", x, order)
        history["loss"].append(total_loss / n)
        history["accuracy"].append(100.0 * correct / n)

    def _diverged(self, epoch, batch, num_batches, learning_rate, snapshot, what, x,
                  rows) -> None:
        """Restore the weights of the epoch's start and raise, naming the culprit if any:
        a plugin activation, inputs (``x[rows]``) too large for the dtype, or training."""
        culprit = self._nonfinite_activation()
        self._restore(snapshot)
        if culprit is None:
            # Inputs whose first weighted sums overflow even with the restored weights are
            # what predict would refuse too: the data's fault, not the training's.
            found = self._first_nonfinite(x, rows)
            if found is not None and found[0] == "sums" and found[2] == 1:
                row = found[1]
                raise InputError(_validation.overflow_message("inputs", row, 1, x[row],
                                                              self.dtype)
                                 + f" Training stopped at epoch {epoch}; the weights are "
                                 f"restored to the start of epoch {epoch}.")
        if culprit is not None:
            advice = (f"the activation {brief(culprit.name)} returned NaN or infinity for finite "
                      f"inputs; fix or replace the plugin that provides it "
                      f"({_provider_of(culprit)})")
        else:
            advice = (f"try a smaller learning_rate (now {learning_rate:g}) or scale the inputs "
                      "to about [0, 1]")
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch}, batch {batch} of {num_batches}: {what}. "
            f"The weights are restored to the start of epoch {epoch}; {advice}.",
            epoch=epoch, batch=batch)

    def _find_faulty_plugin(self, x: np.ndarray, targets: np.ndarray | None) -> str | None:
        """After an exception, replay ``x`` layer by layer to find the plugin at fault.

        Costs nothing until something fails: the hot loops carry no checks of their own.
        """
        def who(obj) -> str:
            kind = "cost" if isinstance(obj, Cost) else "activation"
            return f"the {kind} {brief(obj.name)} ({_provider_of(obj)})"

        def bad_shape(obj, what, out, shape) -> str | None:
            if isinstance(out, np.ndarray) and out.shape == shape:
                return None
            got = getattr(out, "shape", type(out).__name__)
            return f"{who(obj)} {what} returned {got} for an input of shape {shape}"

        with np.errstate(all="ignore"):
            a, trace = x, []
            for layer, nxt in zip(self.layers[:-1], self.layers[1:], strict=True):
                z = ops.affine(a, layer.weights_for_layer, layer.bias_for_layer)
                act = nxt.activation_function
                try:
                    out = act.forward(z)
                except Exception as exc:
                    return f"{who(act)} raised {type(exc).__name__} in forward: {exc}"
                if problem := bad_shape(act, "forward", out, z.shape):
                    return problem
                trace.append((act, z, out))
                a = out
            if targets is None or len(targets) != len(a):
                return None
            try:
                grad = self._loss.gradient(a, targets)
            except Exception as exc:
                return f"{who(self._loss)} raised {type(exc).__name__} in gradient: {exc}"
            if problem := bad_shape(self._loss, "gradient", grad, a.shape):
                return problem
            for act, z, out in reversed(trace):
                try:
                    result = act.backward(z, out, np.ones_like(out))
                except Exception as exc:
                    return f"{who(act)} raised {type(exc).__name__} in backward: {exc}"
                if problem := bad_shape(act, "backward", result, z.shape):
                    return problem
        return None

    def _nonfinite_activation(self) -> Activation | None:
        for layer in self.layers[1:]:
            z, a = layer.pre_activations, layer.activations
            if z is not None and a is not None and ops.all_finite(z) and not ops.all_finite(a):
                return layer.activation_function
        return None

    def _restore(self, snapshot: list[np.ndarray]) -> None:
        for param, saved in zip(self.parameters(), snapshot, strict=True):
            param[...] = saved

    # -- using a trained network -----------------------------------------------------------
    def _network_for(self, filename) -> NeuralNetwork:
        if filename is None:
            return self
        from .persistence import load

        return load(filename)

    def predict(self, filename, input) -> np.ndarray:
        """The predicted class of every row of `input`, as one-hot rows.

        Args:
            filename: A model saved with [save][nnframe.NeuralNetwork.save] to use instead
                of this network (loaded safely, as [load][nnframe.load] does), or `None`.
            input: A 2-D array-like, one row per sample, or a single 1-D sample.

        Returns:
            One-hot rows (argmax per row); a single row for a 1-D sample. A network with one
                output unit is read as a binary classifier (threshold 0.5).

        Raises:
            InputError: `input` has the wrong shape or type, or holds NaN or infinity.
            ModelFileError: `filename` cannot be loaded.
        """
        net = self._network_for(filename)
        x, was_1d = net._unchecked_inputs(input, "input", allow_1d=True)
        rows = ops.one_hot(net._classes("predict", x, input, "input"), net.num_nodes[-1],
                           net.dtype)
        return rows[0] if was_1d else rows

    def predict_classes(self, inputs) -> np.ndarray:
        """The predicted class id of every row of `inputs`, using this network.

        Args:
            inputs: A 2-D array-like, one row per sample, or a single 1-D sample.

        Returns:
            Class ids (int64), one per row; a single id for a 1-D sample.

        Raises:
            InputError: `inputs` has the wrong shape or type, or holds NaN or infinity.
        """
        x, was_1d = self._unchecked_inputs(inputs, "inputs", allow_1d=True)
        ids = self._classes("predict_classes", x, inputs, "inputs")
        return ids[0] if was_1d else ids

    def check_accuracy(self, filename, inputs, labels) -> float:
        """The percentage of `inputs` classified as `labels`.

        Args:
            filename: A model saved with [save][nnframe.NeuralNetwork.save] to use instead
                of this network, or `None`.
            inputs: A 2-D array-like, one row per sample.
            labels: 1-D integer class ids, or 2-D probability rows.

        Returns:
            `correct * 100 / total`, from 0.0 to 100.0.

        Raises:
            InputError: `inputs` or `labels` have the wrong shape, type or values.
            ModelFileError: `filename` cannot be loaded.
        """
        net = self._network_for(filename)
        x, _ = net._unchecked_inputs(inputs, "inputs")
        _, ids = _validation.labels(labels, len(x), net.num_nodes[-1], net.dtype)
        return _percent(net._classes("check_accuracy", x, inputs, "inputs"), ids)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write this network to `path` atomically: a crash never damages an existing file.

        The file holds plain data only; read it back with [load][nnframe.load].

        Args:
            path: A path ending in `.pkl`.

        Raises:
            InputError: `path` does not end in `.pkl`.
            ModelFileError: The file cannot be written.
        """
        from .persistence import save

        save(self, path)

    @staticmethod
    def load(path: str | Path, *, trusted: bool = False) -> NeuralNetwork:
        """Read a network saved with [save][nnframe.NeuralNetwork.save].

        The same as [nnframe.load][nnframe.load], which documents it in full.

        Args:
            path: A path ending in `.pkl`.
            trusted: `True` allows a full, code-running load (only for files you trust).

        Returns:
            The network.
        """
        from .persistence import load

        return load(path, trusted=trusted)


class _ShapeBreach(Exception):
    """A plugin returned an array of the wrong shape; turned into a PluginRuntimeError."""

    def __init__(self, obj):
        super().__init__(f"{brief(obj)} returned an array of the wrong shape")


def _provider_of(obj) -> str:
    from .registry import provider_of

    provider = provider_of(obj)
    return f"{provider.distribution} {provider.version}" if provider else "not an installed plugin"


def _forget_epoch(history: dict[str, list], kept: int | dict[str, int]) -> None:
    """Cut ``history`` back to ``kept`` entries per key (a count, or a count per key; keys
    missing from that dict did not exist and are removed)."""
    for key in list(history):
        count = kept if isinstance(kept, int) else kept.get(key)
        if count is None:
            del history[key]
        else:
            del history[key][count:]


def _percent(predicted: np.ndarray, ids: np.ndarray) -> float:
    return float(100.0 * np.count_nonzero(predicted == ids) / len(ids))


def _sequence(value, name: str, length: int) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise InputError(f"{name} must be a list with one entry per layer ({brief(length)}), "
                         f"got {type(value).__name__} {brief(value)}.")
    value = list(value)
    if len(value) != length:
        raise InputError(f"{name} has {len(value)} entries but num_layers is {brief(length)}; "
                         "give one entry per layer.")
    return value


neural_network = NeuralNetwork
__all__ = ["Layer", "NNFrameError", "NeuralNetwork", "TrainingState", "neural_network"]
