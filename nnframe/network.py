"""NeuralNetwork: the classic "neural network from scratch" API, with exact backprop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import _diagnosis, _parallel, _validation, ops
from ._diagnosis import ShapeBreach
from ._text import brief
from .backend import Backend, get_backend
from .base import Activation, Cost
from .callbacks import Callback
from .errors import InputError, NNFrameError, PluginContractError
from .layer import Layer, resolve_activation
from .optimizers import Gradients, Optimizer, OptimizerRun
from .registry import checked_name, get_cost, get_optimizer, get_schedule
from .schedules import Schedule, ScheduleRun
from .training import Trainer, TrainingState, percent


def resolve_cost(spec) -> Cost:
    if isinstance(spec, str):
        return get_cost(spec)
    if isinstance(spec, Cost):
        from .registry import check_contract

        check_contract(spec, "cost")
        return spec
    raise InputError(f"cost_function must be a name such as 'cross_entropy' or an nnframe.Cost "
                     f"object, got {type(spec).__name__} {brief(spec)}.")


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
        dropout: One rate in [0, 1) per layer, input layer first, output layer 0: the
            fraction of that layer's activations zeroed (inverted dropout: the rest are
            scaled by 1 / (1 - rate)) in each training batch. Only `train`, and
            `forward_pass(..., training=True)`, drop; `predict`, `check_accuracy` and a
            plain `forward_pass` use every unit. `None` (the default) is no dropout.
        device: Where the weights live and the maths runs: `"cpu"` (NumPy, the default) or
            `"cuda"` (a CUDA GPU through CuPy: `pip install 'nnframe[cuda12]'` or
            `'nnframe[cuda13]'`). The weights are initialised on the host either way, so a
            seed gives the same network on both; see [to][nnframe.NeuralNetwork.to].

    Attributes:
        layers: One [Layer][nnframe.Layer] per layer, input first; each holds the weights
            and bias to the next layer.
        num_layers: As given.
        num_nodes: As given, as a list of ints.
        activation_function: The activation names per layer (`None` for the input layer).
        cost_function: The cost's name.
        dropout: The dropout rate per layer (zeros without dropout).
        dtype: The dtype of every weight, bias and output.
        history: Per-epoch `loss`, `accuracy` and `learning_rate` (and `val_loss`,
            `val_accuracy`) of every `train` call so far, completed epochs only.
        epochs: The number of epochs trained so far (saved with the model).
        metadata: A dict of your own plain data (strings, numbers, bools, `None`, lists and
            dicts with string keys), saved with the model and loaded back; `nnframe train`
            keeps its settings there under `"nnframe_train"`.
        learning_rate: The learning rate of the last `train` call, or `None`.
        error: What the last `calculate_error` returned, or `None`.
        device: The device name, `"cpu"` or `"cuda"`.

    Raises:
        InputError: An argument has the wrong type, size or value (the message says which).
        DeviceUnavailableError: `device="cuda"` but CuPy is not installed or no GPU is
            visible.
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
                 cost_function: str | Cost, *, dtype=np.float32, seed: int | None = None,
                 dropout: Sequence[float] | None = None, device: str | Backend = "cpu"):
        self._backend = get_backend(device)
        self.num_layers = _validation.positive_int(num_layers, "num_layers", minimum=2)
        self.num_nodes = _sequence(num_nodes, "num_nodes", self.num_layers)
        self.dropout = _dropout(dropout, self.num_layers)
        for i, size in enumerate(self.num_nodes):
            _validation.positive_int(size, f"num_nodes[{i}]")
        self.num_nodes = [int(n) for n in self.num_nodes]
        specs = _sequence(activation_function, "activation_function", self.num_layers)
        if specs[0] is not None:
            raise InputError(f"activation_function[0] is {brief(specs[0])}, but the first entry "
                             "belongs to the input layer, which has no activation; use None.")
        self.dtype = _validation.dtype(dtype)
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
        self._run: OptimizerRun | None = None
        # A saved optimizer that could not be rebuilt (its plugin is missing): why, raised
        # when training continues without a new optimizer, and its record, saved again.
        self._saved_optimizer: tuple[NNFrameError, dict] | None = None
        self._shuffle: np.random.Generator | None = None
        self.epochs = 0
        self.metadata: dict = {}
        self._schedule: ScheduleRun | None = None
        self._saved_schedule: tuple[NNFrameError, dict] | None = None
        if not self._backend.is_host:
            backend, self._backend = self._backend, get_backend("cpu")
            self.to(backend)

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

    @property
    def device(self) -> str:
        """The device of the weights and the maths: `"cpu"` or `"cuda"`."""
        return self._backend.name

    def to(self, device: str | Backend) -> NeuralNetwork:
        """Move the network to `device`: its weights, biases and optimizer state.

        Training, prediction and saving then run there; nothing else changes (the history,
        the schedule, the shuffling generator stay as they are). The stored activations of
        the last [forward_pass][nnframe.NeuralNetwork.forward_pass] are dropped.

        Args:
            device: `"cpu"` or `"cuda"`.

        Returns:
            The network itself, so that `net = NeuralNetwork(...).to("cuda")` reads well.

        Raises:
            InputError: `device` is not a device name.
            DeviceUnavailableError: `"cuda"` but CuPy is not installed or no GPU is visible.
        """
        target = get_backend(device)
        source = self._backend
        if target is source:
            return self

        def move(array):
            return target.asarray(source.to_host(array))

        for layer in self.layers:
            if layer.weights_for_layer is not None:
                layer.weights_for_layer = move(layer.weights_for_layer)
                layer.bias_for_layer = move(layer.bias_for_layer)
            layer.activations = layer.pre_activations = None
            layer.dropout_mask = layer.kept_activations = None
        if self._run is not None:
            self._run.move(move)
        self._backend = target
        return self

    def __repr__(self) -> str:
        parts = [str(self.num_nodes[0])]
        parts += [f"{n} {a}" for n, a in zip(self.num_nodes[1:], self.activation_function[1:],
                                               strict=True)]
        parts = [f"{part} (dropout {rate:g})" if rate else part
                 for part, rate in zip(parts, self.dropout, strict=True)]
        count = sum(p.size for p in self.parameters())
        return (f"NeuralNetwork({' -> '.join(parts)}, cost={self.cost_function}, "
                f"dtype={self.dtype.name}, parameters={count:,}"
                + ("" if self._backend.is_host else f", device={self._backend.name}") + ")")

    # -- the maths -------------------------------------------------------------------------
    def _forward(self, x: np.ndarray, rng: np.random.Generator | None = None,
                 rows: tuple[int, int] | None = None) -> np.ndarray:
        """The forward pass, keeping every layer's activations for backprop; with ``rng``,
        dropout masks are drawn from it for the layers that have a rate. ``x`` may be
        the part of a batch that starts at row ``offset`` of ``total`` (``rows``, in
        data-parallel training): the masks drawn are the whole batch's, and ``x`` gets its
        rows of them, so any split of a batch drops what the whole batch would."""
        layers = self.layers
        self._drop(layers[0], x, rng, self.dropout[0], rows)
        for i in range(len(layers) - 1):
            layer, nxt = layers[i], layers[i + 1]
            nxt.pre_activations = ops.affine(layer.activations, layer.weights_for_layer,
                                             layer.bias_for_layer)
            out = nxt.activation_function.forward(nxt.pre_activations)
            if out.shape != nxt.pre_activations.shape:
                raise ShapeBreach(nxt.activation_function)  # NumPy would broadcast silently
            self._drop(nxt, out, rng, self.dropout[i + 1], rows)
        return layers[-1].activations

    def _drop(self, layer: Layer, a: np.ndarray, rng, rate: float,
              rows: tuple[int, int] | None = None) -> None:
        """Store ``a`` as the layer's activations, with inverted dropout when ``rng`` is
        given and ``rate`` > 0: the mask (0 or 1 / (1 - rate)) and the undropped values are
        kept for backprop."""
        if rng is None or rate == 0:
            layer.activations, layer.dropout_mask, layer.kept_activations = a, None, None
            return
        source = self._backend.dropout_source(rng)  # the generator itself on the CPU
        if rows is None:
            draws = source.random(a.shape, dtype=self.dtype)
        else:
            offset, total = rows
            draws = source.random((total, a.shape[1]),
                                  dtype=self.dtype)[offset:offset + len(a)]
        keep = draws >= self.dtype.type(rate)
        mask = keep.astype(self.dtype)
        mask *= self.dtype.type(1 / (1 - rate))
        layer.kept_activations, layer.dropout_mask = a, mask
        layer.activations = a * mask

    def _skip_dropout(self, rng: np.random.Generator, total: int) -> None:
        """Draw the dropout masks of a batch of ``total`` rows and drop them: what `_forward`
        draws, for a process that has none of the batch's rows (the generator stays in step
        with the other processes')."""
        for width, rate in zip(self.num_nodes, self.dropout, strict=True):
            if rate:
                rng.random((total, width), dtype=self.dtype)

    def _infer(self, x: np.ndarray, *, classes: bool = False) -> np.ndarray:
        """Forward pass that leaves the layers' stored activations alone: the outputs, or
        with ``classes=True`` the class id per row. Large inputs run in row blocks on all
        cores (see `nnframe._parallel`)."""
        rows = self._infer_classes if classes else self._infer_rows
        if not self._backend.is_host:  # on a device: one block at a time, kept there
            backend = self._backend
            outputs = [rows(backend.asarray(x[start:start + ops.INFERENCE_CHUNK], self.dtype))
                       for start in range(0, len(x), ops.INFERENCE_CHUNK)]
            return outputs[0] if len(outputs) == 1 else backend.xp.concatenate(outputs)
        outputs = []
        # Overflow is found by the checks of _infer_rows and explained by the caller
        # (_explain_nonfinite), instead of NumPy warning; worker blocks share this state.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, len(x), ops.INFERENCE_CHUNK):
                block = x[start:start + ops.INFERENCE_CHUNK]
                if block.dtype != self.dtype:  # lazily checked data: one block at a time
                    block = np.ascontiguousarray(block, dtype=self.dtype)
                outputs += _parallel.map_rows(rows, block)
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
            _diagnosis.explain_nonfinite(self, data, x, "validation inputs")

    def _infer_all_classes(self, x: np.ndarray) -> np.ndarray:
        return self._infer(x, classes=True)

    def _unchecked_inputs(self, data, name: str, allow_1d: bool = False):
        return _validation.inputs(data, self.num_nodes[0], self.dtype, name=name,
                                  allow_1d=allow_1d, check_finite=False, lazy=True,
                                  device=self._backend)

    def _classes(self, context: str, x: np.ndarray, data, name: str) -> np.ndarray:
        """Class ids for ``x`` (``data`` validated but for NaN and infinity), classified in
        row blocks that each check their rows first: one pass, on every core."""
        try:
            return self._backend.to_host(
                _diagnosis.guarded(self, context, x, None, self._infer_all_classes, x))
        except _validation.NonFiniteRows:
            _diagnosis.explain_nonfinite(self, data, x, name)

    def _output_delta(self, targets: np.ndarray) -> np.ndarray:
        out = self.layers[-1]
        if self._fused is not None:
            return self._fused(out.activations, targets)
        grad = self._loss.gradient(out.activations, targets)
        if grad.shape != out.activations.shape:
            raise ShapeBreach(self._loss)
        return out.activation_function.backward(out.pre_activations, out.activations, grad)

    def _gradients(self, targets: np.ndarray) -> Gradients:
        """Backprop from the stored forward pass: the gradient of the batch-mean cost for
        every parameter, aligned with `parameters`, as per-layer factors."""
        delta = self._output_delta(targets)
        if delta.shape != self.layers[-1].activations.shape:
            raise ShapeBreach(self._loss)
        factors: list = [None] * (len(self.layers) - 1)
        for i in range(len(self.layers) - 2, -1, -1):
            layer = self.layers[i]
            factors[i] = (layer.activations, delta)
            if i:
                grad_a = delta @ layer.weights_for_layer.T
                a = layer.activations
                if layer.dropout_mask is not None:  # through the mask, to the undropped a
                    grad_a *= layer.dropout_mask
                    a = layer.kept_activations
                delta = layer.activation_function.backward(layer.pre_activations, a, grad_a)
                if delta.shape != grad_a.shape:
                    raise ShapeBreach(layer.activation_function)
        return Gradients(factors)

    # -- the optimizer ---------------------------------------------------------------------
    @property
    def optimizer(self) -> Optimizer | None:
        """The optimizer that [train][nnframe.NeuralNetwork.train] continues with and
        [back_pass][nnframe.NeuralNetwork.back_pass] uses (its state kept with the
        network and saved with it); `None` before the first update, when plain `sgd` is
        used."""
        return None if self._run is None else self._run.optimizer

    def _optimizer_run(self, optimizer=None) -> OptimizerRun:
        """The run to train with: a fresh one for an ``optimizer`` given (a name or an
        instance; the current instance continues), else the current one, else plain sgd."""
        if optimizer is None:
            if self._run is None:
                if self._saved_optimizer is not None:
                    raise self._saved_optimizer[0]  # the saved one cannot be rebuilt here
                self._run = OptimizerRun(get_optimizer("sgd"), self.parameters())
            return self._run
        if self._run is not None and optimizer is self._run.optimizer:
            return self._run
        optimizer = _instance(optimizer, Optimizer, get_optimizer, "adam",
                              "nnframe.get_optimizer('adam', beta1=0.9)")
        try:
            run = OptimizerRun(optimizer, self.parameters())
        except NNFrameError:
            raise
        except Exception as exc:
            _diagnosis.plugin_fault(optimizer, exc, "the optimizer could not start",
                                       method="init_state")
        self._run, self._saved_optimizer = run, None
        return run

    @property
    def schedule(self) -> Schedule | None:
        """The learning-rate schedule that [train][nnframe.NeuralNetwork.train] continues
        with (saved with the network); `None` for the base rate on every epoch."""
        return None if self._schedule is None else self._schedule.schedule

    def _schedule_run(self, schedule, num_epochs: int) -> ScheduleRun | None:
        """A fresh run for a ``schedule`` given (a name or an instance; the current instance
        continues), else the current one (None: the base rate)."""
        if schedule is None:
            if self._schedule is None and self._saved_schedule is not None:
                raise self._saved_schedule[0]  # the saved one cannot be rebuilt here
            if self._schedule is not None and self._schedule.num_epochs == 0 and num_epochs:
                # started by a call of 0 epochs: its run is the first that trains
                self._schedule = ScheduleRun(self._schedule.schedule, self.epochs, num_epochs)
            return self._schedule
        if self._schedule is not None and schedule is self._schedule.schedule:
            return self._schedule
        schedule = _instance(schedule, Schedule, get_schedule, "cosine",
                             "nnframe.get_schedule('step', step_size=10)")
        self._schedule = ScheduleRun(schedule, self.epochs, num_epochs)
        self._saved_schedule = None
        return self._schedule

    # -- the classic step-by-step API ------------------------------------------------------
    def forward_pass(self, inputs, *, training: bool = False, to_host: bool = True):
        """Run `inputs` through the network, keeping every layer's activations.

        The stored activations are what [calculate_error][nnframe.NeuralNetwork.calculate_error]
        and [back_pass][nnframe.NeuralNetwork.back_pass] then use.

        Args:
            inputs: A 2-D array-like, one row per sample, one column per input node.
            training: Apply dropout as `train` does, with masks from the network's
                training generator (the one `train(seed=...)` sets), which `back_pass`
                then backpropagates through. `False` (the default) uses every unit.
            to_host: On a GPU network, `True` (the default) returns a NumPy array, `False`
                the device (CuPy) array itself, with no copy. On the CPU it changes nothing.

        Returns:
            The output layer's activations, one row per sample.

        Raises:
            InputError: `inputs` has the wrong shape or type, holds NaN or infinity, or is
                so large that the weighted sums overflow.
            PluginRuntimeError: A plugin activation raised or broke its contract.
        """
        if not isinstance(training, bool):
            raise InputError(f"training must be True or False, got {brief(training)}.")
        _flag(to_host, "to_host")
        x, _ = _validation.inputs(inputs, self.num_nodes[0], self.dtype, device=self._backend)
        x = self._backend.asarray(x)
        rng = None
        if training and any(self.dropout):
            if self._shuffle is None:
                self._shuffle = np.random.default_rng()
            rng = self._shuffle
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = _diagnosis.guarded(self, "forward_pass", x, None, self._forward, x, rng)
        if not ops.all_finite(self.layers[1].pre_activations, out):  # as _infer_rows checks
            self.layers[-1].activations = None  # no back_pass from a broken pass
            _diagnosis.explain_nonfinite(self, inputs, x, "inputs")
        return self._backend.to_host(out) if to_host else out

    def _last_targets(self, labels, what: str) -> np.ndarray:
        out = self.layers[-1].activations
        if out is None:
            raise InputError(f"{what} needs a forward pass first: call "
                             "network.forward_pass(inputs) with the inputs these labels "
                             "belong to.")
        targets, _ = _validation.labels(labels, len(out), self.num_nodes[-1], self.dtype)
        return self._backend.asarray(targets)

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

    def gradients(self, labels, *, to_host: bool = True) -> list[np.ndarray]:
        """The gradient of [calculate_error][nnframe.NeuralNetwork.calculate_error] for
        `labels` with respect to every parameter, from the last forward pass.

        Args:
            labels: For the inputs of the last
                [forward_pass][nnframe.NeuralNetwork.forward_pass]: 1-D integer class ids,
                or 2-D probability rows.
            to_host: On a GPU network, `True` (the default) returns NumPy arrays, `False`
                the device arrays.

        Returns:
            One array per parameter, aligned with
                [parameters][nnframe.NeuralNetwork.parameters]; the weights are unchanged.

        Raises:
            InputError: There was no forward pass yet, or `labels` do not fit it.
            PluginRuntimeError: A plugin activation or cost raised or broke its contract.
        """
        _flag(to_host, "to_host")
        targets = self._last_targets(labels, "gradients")
        grads = _diagnosis.guarded(self, "gradients", self.layers[0].activations, targets,
                                   lambda: self._gradients(targets).arrays())
        return [self._backend.to_host(g) for g in grads] if to_host else grads

    def back_pass(self, labels, learning_rate: float | None = None) -> None:
        """Backpropagate the last forward pass's error and update every weight and bias.

        The update is the network's [optimizer][nnframe.NeuralNetwork.optimizer]'s (plain
        `sgd` until `train` is given another), which continues its state. With plain
        `sgd` it applies exactly `-learning_rate` times the gradient of what
        [calculate_error][nnframe.NeuralNetwork.calculate_error] returns for the same
        `labels`. If anything fails midway, no weight and no optimizer state is changed.

        Args:
            labels: For the inputs of the last
                [forward_pass][nnframe.NeuralNetwork.forward_pass]: 1-D integer class ids,
                or 2-D probability rows.
            learning_rate: A positive finite step size; `None` uses the one of the last
                [train][nnframe.NeuralNetwork.train].

        Raises:
            InputError: There was no forward pass yet, `labels` do not fit it, or there is
                no learning rate.
            PluginRuntimeError: A plugin activation, cost or optimizer raised or broke its
                contract.
            MissingPluginError: The network was loaded with an optimizer that is not
                installed.
        """
        if learning_rate is None:
            if self.learning_rate is None:
                raise InputError("back_pass needs a learning_rate: pass one, e.g. "
                                 "back_pass(labels, 0.1), or call train first.")
            learning_rate = self.learning_rate
        learning_rate = _validation.learning_rate(learning_rate)
        targets = self._last_targets(labels, "back_pass")
        run = self._optimizer_run()
        snapshot = [p.copy() for p in self.parameters()], run.snapshot()
        try:
            grads = _diagnosis.guarded(self, "back_pass", self.layers[0].activations, targets,
                                       self._gradients, targets)
            try:
                run.apply(self.parameters(), grads, learning_rate)
            except NNFrameError:
                raise
            except Exception as exc:
                _diagnosis.plugin_fault(run.optimizer, exc, "back_pass failed")
        except BaseException:
            for param, saved in zip(self.parameters(), snapshot[0], strict=True):
                param[...] = saved  # nothing half-done
            run.restore(snapshot[1])
            raise

    # -- training --------------------------------------------------------------------------
    def train(self, batch_size: int, inputs, labels, num_epochs: int, learning_rate: float,
              filename: str | Path | None = None, *, optimizer: str | Optimizer | None = None,
              schedule: str | Schedule | None = None, seed: int | None = None,
              validation_data: tuple | None = None, verbose: bool = False,
              callback: Callable[[TrainingState], None] | None = None,
              callbacks: Sequence[Callback] | None = None,
              distributed=False) -> dict[str, list]:
        """Mini-batch training over every sample, every epoch.

        The order is shuffled each epoch (reproducibly with `seed`); the last batch may be
        smaller. An epoch happens whole or not at all: whatever interrupts it (Ctrl-C, an
        exception from a plugin or the callback, divergence) restores the weights, the
        optimizer state and the shuffling of its start, leaves it out of both histories
        and propagates. The loop itself is `nnframe.training.Trainer`.

        Training continues where the last `train` (or the saved model) left off: the same
        optimizer with its state, and, without a `seed`, the same shuffling generator, so
        2 epochs, save, load, 3 more give the weights of 5 epochs in one call.

        Args:
            batch_size: Samples per gradient step; one larger than the data makes the whole
                data one batch.
            inputs: A 2-D array-like, one row per sample. An `np.memmap`, or an array of
                another real dtype (uint8 images) whose conversion would take more than
                256 MiB, is converted one batch at a time, never whole.
            labels: 1-D integer class ids, or 2-D probability rows (values in [0, 1], each
                row summing to 1; with one output node, the probability of class 1).
            num_epochs: Passes over the data (0 trains nothing).
            learning_rate: The base learning rate: a positive finite step size; losses are
                batch means, so it means the same for any batch size.
            filename: Where to save the trained network (a `.pkl` in an existing directory),
                or `None`.
            optimizer: A name such as `"adam"` (default hyperparameters) or an
                [Optimizer][nnframe.Optimizer] from
                [get_optimizer][nnframe.get_optimizer]; it starts with a fresh state
                (except the network's current instance, `network.optimizer`, which
                continues). `None` (the default) continues the network's current
                optimizer, or plain `"sgd"` for a network never trained.
            schedule: The learning rate per epoch: a name such as `"cosine"` or a
                [Schedule][nnframe.Schedule] from [get_schedule][nnframe.get_schedule],
                started at this call (its epochs are this call's); `None` (the default)
                continues the network's current schedule, or the base rate on every epoch
                for a network that has none.
            seed: Seed of the shuffling (a non-negative int or a `numpy.random.Generator`);
                `None` continues the network's shuffling generator (fresh entropy the first
                time).
            validation_data: `(inputs, labels)` evaluated after every epoch.
            verbose: Show a progress bar per epoch on standard error (tqdm: loss,
                accuracy, learning rate, rate and time left; one line per epoch when
                standard error is not a terminal), as
                [ProgressBar][nnframe.callbacks.ProgressBar].
            callback: A plain function, called with a [TrainingState][nnframe.TrainingState]
                after every batch and once more at the end of every epoch (then with
                `epoch_done=True`); `state.stop()` ends training after that epoch.
            callbacks: [Callback][nnframe.callbacks.Callback] objects such as
                [EarlyStopping][nnframe.callbacks.EarlyStopping] and
                [ModelCheckpoint][nnframe.callbacks.ModelCheckpoint], called in order
                after `callback` at the start and end of training, of every epoch and
                after every batch.
            distributed: Data-parallel training on MPI (run under `mpiexec -n N`):
                `True` for all the ranks of `MPI.COMM_WORLD`, or an mpi4py communicator.
                Every rank calls `train` with the same arguments; each batch is split across
                the ranks and their gradients summed, so every rank ends with the weights
                one process would have (see the scaling guide); only rank 0 saves
                `filename`. Needs `pip install 'nnframe[mpi]'`.

        Returns:
            The history of this call: `loss` and `accuracy` per epoch (means over the epoch's
                batches) and the `learning_rate` used, plus `val_loss` and `val_accuracy`
                with `validation_data`. The same values are appended to `history`.

        Raises:
            InputError: An argument has the wrong type, shape or value.
            UnknownNameError: The optimizer or schedule name is not registered.
            MissingPluginError: No `optimizer` (or `schedule`) was given and the saved one
                is not installed.
            TrainingDivergedError: The loss or the weights became NaN or infinite.
            PluginRuntimeError: A plugin activation, cost or optimizer raised or broke its
                contract.
            RankFailedError: In distributed training, another rank failed (its message is
                included); every rank has restored the start of the epoch.
        """
        from . import distributed as mpi

        comm = mpi.communicator(distributed)
        ranks = None if comm is None else mpi.Ranks(comm)
        # A call that fails before completing an epoch leaves the network as it found it:
        # its optimizer and schedule (with their state), shuffling and learning rate.
        kept = (self._run, self._saved_optimizer, self._schedule, self._saved_schedule,
                self._shuffle, self.learning_rate, self.epochs)
        args = (batch_size, inputs, labels, num_epochs, learning_rate, filename, optimizer,
                schedule, seed, validation_data, callback, callbacks, verbose)
        try:
            if ranks is None:
                trainer, x, y, ids, path = self._trainer(*args)
                history = trainer.fit(x, y, ids)
                if path is not None:
                    self.save(path)
                return history
            with ranks.deferred_interrupts():
                return self._train_distributed(ranks, args)
        except BaseException:
            if self.epochs == kept[-1]:
                (self._run, self._saved_optimizer, self._schedule, self._saved_schedule,
                 self._shuffle, self.learning_rate, _) = kept
            raise

    def _trainer(self, *args, ranks=None):
        """The `Trainer` of a `train` call (its arguments checked and converted), with the
        arrays it trains on and the path to save to."""
        (batch_size, inputs, labels, num_epochs, learning_rate, filename, optimizer, schedule,
         seed, validation_data, callback, callbacks, verbose) = args
        if ranks is not None and not self._backend.is_host:
            raise InputError(f"distributed training runs on the CPU, and this network is on "
                             f"{self.device!r}; move it with network.to('cpu') first, or "
                             "train on one GPU without distributed=.")
        x, y, ids, val, path, run, schedule_run, callbacks, batch_size = self._prepare_training(
            batch_size, inputs, labels, num_epochs, learning_rate, filename, optimizer,
            schedule, seed, validation_data, callback, callbacks,
            check_directory=ranks is None or ranks.rank == 0)
        options = dict(batch_size=batch_size, num_epochs=num_epochs,
                       learning_rate=self.learning_rate, rng=self._shuffle,
                       schedule=schedule_run, validation=val, callback=callback,
                       callbacks=callbacks, verbose=verbose)
        if ranks is None:
            return Trainer(self, run, **options), x, y, ids, path
        from . import distributed as mpi

        trainer = mpi.DistributedTrainer(ranks, self, run, **options)
        trainer.signature = mpi.signature(self, x, ids, batch_size, num_epochs,
                                          self.learning_rate, run, schedule_run, val)
        return trainer, x, y, ids, path

    def _train_distributed(self, ranks, args) -> dict[str, list]:
        """`train` on the ranks of ``ranks``: every step that may fail on one rank alone
        ends in an agreement, so that all raise together and none waits."""
        from . import distributed as mpi

        failed = signature = None
        try:
            trainer, x, y, ids, path = self._trainer(*args, ranks=ranks)
            signature = trainer.signature
        except BaseException as exc:
            failed = exc
        ranks.agree(failed, signature)  # raises on every rank if one failed or they differ
        mpi.synchronise(ranks, self, trainer.run)
        history = trainer.fit(x, y, ids)
        failed = None
        if ranks.rank == 0 and path is not None:  # rank 0 writes; every rank learns if it could
            try:
                self.save(path)
            except BaseException as exc:
                failed = exc
        if failed is None and ranks.take_interrupt():
            failed = KeyboardInterrupt()
        ranks.agree(failed)
        return history

    def _prepare_training(self, batch_size, inputs, labels, num_epochs, learning_rate,
                          filename, optimizer, schedule, seed, validation_data, callback,
                          callbacks, *, check_directory: bool):
        """`train`'s arguments checked and converted, and the optimizer, schedule, shuffling
        and learning rate it trains with set on the network."""
        batch_size = _validation.positive_int(batch_size, "batch_size")
        num_epochs = _validation.positive_int(num_epochs, "num_epochs", minimum=0)
        learning_rate = _validation.learning_rate(learning_rate)
        seed = _validation.seed(seed)
        if callback is not None and not callable(callback):
            raise InputError(f"callback must be callable (it receives a TrainingState after "
                             f"every batch), got {type(callback).__name__}.")
        callbacks = _callbacks(callbacks)
        path = None
        if filename is not None:
            path = _validation.model_path(filename)
            if check_directory and not path.parent.is_dir():
                raise InputError(f"cannot save to {str(filename)!r}: the directory "
                                 f"{str(path.parent)!r} does not exist; create it first.")
        backend = self._backend
        x, _ = _validation.inputs(inputs, self.num_nodes[0], self.dtype, lazy=True,
                                  device=backend)
        y, ids = _validation.labels(labels, len(x), self.num_nodes[-1], self.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise InputError("validation_data must be a pair (inputs, labels).")
            vx, _ = _validation.inputs(validation_data[0], self.num_nodes[0], self.dtype,
                                       name="validation inputs", lazy=True, device=backend)
            vy, vids = _validation.labels(validation_data[1], len(vx), self.num_nodes[-1],
                                          self.dtype, name="validation labels")
            if not backend.is_host and vx.dtype == self.dtype:  # once, not every epoch
                vx = backend.asarray(vx)
            val = (validation_data[0], vx, backend.asarray(vy), backend.asarray(vids))
        if not backend.is_host:
            # On a device the data moves there once (lazily converted data, such as a memmap,
            # one batch at a time); the targets and class ids always.
            if x.dtype == self.dtype:
                x = backend.asarray(x)
            y, ids = backend.asarray(y), backend.asarray(ids)
        run = self._optimizer_run(optimizer)
        schedule_run = self._schedule_run(schedule, num_epochs)
        if seed is not None or self._shuffle is None:
            self._shuffle = np.random.default_rng(seed)
        self.learning_rate = learning_rate
        return (x, y, ids, val, path, run, schedule_run, callbacks,
                min(batch_size, len(x)))

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
        return percent(net._classes("check_accuracy", x, inputs, "inputs"), ids)

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
    def load(path: str | Path, *, trusted: bool = False,
             device: str | Backend = "cpu") -> NeuralNetwork:
        """Read a network saved with [save][nnframe.NeuralNetwork.save].

        The same as [nnframe.load][nnframe.load], which documents it in full.

        Args:
            path: A path ending in `.pkl`.
            trusted: `True` allows a full, code-running load (only for files you trust).
            device: `"cpu"` (the default) or `"cuda"`: where the loaded network lives.

        Returns:
            The network.
        """
        from .persistence import load

        return load(path, trusted=trusted, device=device)


def _instance(spec, base: type, get, example: str, how: str):
    """``spec`` for `train`'s ``optimizer=`` or ``schedule=``: a registered name (built with
    ``get``) or an instance of ``base``, checked as the registry checks what plugins
    register: a valid name, and hyperparameters recorded so that they can be saved."""
    kind = base.kind
    if isinstance(spec, str):
        return get(spec)
    if isinstance(spec, base):
        checked_name(spec, type(spec).__name__, example)
        if "_hyperparameters" not in spec.__dict__:
            raise PluginContractError(
                f"{kind} {spec._label()}: __init__ did not call "
                "super().__init__(**hyperparameters), so nothing would be saved with the "
                "model")
        return spec
    if isinstance(spec, type) and issubclass(spec, base):
        raise InputError(f"{kind} is the class {spec.__name__}; pass an instance "
                         f"({kind}={spec.__name__}(...)) or a name such as '{example}'.")
    raise InputError(f"{kind} must be a name such as '{example}' or an nnframe."
                     f"{base.__name__} (from {how}), got {type(spec).__name__} {brief(spec)}.")


def _flag(value, name: str) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {brief(value)}.")


def _dropout(value, num_layers: int) -> list[float]:
    """The dropout rates, one per layer, checked: numbers in [0, 1), the output's 0."""
    if value is None:
        return [0.0] * num_layers
    rates = _sequence(value, "dropout", num_layers)
    for i, rate in enumerate(rates):
        if (isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating))
                or not 0 <= rate < 1):
            raise InputError(f"dropout[{i}] is {brief(rate)}; a dropout rate is a number in "
                             "[0, 1): the fraction of the layer's units dropped in training.")
    if rates[-1] != 0:
        raise InputError(f"dropout[{num_layers - 1}] is {brief(rates[-1])}, but the output "
                         "layer cannot drop units; its rate must be 0.")
    return [float(rate) for rate in rates]


def _callbacks(value) -> list[Callback]:
    """``callbacks=`` as a list of Callback objects, or a clear error."""
    if value is None:
        return []
    if isinstance(value, Callback):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"callbacks must be a list of nnframe.callbacks.Callback objects "
                         f"such as [EarlyStopping()], got {type(value).__name__}.")
    for i, item in enumerate(value):
        if isinstance(item, type) and issubclass(item, Callback):
            raise InputError(f"callbacks[{i}] is the class {item.__name__}; pass an instance "
                             f"({item.__name__}(...)).")
        if not isinstance(item, Callback):
            hint = (" For a plain function use callback=f (called after every batch)."
                    if callable(item) else "")
            raise InputError(f"callbacks[{i}] is {type(item).__name__} {brief(item)}, not an "
                             f"nnframe.callbacks.Callback.{hint}")
    return list(value)


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
