"""Where a network's arrays live: the host (NumPy) or a CUDA GPU (CuPy).

One [Backend][nnframe.backend.Backend] object per device holds everything that differs
between them: the array module (``xp``), moving arrays to the device (``asarray``) and back
(``to_host``, always explicit), and the kernels of training and inference. The NumPy
backend keeps nnframe's BLAS-fused kernels (`nnframe.ops`, `nnframe._blas`); on the GPU the
same maths is plain ``@`` and CuPy's elementwise kernels.

Everything else is shared: plugins are written with ``np.*`` calls, which CuPy arrays
dispatch to CuPy through NumPy's ``__array_ufunc__`` and ``__array_function__`` protocols.

Device names: ``"cpu"`` (the default) and ``"cuda"`` (the current CUDA device, through CuPy:
``pip install 'nnframe[cuda12]'`` or ``'nnframe[cuda13]'``). The name ``"standin"`` is for
nnframe's own tests only: a CuPy look-alike on the host (`nnframe._standin`) that refuses
implicit conversion to NumPy, so that a CPU test fails where a GPU run would copy.
"""

from __future__ import annotations

import difflib
import importlib

import numpy as np

from . import ops
from ._text import brief
from .errors import DeviceUnavailableError, InputError

DEVICES = ("cpu", "cuda")
_TESTING_DEVICES = ("standin",)
CUDA_INSTALL = ("pip install 'nnframe[cuda12]' (CUDA 12) or pip install 'nnframe[cuda13]' "
                "(CUDA 13)")
_backends: dict[str, Backend] = {}


class Backend:
    """The arrays of one device and the kernels that run on them.

    Attributes:
        name: The device name (`"cpu"` or `"cuda"`).
        xp: The array module: `numpy`, or `cupy`.
        array_type: The class of its arrays (`numpy.ndarray`, `cupy.ndarray`).
        is_host: True when its arrays are NumPy arrays in host memory.
    """

    name = "cpu"
    is_host = True

    def __init__(self) -> None:
        self.xp = np
        self.array_type = np.ndarray

    def __repr__(self) -> str:
        return f"<nnframe backend {self.name!r}>"

    # -- arrays --------------------------------------------------------------------------
    def asarray(self, x, dtype=None):
        """``x`` (host data or an array of this device) as an array of this device, copied
        only where it must be (another device, another dtype).

        Args:
            x: A NumPy array, array-like, or an array of this device.
            dtype: The dtype wanted, or `None` to keep `x`'s.

        Returns:
            An array of this device.
        """
        return np.asarray(x, dtype=dtype)

    def to_host(self, x) -> np.ndarray:
        """``x`` as a NumPy array: the array itself on the host, an explicit copy from a
        device.

        Args:
            x: An array of this device (or a NumPy array).

        Returns:
            A NumPy array.
        """
        return np.asarray(x)

    def owns(self, x) -> bool:
        """Whether `x` is an array of this device.

        Args:
            x: Anything.

        Returns:
            True for an array of this device (a NumPy array for the CPU).
        """
        return isinstance(x, self.array_type)

    def synchronize(self) -> None:
        """Wait until the device has finished the work queued so far (for timing); nothing
        to wait for on the CPU."""

    # -- kernels -------------------------------------------------------------------------
    def affine(self, a, weights, bias):
        """A layer's weighted sums (`nnframe.ops.affine`: BLAS-fused on the CPU).

        Args:
            a: The layer's inputs, `(rows, fan_in)`.
            weights: `(fan_in, fan_out)`.
            bias: `(1, fan_out)`.

        Returns:
            `a @ weights + bias`, a new array.
        """
        return ops.affine(a, weights, bias)

    def dropout_source(self, rng: np.random.Generator):
        """What dropout masks are drawn from, for a network's shuffling generator.

        Args:
            rng: The network's shuffling generator.

        Returns:
            An object with `random(shape, dtype=...)` giving arrays of this device: on the
                CPU `rng` itself; on a GPU a device generator seeded from `rng`'s state
                (without advancing it), one per generator.
        """
        return rng


class _ArrayModuleBackend(Backend):
    """A device whose array module follows NumPy's interface (CuPy, or the stand-in)."""

    is_host = False

    def __init__(self, name: str, xp) -> None:
        self.name = name
        self.xp = xp
        self.array_type = xp.ndarray
        # Dropout masks are drawn on the device, from a generator seeded by (and kept with)
        # the shuffling generator, without advancing it: the shuffle stays the CPU run's.
        # One pair at a time (the network being trained), so that the device generators
        # of earlier trainings are freed.
        self._source: tuple[np.random.Generator, object] | None = None

    def asarray(self, x, dtype=None):
        if isinstance(x, self.array_type):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        if not isinstance(x, np.ndarray) and _foreign_device_array(x):
            raise InputError(f"an array of another device ({type(x).__module__}."
                             f"{type(x).__name__}) cannot be used on {self.name!r}; move it "
                             "to the host first.")
        return self.xp.asarray(np.asarray(x, dtype=dtype))

    def to_host(self, x) -> np.ndarray:
        if isinstance(x, self.array_type):
            return self.xp.asnumpy(x)
        return np.asarray(x)

    def synchronize(self) -> None:
        self.xp.cuda.Device().synchronize()

    def affine(self, a, weights, bias):
        z = a @ weights
        z += bias
        return z

    def dropout_source(self, rng: np.random.Generator):
        kept = self._source
        if kept is None or kept[0] is not rng:
            kept = self._source = (rng, self.xp.random.default_rng(_seed_of(rng)))
        return kept[1]


