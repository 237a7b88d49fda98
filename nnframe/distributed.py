"""Data-parallel training on MPI: ``train(..., distributed=True)`` under ``mpiexec``.

Every rank (process) calls ``train`` with the same arguments. At the start the ranks check
that they agree (rows, batch size, epochs, network, optimizer...) and take rank 0's weights,
optimizer state and shuffling generator, so they start identical. Each global batch, shuffled
exactly as one process would shuffle it, is split into one contiguous share per rank; a rank
reads and computes only its share's rows (dropout masks included: each rank draws the whole
batch's and keeps its rows), and one ``Allreduce`` per batch sums the shares' gradients,
weighted by their rows, together with the loss, the count of correct rows and a fault flag.
Every rank then applies the same update to the same sum, so the weights stay identical, and
the history is the whole data's on every rank. Only rank 0 runs the callbacks marked
``rank_zero_only`` (the progress bar, checkpoints) and saves ``filename``.

Faults never leave a rank waiting. Every collective of a training run is the same
``Allreduce`` over one buffer: the gradients and a few numbers (loss, correct rows, not
finite, stop, failed, a fingerprint of the weights at the end, and a tag naming the
collective, so that ranks out of step fail with a message instead of matching different
collectives). A rank that fails anywhere (a plugin raising, bad rows, divergence, a
callback, Ctrl-C) restores the epoch's start as one process would and joins the collective
the others are waiting in with its failed flag set; then every rank learns the failing rank's
message (``allgather``) and raises: that rank its own error, the others
`RankFailedError` naming it. Divergence is decided from the summed loss, so all ranks restore
and raise together. A rank killed outright ends the job through ``mpiexec``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import threading
import zlib
from typing import Any

import numpy as np

from . import _parallel, ops
from .errors import InputError, NNFrameError, RankFailedError
from .optimizers import Gradients
from .training import Trainer

__all__ = ["RankFailedError", "communicator"]

_INSTALL = "pip install 'nnframe[mpi]' (mpi4py and an mpiexec), then start with mpiexec -n N"
# The numbers after the gradients in the buffer of every collective. "tag" names the
# collective (what it is for, and how many came before), so that ranks out of step (which
# callbacks differing between ranks could cause) fail with a message instead of matching
# different collectives; "weights" is a fingerprint of the weights at the end.
_SLOTS = {"loss": 0, "correct": 1, "nonfinite": 2, "stop": 3, "failed": 4, "tag": 5,
          "weights": 6}
_LOSS, _CORRECT, _NONFINITE, _STOP, _FAILED, _TAG, _WEIGHTS = _SLOTS.values()


def communicator(spec: Any):
    """The MPI communicator for ``train(distributed=spec)``: None for ``False``/``None``,
    ``MPI.COMM_WORLD`` for ``True``, or the mpi4py communicator given.

    Args:
        spec: ``False``, ``None``, ``True`` or an mpi4py communicator.

    Returns:
        The communicator, or None for one process.

    Raises:
        InputError: mpi4py is missing, or ``spec`` is not one of those.
    """
    if spec is None or spec is False:
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise InputError(f"distributed training needs mpi4py, which is not installed "
                         f"({exc}); {_INSTALL}.") from None
    except RuntimeError as exc:  # mpi4py without an MPI library to load
        raise InputError(f"distributed training needs an MPI library, and mpi4py found none "
                         f"({exc}); {_INSTALL}, or load your cluster's MPI.") from None
    if spec is True:
        return MPI.COMM_WORLD
    if isinstance(spec, MPI.Comm) and spec != MPI.COMM_NULL and spec.Is_intra():
        return spec
    raise InputError(f"distributed must be True, False or an mpi4py intracommunicator, got "
                     f"{type(spec).__name__}.")


class Ranks:
    """The ranks of one communicator, and the agreements between them."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.interrupted = False

    @contextlib.contextmanager
    def deferred_interrupts(self):
        """Within: Ctrl-C (mpiexec passes it to every rank) only sets `interrupted`, for
        training to raise at a safe point (`take_interrupt`), never inside an agreement,
        which it would leave half done. The interrupt left over at the end is raised."""
        handler = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            handler = signal.signal(signal.SIGINT, self._interrupt)
        self.interrupted = False
        try:
            yield self
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
        if self.take_interrupt():  # every agreement is over: safe to raise here
            raise KeyboardInterrupt

    def _interrupt(self, signum, frame) -> None:
        self.interrupted = True

    def take_interrupt(self) -> bool:
        """Whether Ctrl-C came since the last call."""
        interrupted, self.interrupted = self.interrupted, False
        return interrupted

    def agree(self, error: BaseException | None, signature: dict | None = None) -> None:
        """Collective: raise on every rank when any rank failed (``error``) or the ranks'
        ``signature`` (what must be equal on all of them) differ; return on all otherwise."""
        said = self.comm.allgather((None if error is None else describe(error), signature))
        failed = [rank for rank, (message, _) in enumerate(said) if message is not None]
        if failed:
            if error is not None:
                raise _agreed(error)
            first = failed[0]
            raise _agreed(RankFailedError(f"rank {first} of {self.size} failed: "
                                          f"{said[first][0]}", first))
        if signature is None:
            return
        mine = said[0][1]
        for rank, (_, theirs) in enumerate(said[1:], start=1):
            for key in mine:
                if theirs.get(key) != mine[key]:
                    raise _agreed(InputError(
                        f"every rank must call train with the same arguments, but {key} is "
                        f"{mine[key]} on rank 0 and {theirs.get(key)} on rank {rank}; give "
                        "every rank the same data (the same arrays, or memmaps of the same "
                        "file) and settings."))

    def broadcast(self, arrays: list[np.ndarray]) -> None:
        """Give every rank rank 0's values of ``arrays`` (in place)."""
        for array in arrays:
            if array.size:
                self.comm.Bcast(np.ascontiguousarray(array) if self.rank == 0 else array,
                                root=0)

    def local_threads(self, current: int | None) -> int:
        """BLAS threads per rank: the cores this rank may use, divided among the ranks of
        the node when each may use all of them (no launcher binding), and never more than
        ``current`` (a limit the user set, OPENBLAS_NUM_THREADS=1...)."""
        from mpi4py import MPI

        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            ranks_here = local.Get_size()
        finally:
            local.Free()
        node = os.cpu_count() or 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else node
        threads = cores // ranks_here if cores >= node else cores  # bound: already its own
        return max(1, min(threads, current or threads))


