"""Every hook a plugin can implement.

A plugin is a module (or any object) with functions decorated by ``nnframe.hookimpl`` whose
names match the hooks below. Declare the module under the ``nnframe`` entry-point group of
your distribution and nnframe finds it after ``pip install``::

    [project.entry-points.nnframe]
    softsign = "nnframe_softsign"

Each hook receives a ``register`` callback; call it once per object you provide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .base import Activation, Cost
    from .optimizers import Optimizer
    from .schedules import Schedule

hookspec = pluggy.HookspecMarker("nnframe")
hookimpl = pluggy.HookimplMarker("nnframe")


@hookspec
def register_activations(register: Callable[[Activation], None]) -> None:
    """Register activation functions.

    Call ``register(activation)`` once for each instance of a ``nnframe.Activation``
    subclass that your plugin provides. The instance's ``name`` attribute is the name users
    pass to ``NeuralNetwork`` (for example ``"softsign"``). Return nothing.
    """


@hookspec
def register_costs(register: Callable[[Cost], None]) -> None:
    """Register cost (loss) functions.

    Call ``register(cost)`` once for each instance of a ``nnframe.Cost`` subclass that your
    plugin provides. The instance's ``name`` attribute is the name users pass as
    ``cost_function`` (for example ``"huber"``). Return nothing.
    """


@hookspec
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    """Register optimizers.

    Call ``register(OptimizerClass)`` once for each ``nnframe.Optimizer`` subclass that your
    plugin provides: the class itself, not an instance, because nnframe instantiates it with
    the user's hyperparameters (``nnframe.get_optimizer("lion", beta1=0.95)``). The class's
    ``name`` attribute is the name users ask for. Return nothing.
    """


@hookspec
def register_schedules(register: Callable[[type[Schedule]], None]) -> None:
    """Register learning-rate schedules.

    Call ``register(ScheduleClass)`` once for each ``nnframe.Schedule`` subclass that your
    plugin provides: the class itself, which nnframe instantiates with the user's
    hyperparameters (``nnframe.get_schedule("step", step_size=10)``). The class's ``name``
    attribute is the name users ask for. Return nothing.
    """
