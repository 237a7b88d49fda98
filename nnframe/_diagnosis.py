"""What went wrong, and whose fault it is: the errors of training and inference.

The hot loops carry no checks of their own. When something fails (an exception, a NaN, an
array of the wrong shape), the functions here replay the failing rows layer by layer to find
the plugin at fault (an activation, the cost or the optimizer, named with the package that
provides it), the input row that overflows, or else say that training diverged. They take
the network as an argument; the network class only computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np

from . import _validation, backend, ops
from ._text import brief
from .base import Activation, Cost
from .errors import InputError, NNFrameError, PluginRuntimeError, TrainingDivergedError


class ShapeBreach(Exception):
    """A plugin returned an array of the wrong shape; turned into a PluginRuntimeError."""

    def __init__(self, obj):
        super().__init__(f"{brief(obj)} returned an array of the wrong shape")


def provider_of(obj) -> str:
    """``"distribution version"`` of the plugin that provides ``obj``, for messages."""
    from .registry import provider_of as lookup

    provider = lookup(obj)
    return f"{provider.distribution} {provider.version}" if provider else "not an installed plugin"


def guarded(network, context: str, x: np.ndarray, targets, fn, *args):
    """Call ``fn``; if a plugin breaks it, raise an error naming that plugin."""
    try:
        return fn(*args)
    except NNFrameError:
        raise
    except Exception as exc:
        blame_plugin(network, exc, x, targets, f"{context} failed")


def blame_plugin(network, exc: Exception, x, targets, context: str, note: str = "",
                 before_raise: Callable[[], None] | None = None) -> NoReturn:
    """Re-raise ``exc`` as a PluginRuntimeError naming the plugin that broke the contract on
    ``x``, or unchanged when no plugin is at fault."""
    culprit = find_faulty_plugin(network, x, targets)
    if culprit is None:
        raise exc
    if before_raise is not None:
        before_raise()
    raise PluginRuntimeError(f"{context}: {culprit}.{note} Run `nnframe plugins --check` "
                             "to test installed plugins.") from exc


def plugin_fault(obj, exc: Exception, context: str, note: str = "",
                 method: str = "update") -> NoReturn:
    """Raise the error for an exception from a configured plugin's code (an optimizer's or a
    schedule's ``method``), naming the plugin and its package."""
    where = f"{context}: " if context else ""
    raise PluginRuntimeError(
        f"{where}the {obj.kind} {obj._label()} ({provider_of(obj)}) raised "
        f"{type(exc).__name__} in {method}: {str(exc)[:200]}.{note} Run "
        "`nnframe plugins --check` to test installed plugins.") from exc


def find_faulty_plugin(network, x: np.ndarray, targets: np.ndarray | None) -> str | None:
    """After an exception, replay ``x`` layer by layer to find the plugin at fault."""
    def who(obj) -> str:
        kind = "cost" if isinstance(obj, Cost) else "activation"
        return f"the {kind} {brief(obj.name)} ({provider_of(obj)})"

    def raised(obj, exc: Exception, method: str) -> str:
        message = f"{who(obj)} raised {type(exc).__name__} in {method}: {exc}"
        if not network._backend.is_host:
            message += (f" (on the device {network.device!r} a plugin must compute with np.* "
                        "calls on the arrays it is given: no np.asarray, no host arrays, no "
                        "where=; see 'GPU-safe plugins' in the plugin docs)")
        return message

    def bad_shape(obj, what, out, shape) -> str | None:
        if backend.is_array(out) and out.shape == shape:
            if isinstance(out, np.ndarray) and not network._backend.is_host:
                return (f"{who(obj)} {what} returned a host NumPy array for device arrays "
                        f"({network.device}); it must compute on the arrays it is given")
            return None
        got = getattr(out, "shape", type(out).__name__)
        return f"{who(obj)} {what} returned {got} for an input of shape {shape}"

    if not network._backend.is_host:  # host rows (inference blocks) replay on the device
        x = network._backend.asarray(x, network.dtype)
    with np.errstate(all="ignore"):
        a, trace = x, []
        for layer, nxt in zip(network.layers[:-1], network.layers[1:], strict=True):
            z = ops.affine(a, layer.weights_for_layer, layer.bias_for_layer)
            act = nxt.activation_function
            try:
                out = act.forward(z)
            except Exception as exc:
                return raised(act, exc, "forward")
            if problem := bad_shape(act, "forward", out, z.shape):
                return problem
            trace.append((act, z, out))
            a = out
        if targets is None or len(targets) != len(a):
            return None
        loss = network._loss
        try:
            grad = loss.gradient(a, targets)
        except Exception as exc:
            return raised(loss, exc, "gradient")
        if problem := bad_shape(loss, "gradient", grad, a.shape):
            return problem
        for act, z, out in reversed(trace):
            try:
                result = act.backward(z, out, np.ones_like(out))
            except Exception as exc:
                return raised(act, exc, "backward")
            if problem := bad_shape(act, "backward", result, z.shape):
                return problem
    return None


