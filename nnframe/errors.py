"""Every exception nnframe raises on purpose.

All of them derive from [NNFrameError][nnframe.errors.NNFrameError], so
`except nnframe.NNFrameError` catches anything nnframe reports about bad input, plugins or
model files. Each is also importable from `nnframe` itself.
"""

from __future__ import annotations


class NNFrameError(Exception):
    """Base class of every error nnframe raises deliberately."""


class PluginError(NNFrameError):
    """A plugin could not be loaded or broke the plugin contract."""


class PluginLoadError(PluginError):
    """A plugin failed to import or to register (raised only in strict mode)."""


class PluginContractError(PluginError, TypeError):
    """A registered object does not satisfy the Activation or Cost contract."""


class PluginRuntimeError(PluginError):
    """A plugin raised, or broke the contract, while a network was running."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same activation or cost name."""


class UnknownNameError(NNFrameError, LookupError):
    """No activation or cost is registered under the requested name.

    Subclasses `LookupError` (not `KeyError`, which would quote the message).

    Args:
        message: The full message.
        name: The name that was looked up.
        kind: `"activation"` or `"cost"`.
        available: The registered names of that kind.
        suggestion: The closest registered name, or `None`.
    """

    def __init__(self, message: str, *, name: str = "", kind: str = "",
                 available: tuple[str, ...] = (), suggestion: str | None = None):
        super().__init__(message)
        self.name = name
        self.kind = kind
        self.available = available
        self.suggestion = suggestion

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(NNFrameError, ValueError):
    """An argument (array, size, rate, label...) is not what nnframe expects."""


class ModelFileError(NNFrameError, ValueError):
    """A model file is missing, unreadable, corrupt or not an nnframe model."""


class UnsafeModelError(ModelFileError):
    """A model file would run code on load; refused unless `trusted=True`."""


class MissingPluginError(ModelFileError, LookupError):
    """A saved model needs an activation or cost that is not installed."""


class TrainingDivergedError(NNFrameError, ArithmeticError):
    """Training produced a non-finite loss or weights.

    The weights are restored to the start of the epoch that diverged.

    Args:
        message: The full message: where it diverged, and what to try.
        epoch: The epoch that diverged, from 1.
        batch: The batch that diverged, from 1.
    """

    def __init__(self, message: str, *, epoch: int, batch: int):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class DeviceUnavailableError(NNFrameError, RuntimeError):
    """A device was asked for that this machine cannot use: CuPy is not installed, or no
    CUDA GPU is visible. The message says what to install or check."""


class RankFailedError(NNFrameError):
    """Another rank of a distributed training run failed; every other rank raises this
    (the failing rank raises its own error), after restoring the epoch's start.

    Args:
        message: What failed, with the failing rank's own message.
        rank: The rank that failed first.

    Attributes:
        rank: The rank that failed first.
    """

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


class DataError(NNFrameError, ValueError):
    """A dataset file is missing, truncated, corrupt or fails its checksum."""


class PluginWarning(UserWarning):
    """A plugin failed to load or was rejected; everything else still loaded."""


class EnvironmentWarning(UserWarning):
    """An `NNFRAME_*` environment variable holds a value nnframe does not understand."""
