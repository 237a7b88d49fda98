"""The learning-rate schedule plugin contract: `Schedule`.

A schedule gives the learning rate of each epoch from the base rate (`train`'s
``learning_rate``). nnframe instantiates the registered class with the user's
hyperparameters, as it does optimizers (see `nnframe.configurable`). A rate depends only
on the epoch, so a schedule keeps no state: resuming needs only the epoch count, which the
model file records. A third-party schedule::

    import math
    import nnframe

    class InverseSqrt(nnframe.Schedule):
        name = "inverse_sqrt"

        def __init__(self, scale=1.0):
            super().__init__(scale=scale)

        def rate(self, base_rate, epoch, num_epochs):
            return base_rate / math.sqrt(1 + epoch / self.scale)
"""

from __future__ import annotations

from dataclasses import dataclass

from .configurable import Configurable


class Schedule(Configurable):
    """A learning rate per epoch, configured by plain hyperparameters.

    Subclasses set ``name``, declare their hyperparameters as the keyword arguments of
    ``__init__``, pass them all on with ``super().__init__(**hyperparameters)`` and
    implement `rate`.
    """

    kind = "schedule"
    # What the conformance kit builds the class with where a hyperparameter has no default.
    example_hyperparameters: dict = {}

    def rate(self, base_rate: float, epoch: int, num_epochs: int) -> float:
        """The learning rate of one epoch.

        Args:
            base_rate: The base learning rate (`train`'s `learning_rate`).
            epoch: The epoch, counted from 0 at the start of the schedule.
            num_epochs: The epochs the schedule was started for (those of the `train`
                call that started it); `epoch` may go beyond when training continues.

        Returns:
            A positive finite learning rate.
        """
        raise NotImplementedError


@dataclass
class ScheduleRun:
    """A schedule attached to a network: the network epoch it started at and the number of
    epochs it was started for.

    Attributes:
        schedule: The schedule.
        first_epoch: The network's count of completed epochs when it started.
        num_epochs: The epochs of the `train` call that started it.
    """

    schedule: Schedule
    first_epoch: int
    num_epochs: int

    def rate(self, base_rate: float, epoch: int) -> float:
        """The rate of the network's epoch ``epoch`` (its count of completed epochs before
        it)."""
        return self.schedule.rate(base_rate, epoch - self.first_epoch, self.num_epochs)