def first_nonfinite(network, x: np.ndarray, rows: np.ndarray | None = None):
    """Replay the forward pass of finite rows of ``x`` (all, or ``rows``), quietly, layer by
    layer: ``(what, row, layer)`` for the first row (an index into ``x``) whose pass is not
    finite, where ``what`` is ``"sums"`` when layer ``layer``'s weighted sums overflow and
    ``"activation"`` when its activation returned NaN or infinity for finite sums; None when
    every row stays finite. Only run after a failure."""
    index = np.arange(len(x)) if rows is None else np.asarray(rows)
    device = network._backend
    with np.errstate(all="ignore"):
        for start in range(0, len(index), ops.INFERENCE_CHUNK):
            block = index[start:start + ops.INFERENCE_CHUNK]
            a = x[device.asarray(block)] if device.owns(x) else device.asarray(x[block])
            for k in range(1, len(network.layers)):
                layer, nxt = network.layers[k - 1], network.layers[k]
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


def explain_nonfinite(network, data, x: np.ndarray, name: str) -> NoReturn:
    """Raise the error for a forward pass of ``x`` (``data`` converted) that was not finite:
    NaN or infinity in the data, values too large for the dtype, or finite inputs whose
    weighted sums overflow in the network (replayed to find the row)."""
    _validation.explain_nonfinite(data, name, network.dtype, converted=x)
    found = first_nonfinite(network, x)
    if found is None:  # pragma: no cover - the replay repeats the pass that failed
        raise NNFrameError(f"the forward pass of {name} was not finite.")
    what, row, layer = found
    if what == "activation":
        act = network.layers[layer].activation_function
        raise PluginRuntimeError(
            f"the activation {brief(act.name)} ({provider_of(act)}) returned NaN or infinity "
            f"for finite inputs ({name} row {row}); fix or replace the plugin that "
            "provides it.")
    if not ops.all_finite(*network.parameters()):
        raise NNFrameError("the network's weights are not finite (NaN or infinity); "
                           "train it again or load a saved model.")
    raise InputError(_validation.overflow_message(name, row, layer, x[row], network.dtype))


def nonfinite_activation(network) -> Activation | None:
    """The activation whose stored output is not finite for finite inputs, if any."""
    for layer in network.layers[1:]:
        z, a = layer.pre_activations, layer.activations
        if z is not None and a is not None and ops.all_finite(z) and not ops.all_finite(a):
            return layer.activation_function
    return None


def diverged(network, epoch: int, batch: int, num_batches: int, learning_rate: float,
             restore: Callable[[], None], what: str, x: np.ndarray, rows) -> NoReturn:
    """Restore the start of the epoch (``restore``) and raise, naming the culprit if any: a
    plugin activation, inputs (``x[rows]``) too large for the dtype, or training."""
    culprit = nonfinite_activation(network)
    restore()
    if culprit is None:
        # Inputs whose first weighted sums overflow even with the restored weights are
        # what predict would refuse too: the data's fault, not the training's.
        found = first_nonfinite(network, x, rows)
        if found is not None and found[0] == "sums" and found[2] == 1:
            row = found[1]
            raise InputError(_validation.overflow_message("inputs", row, 1, x[row],
                                                          network.dtype)
                             + f" Training stopped at epoch {epoch}; the weights are "
                             f"restored to the start of epoch {epoch}.")
    if culprit is not None:
        advice = (f"the activation {brief(culprit.name)} returned NaN or infinity for finite "
                  f"inputs; fix or replace the plugin that provides it "
                  f"({provider_of(culprit)})")
    else:
        optimizer = network.optimizer
        using = "" if optimizer is None else f" with the optimizer {optimizer._label()}"
        advice = (f"try a smaller learning_rate (now {learning_rate:g}{using}) or scale the "
                  "inputs to about [0, 1]")
    raise TrainingDivergedError(
        f"training diverged at epoch {epoch}, batch {batch} of {num_batches}: {what}. "
        f"The weights are restored to the start of epoch {epoch}; {advice}.",
        epoch=epoch, batch=batch)
