"""A layer of the classic design: its nodes' activations and the weights to the next layer."""

from __future__ import annotations

import numpy as np

from . import _validation, ops
from ._text import brief
from .base import Activation
from .errors import InputError, PluginContractError
from .registry import check_contract, get_activation


def resolve_activation(spec) -> Activation | None:
    """A name (looked up in the registry), an Activation object (checked), or None."""
    if spec is None or isinstance(spec, str):
        return None if spec is None else get_activation(spec)
    if isinstance(spec, Activation):
        try:
            check_contract(spec, "activation")
        except PluginContractError as exc:
            raise PluginContractError(f"the activation object {brief(spec)} breaks the contract: "
                                      f"{exc}") from None
        return spec
    raise InputError(f"an activation must be a name such as 'relu', an nnframe.Activation "
                     f"object, or None, got {type(spec).__name__} {brief(spec)}.")


class Layer:
    """`num_nodes_in_layer` nodes and the weights from them to the next layer.

    [NeuralNetwork][nnframe.NeuralNetwork] builds its layers itself; build one directly only
    to experiment.

    Args:
        num_nodes_in_layer: Nodes in this layer (at least 1).
        num_nodes_in_next_layer: Nodes in the next layer; 0 for the output layer, which has
            no weights.
        activation_function: This layer's activation: a name such as `"relu"`, an
            [Activation][nnframe.Activation] object, or `None` (the input layer).
        init: `"glorot"` or `"he"`: the initialisation of the weights to the next layer.
        dtype: `np.float32` or `np.float64`.
        rng: A `numpy.random.Generator`, a non-negative int seed, or `None`.

    Attributes:
        weights_for_layer: `(num_nodes_in_layer, num_nodes_in_next_layer)`; `None` for the
            output layer.
        bias_for_layer: `(1, num_nodes_in_next_layer)`, zeros at first; `None` for the
            output layer.
        activations: This layer's output from the last forward pass (after dropout, when
            the pass was a training one).
        pre_activations: Its input `z` from the last forward pass (`None` for the input
            layer).
        activation_function: The resolved [Activation][nnframe.Activation], or `None`.

    Raises:
        InputError: A size or `rng` is not valid.
        UnknownNameError: The activation name is not registered.
        PluginContractError: The activation object breaks the plugin contract.
    """

    def __init__(self, num_nodes_in_layer: int, num_nodes_in_next_layer: int,
                 activation_function=None, *, init: str = "glorot", dtype=np.float32,
                 rng: np.random.Generator | int | None = None):
        self.num_nodes_in_layer = _validation.positive_int(num_nodes_in_layer,
                                                            "num_nodes_in_layer")
        self.num_nodes_in_next_layer = _validation.positive_int(
            num_nodes_in_next_layer, "num_nodes_in_next_layer", minimum=0)
        self.activation_function = resolve_activation(activation_function)
        self.activations: np.ndarray | None = None
        self.pre_activations: np.ndarray | None = None
        # With dropout in training: the mask applied to the activations, and the values
        # before it (what the activation's backward needs).
        self.dropout_mask: np.ndarray | None = None
        self.kept_activations: np.ndarray | None = None
        self.weights_for_layer: np.ndarray | None = None
        self.bias_for_layer: np.ndarray | None = None
        if self.num_nodes_in_next_layer:
            rng = np.random.default_rng(_validation.seed(rng, "rng"))
            self.weights_for_layer = ops.init_weights(
                rng, self.num_nodes_in_layer, self.num_nodes_in_next_layer, init, dtype)
            self.bias_for_layer = np.zeros((1, self.num_nodes_in_next_layer), dtype=dtype)

    def __repr__(self) -> str:
        act = self.activation_function.name if self.activation_function else None
        return (f"Layer({self.num_nodes_in_layer}, {self.num_nodes_in_next_layer}, "
                f"activation={act!r})")


layer = Layer