def agreed(error: BaseException) -> bool:
    """Whether every rank raised together with ``error`` (so no rank is left waiting)."""
    return getattr(error, "_nnframe_agreed", False)


def _agreed(error: BaseException) -> BaseException:
    with contextlib.suppress(AttributeError):  # an exception type with __slots__
        error._nnframe_agreed = True
    return error


def describe(error: BaseException) -> str:
    """One line for another rank: the error's type and message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt, Ctrl-C)"
    text = str(error).strip() or "(no message)"
    if isinstance(error, NNFrameError):
        return text
    return f"{type(error).__name__}: {text}"


def signature(network, x, ids, batch_size: int, num_epochs: int, learning_rate: float,
              run, schedule, validation) -> dict:
    """What every rank's ``train`` call must have in common (the data by its length, its
    labels and a sample of its rows: reading all of it could take long)."""
    optimizer = run.optimizer
    sample = np.unique(np.linspace(0, len(x) - 1, 64).astype(np.int64))
    return {
        "the network": repr(network),
        "the dropout": list(network.dropout),
        "the number of rows": len(x),
        "the labels' checksum": _digest(ids),
        "the sampled rows' checksum": _digest(x[sample]),
        "batch_size": batch_size,
        "num_epochs": num_epochs,
        "learning_rate": learning_rate,
        "the optimizer": f"{optimizer._label()} {sorted(optimizer.hyperparameters.items())}",
        "the schedule": None if schedule is None else (
            f"{schedule.schedule!r} over epochs {schedule.first_epoch + 1}-"
            f"{schedule.first_epoch + schedule.num_epochs}"),
        "the validation rows": None if validation is None else len(validation[1]),
        "the epochs trained": network.epochs,
    }


def _digest(*arrays: np.ndarray) -> str:
    """A short exact fingerprint of the arrays' bytes (NaN and all)."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def synchronise(ranks: Ranks, network, run) -> None:
    """Give every rank rank 0's weights, optimizer state and shuffling generator."""
    arrays = list(network.parameters())
    for state in run.states:
        arrays += [state[key] for key in sorted(state)]
    ranks.broadcast(arrays)
    run.steps[:] = ranks.comm.bcast(run.steps, root=0)
    network._shuffle.bit_generator.state = ranks.comm.bcast(
        network._shuffle.bit_generator.state, root=0)