class _StandinBackend(_ArrayModuleBackend):
    """The stand-in device of the tests: dropout masks come from the shuffling generator
    itself, as on the CPU, so that a stand-in run equals the CPU run exactly."""

    def dropout_source(self, rng: np.random.Generator):
        return self.xp.random.default_rng(rng)


def _seed_of(rng: np.random.Generator) -> int:
    """A seed for the device generator of ``rng``, read from its state (never advancing it)."""
    state = rng.bit_generator.state.get("state", {})
    value = state.get("state", 0) if isinstance(state, dict) else 0
    return int(value) % 2**63


def _foreign_device_array(x) -> bool:
    return any(isinstance(x, b.array_type) for b in _backends.values() if not b.is_host)


# -- choosing a device -------------------------------------------------------------------------
def get_backend(device: str | Backend = "cpu") -> Backend:
    """The backend of a device name.

    Args:
        device: `"cpu"` or `"cuda"` (or a backend, returned as it is).

    Returns:
        The [Backend][nnframe.backend.Backend], one per device for the whole process.

    Raises:
        InputError: `device` is not a device name.
        DeviceUnavailableError: `"cuda"` was asked for but CuPy is not installed, or no CUDA
            GPU is visible; the message says what to install or check.
    """
    if isinstance(device, Backend):
        return device
    if not isinstance(device, str):
        raise InputError(f"device must be a name such as 'cpu' or 'cuda', got "
                         f"{type(device).__name__} {brief(device)}.")
    name = device.strip().lower()
    found = _backends.get(name)
    if found is not None:
        return found
    if name == "cpu":
        backend = Backend()
    elif name == "cuda":
        backend = _ArrayModuleBackend("cuda", _cupy())
    elif name == "standin":
        from . import _standin

        backend = _StandinBackend("standin", _standin.namespace)
    else:
        close = difflib.get_close_matches(name, [*DEVICES, "gpu"], n=1)
        hint = ""
        if close:
            hint = " Did you mean 'cuda'?" if close[0] == "gpu" else f" Did you mean {close[0]!r}?"
        raise InputError(f"device {brief(device)} is not a device nnframe knows; use 'cpu' "
                         f"(NumPy, the default) or 'cuda' (a CUDA GPU through CuPy).{hint}")
    _backends[name] = backend
    return backend


def _cupy():
    """CuPy, checked to see a GPU; a DeviceUnavailableError saying what is missing."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceUnavailableError(
            f"device='cuda' needs CuPy, which is not installed here ({exc}). Install the "
            f"build for your CUDA version: {CUDA_INSTALL}; `nvidia-smi` shows the CUDA "
            "version of the driver. Or use device='cpu'.") from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, no device
        raise DeviceUnavailableError(
            f"device='cuda': CuPy is installed but sees no CUDA GPU ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Check `nvidia-smi`, CUDA_VISIBLE_DEVICES and that the CuPy "
            f"build matches the driver ({CUDA_INSTALL}); or use device='cpu'.") from None
    if count < 1:
        raise DeviceUnavailableError(
            "device='cuda': CuPy is installed but no CUDA GPU is visible (0 devices). Check "
            "`nvidia-smi` and CUDA_VISIBLE_DEVICES; or use device='cpu'.")
    try:  # an elementwise kernel (NVRTC) and a product (cuBLAS): the toolkit is complete
        ((cupy.arange(4, dtype=np.float32) + 1) @ cupy.ones((4, 1), np.float32)).get()
    except Exception as exc:
        raise DeviceUnavailableError(
            f"device='cuda': CuPy sees a GPU but cannot run on it ({type(exc).__name__}: "
            f"{str(exc)[:200]}); the CUDA libraries CuPy needs (NVRTC, cuBLAS) are probably "
            f"missing: {CUDA_INSTALL} installs them with CuPy.") from None
    return cupy


def backend_of(x) -> Backend:
    """The backend whose array ``x`` is: a device's for its arrays, the CPU's for anything
    else (NumPy arrays, lists)."""
    for backend in _backends.values():
        if not backend.is_host and isinstance(x, backend.array_type):
            return backend
    return get_backend("cpu")


def is_array(x) -> bool:
    """True for a NumPy array or an array of any device in use."""
    return isinstance(x, np.ndarray) or any(
        isinstance(x, b.array_type) for b in _backends.values() if not b.is_host)


def is_device_array(x) -> bool:
    """True for an array of a device (not the host)."""
    return any(isinstance(x, b.array_type) for b in _backends.values() if not b.is_host)


__all__ = ["DEVICES", "Backend", "backend_of", "get_backend", "is_array", "is_device_array"]
