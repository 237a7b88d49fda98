"""nnframe: a small multilayer-perceptron framework on NumPy whose building blocks are plugins.

Importing nnframe does no plugin work; plugins load on the first name lookup.
"""

from . import backend, callbacks
from .base import Activation, Cost
from .errors import (
    DataError,
    DeviceUnavailableError,
    DuplicateNameError,
    EnvironmentWarning,
    InputError,
    MissingPluginError,
    ModelFileError,
    NNFrameError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    PluginRuntimeError,
    PluginWarning,
    RankFailedError,
    TrainingDivergedError,
    UnknownNameError,
    UnsafeModelError,
)
from .hookspecs import hookimpl
from .layer import Layer, layer
from .network import NeuralNetwork, TrainingState, neural_network
from .optimizers import Optimizer
from .persistence import load
from .registry import (
    get_activation,
    get_cost,
    get_optimizer,
    get_schedule,
    list_activations,
    list_costs,
    list_optimizers,
    list_schedules,
    plugin_failures,
    reload_plugins,
)
from .schedules import Schedule

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "Cost",
    "DataError",
    "DeviceUnavailableError",
    "DuplicateNameError",
    "EnvironmentWarning",
    "InputError",
    "Layer",
    "MissingPluginError",
    "ModelFileError",
    "NNFrameError",
    "NeuralNetwork",
    "Optimizer",
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "PluginRuntimeError",
    "PluginWarning",
    "RankFailedError",
    "Schedule",
    "TrainingDivergedError",
    "TrainingState",
    "UnknownNameError",
    "UnsafeModelError",
    "__version__",
    "backend",
    "callbacks",
    "get_activation",
    "get_cost",
    "get_optimizer",
    "get_schedule",
    "hookimpl",
    "layer",
    "list_activations",
    "list_costs",
    "list_optimizers",
    "list_schedules",
    "load",
    "neural_network",
    "plugin_failures",
    "reload_plugins",
]
