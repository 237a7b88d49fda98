"""Built-in learning-rate schedules: constant, step, exponential, cosine.

Their formulas are those of ``torch.optim.lr_scheduler`` (StepLR, ExponentialLR,
CosineAnnealingLR) applied once per epoch, and each takes an optional linear warmup: over
the first ``warmup`` epochs the rate rises as ``base * (epoch + 1) / (warmup + 1)``, then
the schedule runs from its own epoch 0 (torch: ``SequentialLR([LinearLR(start_factor=1 /
(warmup + 1), total_iters=warmup), schedule], milestones=[warmup])``). tests/test_schedules.py
compares every one with torch.
"""

from __future__ import annotations

import math

from ..configurable import check_number
from ..errors import InputError
from ..hookspecs import hookimpl
from ..schedules import Schedule


class _Warmup(Schedule):
    """A schedule with an optional linear warmup before it."""

    def _check_warmup(self) -> None:
        check_number(self, "warmup", low=0)
        if not isinstance(self.warmup, int):
            raise InputError(f"schedule {self._label()}: warmup must be a whole number of "
                             f"epochs, got {self.warmup!r}")

    def rate(self, base_rate, epoch, num_epochs):
        if epoch < self.warmup:
            return base_rate * (epoch + 1) / (self.warmup + 1)
        return self._after_warmup(base_rate, epoch - self.warmup,
                                  max(num_epochs - self.warmup, 1))

    def _after_warmup(self, base_rate: float, epoch: int, num_epochs: int) -> float:
        raise NotImplementedError


class Constant(_Warmup):
    """The base rate on every epoch (after the warmup)."""

    name = "constant"

    def __init__(self, warmup: int = 0) -> None:
        super().__init__(warmup=warmup)
        self._check_warmup()

    def _after_warmup(self, base_rate, epoch, num_epochs):
        return base_rate


class Step(_Warmup):
    """``base * gamma ** (epoch // step_size)``: ``torch.optim.lr_scheduler.StepLR``."""

    name = "step"
    example_hyperparameters = {"step_size": 3}

    def __init__(self, step_size: int, gamma: float = 0.1, warmup: int = 0) -> None:
        super().__init__(step_size=step_size, gamma=gamma, warmup=warmup)
        check_number(self, "step_size", low=1)
        if not isinstance(self.step_size, int):
            raise InputError(f"schedule {self._label()}: step_size must be a whole number of "
                             f"epochs, got {self.step_size!r}")
        check_number(self, "gamma", low=0, low_open=True)
        self._check_warmup()

    def _after_warmup(self, base_rate, epoch, num_epochs):
        return base_rate * self.gamma ** (epoch // self.step_size)


class Exponential(_Warmup):
    """``base * gamma ** epoch``: ``torch.optim.lr_scheduler.ExponentialLR``."""

    name = "exponential"
    example_hyperparameters = {"gamma": 0.9}

    def __init__(self, gamma: float, warmup: int = 0) -> None:
        super().__init__(gamma=gamma, warmup=warmup)
        check_number(self, "gamma", low=0, low_open=True)
        self._check_warmup()

    def _after_warmup(self, base_rate, epoch, num_epochs):
        return base_rate * self.gamma ** epoch


class Cosine(_Warmup):
    """Cosine annealing from the base rate to ``eta_min`` over ``t_max`` epochs:
    ``eta_min + (base - eta_min) * (1 + cos(pi * epoch / t_max)) / 2``
    (``torch.optim.lr_scheduler.CosineAnnealingLR``). ``t_max=0`` (the default) means the
    epochs of the run that starts the schedule, less the warmup."""

    name = "cosine"

    def __init__(self, t_max: int = 0, eta_min: float = 0.0, warmup: int = 0) -> None:
        super().__init__(t_max=t_max, eta_min=eta_min, warmup=warmup)
        check_number(self, "t_max", low=0)
        if not isinstance(self.t_max, int):
            raise InputError(f"schedule {self._label()}: t_max must be a whole number of "
                             f"epochs (0: the epochs of the run), got {self.t_max!r}")
        check_number(self, "eta_min", low=0)
        self._check_warmup()

    def _after_warmup(self, base_rate, epoch, num_epochs):
        t_max = self.t_max or num_epochs
        return self.eta_min + (base_rate - self.eta_min) * (
            1 + math.cos(math.pi * epoch / t_max)) / 2


BUILTIN_SCHEDULES: tuple[type[Schedule], ...] = (Constant, Step, Exponential, Cosine)


@hookimpl
def register_schedules(register) -> None:
    """Register the built-in schedule classes (``register(cls)`` once each)."""
    for cls in BUILTIN_SCHEDULES:
        register(cls)