class DistributedTrainer(Trainer):
    """A `Trainer` whose every batch is split across the ranks of ``ranks``.

    Args:
        ranks: The ranks training together.
        *args: As for `Trainer`.
        **kwargs: As for `Trainer`.
    """

    def __init__(self, ranks: Ranks, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ranks = ranks
        self.rank = ranks.rank
        if ranks.rank != 0:  # the progress bar, checkpoints: rank 0's alone
            self.callbacks = [c for c in self.callbacks
                              if not getattr(c, "rank_zero_only", False)]
            self._batch_callbacks = [c for c in self._batch_callbacks if c in self.callbacks]
        params = self.network.parameters()
        sizes = [p.size for p in params]
        self._size = sum(sizes)
        # One buffer for every collective: the gradients, then the numbers.
        self._buffer = np.zeros(self._size + len(_SLOTS), dtype=self.network.dtype)
        offsets = np.cumsum([0, *sizes])
        self._views = [self._buffer[offsets[i]:offsets[i + 1]].reshape(p.shape)
                       for i, p in enumerate(params)]
        self._numbers = self._buffer[self._size:]
        self._failed = False  # set once the ranks have agreed that training failed
        self._collectives = 0  # so far
        # Tags and fingerprints are integers below this: their sums over the ranks stay
        # exact in float32.
        self._wrap = max(2, (1 << 24) // ranks.size)

    # -- the collective --------------------------------------------------------------------
    def _number(self, text: str) -> int:
        return zlib.crc32(text.encode()) % self._wrap

    def _allreduce(self, kind: str) -> None:
        """Sum the buffer over the ranks; raise `RankFailedError` when a rank failed, and
        an error when the ranks are out of step (at another collective than this one)."""
        from mpi4py import MPI

        self._collectives += 1
        tag = self._number(f"{kind}:{self._collectives}")
        self._numbers[_TAG] = tag
        self.ranks.comm.Allreduce(MPI.IN_PLACE, self._buffer, op=MPI.SUM)
        if self._numbers[_FAILED]:
            self._failed = True
            # Ctrl-C reaches every rank: one interrupted too says so, not "rank 1 failed".
            self.ranks.agree(KeyboardInterrupt() if self.ranks.take_interrupt() else None)
        if self._numbers[_TAG] != tag * self.ranks.size:
            self._failed = True  # every rank sees the same sum, so every rank is here
            raise _agreed(NNFrameError(
                "the ranks fell out of step during distributed training: their train calls "
                "differ in a way the start could not see (a callback given to some ranks "
                "only, or one that stops or changes the weights on some ranks only); give "
                "every rank the same train call."))

    def _announce(self, error: BaseException) -> list:
        """Join the collective the other ranks are in, failed, then share the message;
        what every rank said (those that failed too: the same divergence, say)."""
        from mpi4py import MPI

        self._failed = True
        self._buffer[:] = 0
        self._numbers[_FAILED] = 1
        self.ranks.comm.Allreduce(MPI.IN_PLACE, self._buffer, op=MPI.SUM)
        return self.ranks.comm.allgather((describe(error), type(error).__name__))

    def _agree_numbers(self, kind: str, **numbers: float) -> np.ndarray:
        """A collective carrying only numbers: their sums over the ranks."""
        self._buffer[:] = 0
        for key, value in numbers.items():
            self._numbers[_SLOTS[key]] = value
        self._allreduce(kind)
        return self._numbers

    # -- the seams ---------------------------------------------------------------------------
    def share(self, start: int, stop: int) -> tuple[int, int]:
        rows, rank, size = stop - start, self.ranks.rank, self.ranks.size
        return start + rows * rank // size, start + rows * (rank + 1) // size

    def _check_interrupt(self) -> None:
        """Raise the Ctrl-C caught since the last check, here, before a collective."""
        if self.ranks.take_interrupt():
            raise KeyboardInterrupt

    def step(self, xb, yb, ids, learning_rate, rows):
        self._check_interrupt()
        network, numbers = self.network, self._numbers
        total = rows[1]
        dropout = self.rng if any(network.dropout) else None
        numbers[:] = 0
        gathered = False
        if len(xb):
            out = network._forward(xb, dropout, rows)
            loss = network._loss.loss(out, yb)
            numbers[_LOSS] = loss * len(xb)
            numbers[_CORRECT] = np.count_nonzero(ops.argmax_rows(out) == ids)
            if math.isfinite(loss) and ops.all_finite(network.layers[1].pre_activations):
                self._gather(network._gradients(yb), len(xb) / total)
                gathered = True
            else:
                numbers[_NONFINITE] = 1
        elif dropout is not None:
            network._skip_dropout(dropout, total)
        if not gathered:
            self._buffer[:self._size] = 0
        self._allreduce("step")
        loss = float(numbers[_LOSS]) / total
        correct = round(float(numbers[_CORRECT]))
        if numbers[_NONFINITE] or not math.isfinite(loss):
            return loss, correct, False
        self.apply(self.reduce_gradients(Gradients(arrays=self._views)), learning_rate)
        return loss, correct, True

    def _gather(self, grads: Gradients, weight: float) -> None:
        """Write this rank's gradients into the buffer, weighted by its share of the rows
        (the weight folded into the small error factor, not applied to the sums)."""
        factors = grads.factors
        scale = self.network.dtype.type(weight)
        if factors is None:
            for view, grad in zip(self._views, grads.arrays(), strict=True):
                np.multiply(grad, scale, out=view)
            return
        for layer, (a, delta) in enumerate(factors):
            if weight != 1:
                delta = delta * scale
            np.matmul(a.T, delta, out=self._views[2 * layer])
            self._views[2 * layer + 1][0] = ops.column_sums(delta)

    def validate(self) -> tuple[float, float]:
        network = self.network
        vdata, vx, vy, vids = self.validation
        lo, hi = self.share(0, len(vx))
        loss = correct = 0.0
        if hi > lo:
            try:
                vout = network._validation_outputs(vdata, vx[lo:hi])
            except NNFrameError:
                network._validation_outputs(vdata, vx)  # explained with the data's row numbers
                raise  # pragma: no cover - the whole data fails as its share did
            loss = float(network._loss.loss(vout, vy[lo:hi])) * (hi - lo)
            correct = np.count_nonzero(ops.argmax_rows(vout) == vids[lo:hi])
        numbers = self._agree_numbers("validation", loss=loss, correct=correct)
        return (float(numbers[_LOSS]) / len(vx),
                100.0 * round(float(numbers[_CORRECT])) / len(vx))

    def _notify(self, method, state, callbacks=None) -> None:
        super()._notify(method, state, callbacks)
        if method == "on_train_begin":  # a stop asked for now is every rank's
            self.stop_requested = bool(self._agree_numbers("begin",
                                                           stop=self.stop_requested)[_STOP])

    def _end_epoch(self, epoch, history) -> None:
        super()._end_epoch(epoch, history)
        self._check_interrupt()
        # A callback on any rank may have asked to stop: then every rank stops.
        self.stop_requested = bool(self._agree_numbers("epoch end",
                                                       stop=self.stop_requested)[_STOP])

    # -- the run -------------------------------------------------------------------------------
    def fit(self, x, y, ids):
        previous = None
        try:
            previous = _parallel.get_blas_threads()
            if previous is not None:
                _parallel.set_blas_threads(self.ranks.local_threads(previous))
            history = super().fit(x, y, ids)
            self._check_interrupt()
            # on_train_end may have failed on a rank; and the weights must be identical, or
            # a callback changed them on some ranks only.
            weights = self._number(_digest(*self.network.parameters()))
            if self._agree_numbers("end", weights=weights)[_WEIGHTS] != weights * self.ranks.size:
                self._failed = True
                raise _agreed(NNFrameError(
                    "the ranks ended distributed training with different weights: a callback "
                    "changed them on some ranks only (such as EarlyStopping with "
                    "restore_best_weights given to rank 0 alone); give every rank the same "
                    "callbacks."))
            return history
        except BaseException as error:
            if not self._failed:
                said = self._announce(error)
                better = _most_specific(error, said)
                if better is not None:
                    raise _agreed(better) from error
            _agreed(error)
            raise
        finally:
            if previous is not None:
                _parallel.set_blas_threads(previous)


def _most_specific(error: BaseException, said: list) -> BaseException | None:
    """When every rank diverged together, the error of the rank that found the cause (an
    input too large, a plugin's NaN) rather than its own generic one; None to keep it."""
    from .errors import PluginRuntimeError, TrainingDivergedError

    if not isinstance(error, TrainingDivergedError):
        return None
    kinds = {"InputError": InputError, "PluginRuntimeError": PluginRuntimeError}
    for message, kind in said:
        if kind in kinds and message is not None:
            return kinds[kind](message)
    return None
