"""nnframe: a small multilayer-perceptron framework on NumPy whose building blocks are plugins.

Importing nnframe does no plugin work; plugins load on the first name lookup.
"""

from .base import Activation, Cost
from .errors import (
    DataError,
    DuplicateNameError,
    InputError,
    MissingPluginError,
    ModelFileError,
    NNFrameError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    PluginWarning,
    TrainingDivergedError,
    UnknownNameError,
    UnsafeModelError,
)
from .hookspecs import hookimpl
from .registry import (
    get_activation,
    get_cost,
    list_activations,
    list_costs,
    plugin_failures,
    reload_plugins,
)

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "Cost",
    "DataError",
    "DuplicateNameError",
    "InputError",
    "MissingPluginError",
    "ModelFileError",
    "NNFrameError",
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "PluginWarning",
    "TrainingDivergedError",
    "UnknownNameError",
    "UnsafeModelError",
    "__version__",
    "get_activation",
    "get_cost",
    "hookimpl",
    "list_activations",
    "list_costs",
    "plugin_failures",
    "reload_plugins",
]
