"""Saving and loading networks as ``.pkl`` files written with dill, safe by default.

The file holds plain data only (dicts, lists, strings, numbers, bytes): a format version,
the architecture, the names of the activations and cost with the distribution and version
that provided each, the weights as raw little-endian bytes, and the training history. It
never holds the Python objects of installed plugins, so it survives refactors and says which
package to install.

``load`` scans the pickle's opcodes before unpickling and refuses any that could import or
call something; the unpickler itself also refuses every global. The scan also follows the
shape of the data, so that what it lets through loads and is checked in time and memory
linear in the file's size: no sets, only string dict keys, no container referenced twice
(the memo may share strings only), integers of at most 64 bits, strings of at most
``MAX_STRING_CHARS`` characters, nesting at most ``MAX_DEPTH`` deep and at most
``MAX_VALUES`` values in all. ``trusted=True`` (a real bool) switches to a full dill load,
needed only for networks whose activation or cost objects were defined in the user's own
code (``save`` embeds those by value and marks them as code).

Every message that shows a value read from a file goes through `nnframe._text.brief`.
"""

from __future__ import annotations

import importlib.metadata
import io
import pickle
import pickletools
import re
from pathlib import Path

import dill
import numpy as np

from . import _files, _validation
from ._text import brief
from .base import Activation, Cost
from .errors import (
    InputError,
    MissingPluginError,
    ModelFileError,
    NNFrameError,
    UnknownNameError,
    UnsafeModelError,
)

FORMAT = "nnframe-model"
FORMAT_VERSION = 1
# Weights are stored little-endian, by dtype name.
DTYPES = {dtype.name: dtype.newbyteorder("<").str for dtype in _validation.DTYPES}
# The largest model file load reads (2 billion float32 weights); checked before reading.
MAX_FILE_BYTES = 8 * 2**30

# Bounds on what a file may describe, checked while scanning, before anything is built. The
# real format nests 4 deep, holds a few hundred values plus one per epoch of history, and
# short names; these leave ample room while keeping load linear in the file's size.
MAX_DEPTH = 32
MAX_VALUES = 2**20
MAX_STRING_CHARS = 1024
MAX_NAME_CHARS = 200  # activation, cost and distribution names
_INT_LIMIT = 2**63  # integers must lie in [-2**63, 2**63)

# Opcodes that build plain data. Anything else (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST,
# OBJ, NEWOBJ, EXT*, PERSID, out-of-band buffers...) could import or call code.
_SCALAR_OPS = frozenset("""
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    BINBYTES SHORT_BINBYTES BINBYTES8
""".split())
_STRING_OPS = frozenset("STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE "
                        "SHORT_BINUNICODE BINUNICODE8".split())
_EMPTY_OPS = {"EMPTY_LIST": "list", "EMPTY_DICT": "dict", "EMPTY_TUPLE": "tuple"}
_MARK_OPS = {"LIST": "list", "DICT": "dict", "TUPLE": "tuple"}
_TUPLE_OPS = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
PLAIN_OPCODES = frozenset({"PROTO", "FRAME", "STOP", "MARK", "APPEND", "APPENDS", "SETITEM",
                           "SETITEMS"}
                          | _SCALAR_OPS | _STRING_OPS | set(_EMPTY_OPS) | set(_MARK_OPS)
                          | set(_TUPLE_OPS) | _PUT_OPS | _GET_OPS)
# Harmless opcodes the format never uses, refused as not nnframe data: sets can be built to
# load in quadratic time (values that all hash alike), and pickle emits POP, POP_MARK and
# DUP only for recursive structures.
_NOT_IN_FORMAT = {"EMPTY_SET": "a set", "ADDITEMS": "a set", "FROZENSET": "a frozenset",
                  "POP": "the opcode POP", "POP_MARK": "the opcode POP_MARK",
                  "DUP": "the opcode DUP"}

_TRUST_HINT = ("nnframe model files hold only plain data, so this file was not written by "
               "nnframe.save or was changed since. Nothing was executed. Load it with "
               "trusted=True only if you trust whoever made it.")


# -- saving ------------------------------------------------------------------------------
def _plugin_record(obj: Activation | Cost) -> dict:
    from .registry import provider_of

    provider = provider_of(obj)
    if provider is not None:
        return {"name": obj.name, "distribution": provider.distribution,
                "version": provider.version, "embedded": None}
    # Not provided by an installed plugin (for example defined in the user's session):
    # embed it by value; loading it then needs trusted=True.
    return {"name": obj.name, "distribution": None, "version": None,
            "embedded": dill.dumps(obj, recurse=True)}


def _host(array) -> np.ndarray:
    """A weight or state array on the host (copied there from a device, explicitly)."""
    from .backend import backend_of

    return backend_of(array).to_host(array)


def _device_copy(like, array: np.ndarray):
    """``array`` moved to the device of ``like``."""
    from .backend import backend_of

    return backend_of(like).asarray(array)


def _array_record(array: np.ndarray, dtype: str) -> dict:
    return {"shape": list(array.shape),
            "data": np.ascontiguousarray(_host(array), dtype=DTYPES[dtype]).tobytes()}


def to_payload(network) -> dict:
    from . import __version__

    dtype = network.dtype.name
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nnframe_version": __version__,
        "num_nodes": list(network.num_nodes),
        "dtype": dtype,
        "activations": [None] + [_plugin_record(layer.activation_function)
                                 for layer in network.layers[1:]],
        "cost": _plugin_record(network.cost),
        "weights": [_array_record(layer.weights_for_layer, dtype)
                    for layer in network.layers[:-1]],
        "biases": [_array_record(layer.bias_for_layer, dtype) for layer in network.layers[:-1]],
        "history": {k: [float(v) for v in values] for k, values in network.history.items()},
        "learning_rate": network.learning_rate,
        "optimizer": _optimizer_record(network),
        "shuffle": _generator_record(network._shuffle),
        "epochs": network.epochs,
        "dropout": list(network.dropout),
        "schedule": _schedule_record(network),
        "metadata": _plain_metadata(network.metadata),
    }


def _plain_metadata(value, where: str = "metadata", depth: int = 0):
    """``network.metadata`` checked to be plain data the safe loader accepts (a copy), or
    an InputError naming the entry that is not."""
    if depth > MAX_DEPTH - 8:  # the payload itself nests a few levels
        raise InputError(f"network.{where} nests more than {MAX_DEPTH - 8} levels deep.")
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise InputError(f"network.{where} is a string of {len(value):,} characters; model "
                         f"files hold strings of at most {MAX_STRING_CHARS:,}.")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise InputError(f"network.{where} is an integer wider than 64 bits.")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_metadata(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise InputError(f"network.{where} has the key {brief(key)}; metadata keys "
                                 "must be strings.")
        return {k: _plain_metadata(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    raise InputError(f"network.{where} is {type(value).__name__} {brief(value)}; metadata "
                     "holds only strings, numbers, bools, None, lists and dicts (convert "
                     "NumPy values with float() or .tolist()).")


def _schedule_record(network) -> dict | None:
    """The schedule's name, provider and hyperparameters, and where it started."""
    from .registry import provider_of

    if network._schedule is None:
        return None if network._saved_schedule is None else network._saved_schedule[1]
    run = network._schedule
    provider = provider_of(run.schedule)
    return {"name": run.schedule.name,
            "distribution": provider.distribution if provider else None,
            "version": provider.version if provider else None,
            "hyperparameters": run.schedule.hyperparameters,
            "first_epoch": run.first_epoch, "num_epochs": run.num_epochs}


def _state_array_record(array: np.ndarray) -> dict:
    array = _host(array)
    dtype = array.dtype.newbyteorder("<")
    return {"shape": list(array.shape), "dtype": dtype.str,
            "data": np.ascontiguousarray(array, dtype=dtype).tobytes()}


def _optimizer_record(network) -> dict | None:
    if network._run is None:
        # A loaded model whose optimizer could not be rebuilt keeps the record it came with.
        return None if network._saved_optimizer is None else network._saved_optimizer[1]
    return optimizer_record(network._run)


def optimizer_record(run) -> dict:
    """An [OptimizerRun][nnframe.optimizers.OptimizerRun] as plain data: the optimizer's name
    and provider, its hyperparameters, and per parameter its step count and state arrays
    (what a model file holds, read back by `optimizer_from_record`)."""
    from .registry import provider_of

    optimizer = run.optimizer
    provider = provider_of(optimizer)
    return {"name": optimizer.name,
            "distribution": provider.distribution if provider else None,
            "version": provider.version if provider else None,
            "hyperparameters": optimizer.hyperparameters,
            "steps": list(run.steps),
            "state": [{key: _state_array_record(value) for key, value in state.items()}
                      for state in run.states]}


def _generator_record(rng) -> dict | None:
    """The shuffling generator's position (PCG64, NumPy's default; 128-bit numbers as hex
    strings), or None."""
    if rng is None or not isinstance(rng.bit_generator, np.random.PCG64):
        return None
    state = rng.bit_generator.state
    return {"bit_generator": "PCG64", "state": format(state["state"]["state"], "x"),
            "inc": format(state["state"]["inc"], "x"), "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"])}


def save(network, path) -> None:
    """Write ``network`` to ``path`` atomically: a crash never damages an existing file."""
    path = _validation.model_path(path, name="path")
    data = dill.dumps(to_payload(network), protocol=4)
    _files.atomic_write(path, data, error=ModelFileError)


# -- loading -----------------------------------------------------------------------------
class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise UnsafeModelError(f"refusing to load: the file asks for {module}.{name}. "
                               + _TRUST_HINT)

    def persistent_load(self, pid):
        raise UnsafeModelError("refusing to load: the file uses persistent ids. " + _TRUST_HINT)


class _Shape:
    """The scan's model of the unpickler: the kind and nesting depth of every stack entry.

    It mirrors what the C unpickler does with each plain opcode, without building anything,
    and refuses what the format never holds before a single object exists.
    """

    def __init__(self, where: str):
        self.where = where
        self.stack: list[tuple[str, int]] = []  # (kind, depth): "str", "scalar", "list"...
        self.marks: list[int] = []
        self.memo: dict[int, str] = {}  # memo index -> kind of what was stored there
        self.values = 0

    def fail(self, problem: str) -> ModelFileError:
        return _bad(self.where, problem)

    def push(self, kind: str, depth: int = 0) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(f"it holds more than {MAX_VALUES:,} values; nnframe model files "
                            "hold a few hundred plus the training history")
        self.stack.append((kind, depth))

    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def pop(self, count: int) -> list[tuple[str, int]]:
        if len(self.stack) - self.fence() < count:
            raise self.fail("corrupt pickle: stack underflow")
        items = self.stack[len(self.stack) - count:]
        del self.stack[len(self.stack) - count:]
        return items

    def pop_mark(self) -> list[tuple[str, int]]:
        if not self.marks:
            raise self.fail("corrupt pickle: an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def check_keys(self, items: list[tuple[str, int]]) -> None:
        if len(items) % 2:
            raise self.fail("corrupt pickle: a dict gets an odd number of items")
        for kind, _ in items[::2]:
            if kind != "str":
                raise self.fail(f"it holds a dict key that is a {kind}, not a string; nnframe "
                                "model files use only string keys (others can be built to "
                                "collide and load in quadratic time)")

    def container(self, kind: str, items: list[tuple[str, int]]) -> None:
        if kind == "dict":
            self.check_keys(items)
        depth = 1 + max((d for _, d in items), default=0)
        if depth > MAX_DEPTH:
            raise self.fail(f"it nests containers more than {MAX_DEPTH} deep")
        self.push(kind, depth)

    def add_to(self, kind: str, items: list[tuple[str, int]]) -> None:
        """APPEND(S)/SETITEM(S): ``items`` go into the container now on top of the stack."""
        if len(self.stack) <= self.fence():
            raise self.fail("corrupt pickle: stack underflow")
        target, depth = self.stack[-1]
        if target != kind:
            raise self.fail(f"corrupt pickle: adds items to a {target}, not a {kind}")
        if kind == "dict":
            self.check_keys(items)
        depth = max(depth, 1 + max((d for _, d in items), default=0))
        if depth > MAX_DEPTH:
            raise self.fail(f"it nests containers more than {MAX_DEPTH} deep")
        self.stack[-1] = (target, depth)

    def step(self, name: str, arg) -> None:
        if name in _SCALAR_OPS:
            if (isinstance(arg, int) and not isinstance(arg, bool)
                    and not -_INT_LIMIT <= arg < _INT_LIMIT):
                raise self.fail("it holds an integer wider than 64 bits")
            self.push("scalar")
        elif name in _STRING_OPS:
            if len(arg) > MAX_STRING_CHARS:
                raise self.fail(f"it holds a string of {len(arg):,} characters (at most "
                                f"{MAX_STRING_CHARS:,} are allowed)")
            self.push("str")
        elif name in _EMPTY_OPS:
            self.push(_EMPTY_OPS[name], 1)
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name in _MARK_OPS:
            self.container(_MARK_OPS[name], self.pop_mark())
        elif name in _TUPLE_OPS:
            self.container("tuple", self.pop(_TUPLE_OPS[name]))
        elif name == "APPEND":
            self.add_to("list", self.pop(1))
        elif name == "APPENDS":
            self.add_to("list", self.pop_mark())
        elif name == "SETITEM":
            self.add_to("dict", self.pop(2))
        elif name == "SETITEMS":
            self.add_to("dict", self.pop_mark())
        elif name in _PUT_OPS:
            index = len(self.memo) if name == "MEMOIZE" else arg
            if len(self.stack) <= self.fence():
                raise self.fail("corrupt pickle: stack underflow")
            if not isinstance(index, int) or not 0 <= index <= len(self.memo):
                raise self.fail("corrupt pickle: memo indices out of order")
            self.memo[index] = self.stack[-1][0]
        elif name in _GET_OPS:
            kind = self.memo.get(arg)
            if kind is None:
                raise self.fail("corrupt pickle: a memo reference to nothing")
            if kind != "str":
                raise self.fail(f"it uses one {kind} in several places; nnframe model files "
                                "never share containers (shared ones can be built to take "
                                "exponential time to check)")
            self.push("str")
        elif name == "STOP" and len(self.stack) <= self.fence():
            raise self.fail("corrupt pickle: nothing to return")
        # PROTO and FRAME change nothing on the stack.


def _scan(data: bytes, where: str) -> None:
    """Refuse, before unpickling anything, a pickle that uses any non-plain opcode or builds
    anything the format never holds (see the module docstring)."""
    strings: list[str] = []
    shape = _Shape(where)
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in _NOT_IN_FORMAT:
                raise _bad(where, f"it holds {_NOT_IN_FORMAT[name]}, which nnframe model files "
                                  "never do; nothing was unpickled")
            if name not in PLAIN_OPCODES:
                if name == "GLOBAL" and isinstance(arg, str):
                    target = arg.replace(" ", ".")
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    target = ".".join(strings[-2:])
                else:
                    target = None
                asks = (f"asks to import {brief(target)}" if target
                        else f"uses opcode {name}")
                raise UnsafeModelError(f"refusing to load {where}: it {asks}, which could run "
                                       "code. " + _TRUST_HINT)
            if isinstance(arg, str):
                strings.append(arg)
                del strings[:-2]
            shape.step(name, arg)
    except ModelFileError:  # UnsafeModelError too
        raise
    except Exception as exc:
        raise ModelFileError(f"{where} is not a valid nnframe model file (corrupt or truncated "
                             f"pickle: {_reason(exc)}).") from None


def _reason(exc: BaseException) -> str:
    """An exception's message, bounded whatever it was built from."""
    args = exc.args
    if len(args) == 1 and isinstance(args[0], str):
        text = args[0]
        return text if len(text) <= 200 else text[:197] + "..."
    return brief(args, 200)


def _read(path: Path) -> bytes:
    data = _files.read_regular(path, limit=MAX_FILE_BYTES, what="model file",
                               error=ModelFileError)
    if not data:
        raise ModelFileError(f"{str(path)!r} is empty, not a model file (was a save "
                             "interrupted outside nnframe?).")
    return data


def load(path, *, trusted: bool = False, device="cpu"):
    """Read a network saved by [NeuralNetwork.save][nnframe.NeuralNetwork.save].

    By default only plain data is accepted: a file that would import or run anything raises
    [UnsafeModelError][nnframe.errors.UnsafeModelError] and nothing runs. `trusted=True`
    allows a full dill load, including activation or cost objects that `save` embedded by
    value.

    Args:
        path: A path ending in `.pkl`.
        trusted: The bool `True` allows a full, code-running load: only for files you trust.
            Anything but a real bool (a string, a number, `numpy.bool_`) raises
            [InputError][nnframe.errors.InputError] before the file is opened.
        device: Where the network goes: `"cpu"` (the default) or `"cuda"`. The file holds
            host arrays either way, so a model saved on a GPU loads on a CPU and back.

    Returns:
        The [NeuralNetwork][nnframe.NeuralNetwork], with its training history.

    Raises:
        InputError: `path` does not end in `.pkl`, or `trusted` is not a bool.
        UnsafeModelError: The file would import or run code and `trusted` is false.
        MissingPluginError: The model needs an activation or cost that is not installed; the
            message names the package to install.
        ModelFileError: The file is missing, unreadable, corrupt or not an nnframe model.
        DeviceUnavailableError: `device="cuda"` but CuPy is not installed or no GPU is
            visible.

    Examples:
        ```python
        net.save("model.pkl")
        same = nnframe.load("model.pkl")
        ```
    """
    if not isinstance(trusted, bool):
        raise InputError(f"trusted must be True or False, got {type(trusted).__name__} "
                         f"{brief(trusted)}; only trusted=True allows a full (code-running) "
                         "load.")
    from .backend import get_backend

    target = get_backend(device)  # an unusable device fails before the file is read
    path = _validation.model_path(path, name="path")
    where = repr(str(path))
    data = _read(path)
    try:
        if trusted:
            payload = dill.loads(data)
        else:
            _scan(data, where)
            payload = _PlainUnpickler(io.BytesIO(data)).load()
    except (ModelFileError, UnsafeModelError):
        raise
    except MemoryError:
        raise ModelFileError(f"{where} declares more data than fits in memory; it is not a "
                             "valid nnframe model file.") from None
    except Exception as exc:
        raise ModelFileError(f"{where} is not a valid nnframe model file ({type(exc).__name__}: "
                             f"{_reason(exc)}).") from None
    try:
        network = from_payload(payload, where, trusted=trusted)
    except NNFrameError:
        raise
    except Exception as exc:  # a structure the checks did not foresee: still the file's fault
        raise ModelFileError(f"{where} is not a valid nnframe model file (unexpected structure: "
                             f"{type(exc).__name__}: {_reason(exc)}).") from None
    return network.to(target)


def _bad(where: str, problem: str) -> ModelFileError:
    return ModelFileError(f"{where} is not a valid nnframe model file: {problem}.")


# PEP 508 distribution names; anything else in a file is not a distribution to name or query.
_DISTRIBUTION = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")


def _installed_version(dist: str) -> str | None:
    """The installed version of the distribution ``dist``, or None when it is not installed."""
    if re.sub(r"[-_.]+", "-", dist).lower() == "nnframe":
        from . import __version__

        return __version__
    try:
        return importlib.metadata.version(dist)
    except Exception:  # PackageNotFoundError, or metadata too broken to read
        return None


def _missing(record: dict, kind: str, name: str, where: str,
             unknown: UnknownNameError, then: str = "load again") -> MissingPluginError:
    """The error for a recorded name the registry does not know: install what is missing, or,
    when the recorded distribution is installed, say so and suggest close names."""
    from .plugins import builtins_only
    from .registry import get_registry

    shown = brief(name)
    advice = []
    if unknown.suggestion:
        advice.append(f"Did you mean {brief(unknown.suggestion)}?")
    if not name.isascii():
        escaped = ascii(name)
        escaped = escaped if len(escaped) <= 120 else escaped[:117] + "..."
        advice.append(f"The name has characters that are not plain ASCII ({escaped}), "
                      "perhaps a look-alike letter.")
    if unknown.available:
        advice.append(f"Available {kind}s: {', '.join(unknown.available)[:300]}.")
    tail = " ".join(advice)
    dist, version = record.get("distribution"), record.get("version")
    saved = f" {brief(version, 40)}" if isinstance(version, str) else ""
    if not isinstance(dist, str) or not dist:
        return MissingPluginError(f"{where} needs the {kind} {shown}, which is not registered: "
                                  f"install the plugin that provides it and {then}. {tail}")
    if len(dist) > MAX_NAME_CHARS or not _DISTRIBUTION.match(dist):
        return MissingPluginError(f"{where} needs the {kind} {shown}, which is not registered; "
                                  f"the file names its provider as {brief(dist)}, which is not a "
                                  f"valid distribution name. {tail}")
    installed = _installed_version(dist)
    if installed is None:
        return MissingPluginError(f"{where} needs the {kind} {shown}, which is not installed: "
                                  f"it was provided by {dist}{saved}; install it with "
                                  f"`pip install {dist}` and {then}.")
    normal = re.sub(r"[-_.]+", "-", dist).lower()
    if normal != "nnframe" and builtins_only():
        why = ("is installed, but NNFRAME_BUILTINS_ONLY is on, so nnframe ignores it; unset "
               f"NNFRAME_BUILTINS_ONLY and {then}")
    elif any(re.sub(r"[-_.]+", "-", f.distribution).lower() == normal
             for f in get_registry().failures):
        why = ("is installed but failed to load; run `nnframe plugins` to see why")
    else:
        why = f"is installed and does not provide it (the file was saved with {dist}{saved})"
    return MissingPluginError(f"{where} needs the {kind} {shown}, which is unknown: {dist} "
                              f"{installed} {why}. {tail}".rstrip())


def _resolve(record, kind: str, where: str, trusted: bool):
    from .registry import KINDS, get_registry

    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise _bad(where, f"{KINDS[kind].article} {kind} entry is {brief(record)}, not a named "
                          "record")
    name = record["name"]
    if len(name) > MAX_NAME_CHARS:
        raise _bad(where, f"the {kind} name {brief(name)} is {len(name):,} characters long; "
                          f"names have at most {MAX_NAME_CHARS}")
    embedded = record.get("embedded")
    base = KINDS[kind].base
    if embedded is not None:
        if not trusted:
            raise UnsafeModelError(
                f"{where} embeds Python code for the {kind} {brief(name)} (an object defined "
                "outside any installed plugin when the model was saved). Loading it would run "
                "that code; use load(path, trusted=True) only if you trust the file.")
        if not isinstance(embedded, bytes):
            raise _bad(where, f"the embedded {kind} {brief(name)} is not bytes")
        obj = dill.loads(embedded)
        if not isinstance(obj, base):
            raise _bad(where, f"the embedded {kind} {brief(name)} is not an "
                              f"nnframe.{base.__name__}")
        return obj
    try:
        return get_registry().lookup(kind, name).obj
    except UnknownNameError as exc:
        raise _missing(record, kind, name, where, exc) from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _array(record, shape: tuple[int, int], dtype: str, where: str, what: str) -> np.ndarray:
    if not isinstance(record, dict) or not isinstance(record.get("data"), bytes):
        raise _bad(where, f"{what} is not an array record")
    recorded = record.get("shape")
    # Types and length first: the comparison then touches two integers, whatever the file.
    if (not isinstance(recorded, list) or len(recorded) != 2
            or not all(_is_int(n) for n in recorded) or recorded != list(shape)):
        raise _bad(where, f"{what} has shape {brief(recorded)} but the architecture "
                          f"needs {list(shape)}")
    expected = shape[0] * shape[1] * np.dtype(DTYPES[dtype]).itemsize
    if len(record["data"]) != expected:
        raise _bad(where, f"{what} holds {len(record['data'])} bytes, expected {expected}")
    array = np.frombuffer(record["data"], dtype=DTYPES[dtype]).reshape(shape).astype(dtype)
    if not np.isfinite(array).all():
        raise _bad(where, f"{what} contains NaN or infinite values")
    return array


def from_payload(payload, where: str = "the model", *, trusted: bool = False):
    from .network import NeuralNetwork

    if not isinstance(payload, dict):
        raise _bad(where, "it does not start with the nnframe model header")
    header = payload.get("format")
    if not isinstance(header, str) or header != FORMAT:
        raise _bad(where, "it does not start with the nnframe model header")
    version = payload.get("format_version")
    if not _is_int(version) or version < 1:
        raise _bad(where, f"format_version is {brief(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{where} uses model format {brief(version)}, newer than this "
                             f"nnframe understands ({FORMAT_VERSION}); upgrade nnframe.")
    nodes = payload.get("num_nodes")
    if (not isinstance(nodes, list) or len(nodes) < 2
            or not all(_is_int(n) and 1 <= n < _INT_LIMIT for n in nodes)):
        raise _bad(where, f"num_nodes is {brief(nodes)}")
    dtype = payload.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(where, f"dtype is {brief(dtype)}, expected float32 or float64")
    records = payload.get("activations")
    if not isinstance(records, list) or len(records) != len(nodes) or records[0] is not None:
        raise _bad(where, f"the activations do not match the layers (got {brief(records)})")
    for key in ("weights", "biases"):
        if not isinstance(payload.get(key), list) or len(payload[key]) != len(nodes) - 1:
            raise _bad(where, f"{key} do not match the layers (got {brief(payload.get(key))})")
    # Check every array before building anything: a bad file allocates nothing big.
    weights = [_array(payload["weights"][i], (nodes[i], nodes[i + 1]), dtype, where,
                      f"weights[{i}]") for i in range(len(nodes) - 1)]
    biases = [_array(payload["biases"][i], (1, nodes[i + 1]), dtype, where, f"biases[{i}]")
              for i in range(len(nodes) - 1)]
    activations = [None] + [_resolve(r, "activation", where, trusted) for r in records[1:]]
    cost = _resolve(payload.get("cost"), "cost", where, trusted)
    dropout = payload.get("dropout")
    if dropout is not None and (not isinstance(dropout, list) or len(dropout) != len(nodes)
                                or not all(isinstance(r, (int, float)) for r in dropout)):
        raise _bad(where, f"dropout is {brief(dropout)}, expected one rate per layer")
    try:
        network = NeuralNetwork(len(nodes), nodes, activations, cost, dtype=dtype,
                                dropout=dropout)
    except InputError as exc:
        raise _bad(where, str(exc).rstrip(".")) from None
    for layer, w, b in zip(network.layers[:-1], weights, biases, strict=True):
        layer.weights_for_layer = w
        layer.bias_for_layer = b
    history = payload.get("history")
    if isinstance(history, dict):
        # Only string keys and flat lists of numbers: nothing here formats or walks a
        # structure from the file (a trusted file is not scanned and may share containers).
        network.history = {k: [float(x) for x in v] for k, v in history.items()
                           if isinstance(k, str) and isinstance(v, list)
                           and all(isinstance(x, (int, float)) for x in v)}
    rate = payload.get("learning_rate")
    if isinstance(rate, float) and np.isfinite(rate) and rate > 0:
        network.learning_rate = rate
    record = payload.get("optimizer")
    if record is not None:
        _restore_optimizer(network, record, where)
    shuffle = payload.get("shuffle")
    if shuffle is not None:
        network._shuffle = _generator(shuffle, where)
    epochs = payload.get("epochs", len(network.history.get("loss", [])))
    if not _is_int(epochs) or not 0 <= epochs < _INT_LIMIT:
        raise _bad(where, f"epochs is {brief(epochs)}")
    network.epochs = epochs
    record = payload.get("schedule")
    if record is not None:
        _restore_schedule(network, record, where)
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _bad(where, f"metadata is {brief(metadata)}, not a dict")
    try:  # a trusted file is not scanned: check it is plain data here too
        network.metadata = _plain_metadata(metadata)
    except InputError as exc:
        raise _bad(where, str(exc).rstrip(".")) from None
    return network


def _restore_schedule(network, record, where: str) -> None:
    """As `_restore_optimizer`, for the learning-rate schedule."""
    from .configurable import create
    from .registry import get_registry
    from .schedules import ScheduleRun

    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise _bad(where, f"the schedule entry is {brief(record)}, not a named record")
    name, hyper = record["name"], record.get("hyperparameters")
    if len(name) > MAX_NAME_CHARS:
        raise _bad(where, f"the schedule name {brief(name)} is {len(name):,} characters long; "
                          f"names have at most {MAX_NAME_CHARS}")
    if not isinstance(hyper, dict) or not all(
            isinstance(k, str) and isinstance(v, (bool, int, float, str))
            for k, v in hyper.items()):
        raise _bad(where, f"the schedule's hyperparameters are {brief(hyper)}")
    first, count = record.get("first_epoch"), record.get("num_epochs")
    if not (_is_int(first) and _is_int(count) and 0 <= first <= network.epochs
            and 0 <= count < _INT_LIMIT):
        raise _bad(where, f"the schedule starts at epoch {brief(first)} for {brief(count)} "
                          f"epochs, but the model has trained {network.epochs}")
    try:
        schedule = create(get_registry().lookup("schedule", name).obj, hyper)
    except UnknownNameError as exc:
        then = ("continue training (it loads and predicts without it), or pass schedule= "
                "to train to start a new one")
        network._saved_schedule = (_missing(record, "schedule", name, where, exc, then),
                                   record)
        return
    except Exception as exc:
        network._saved_schedule = (ModelFileError(
            f"{where} saved the schedule {brief(name)}, which cannot continue here: "
            f"{_reason(exc)}. The model loads and predicts; pass schedule= to train to start "
            "a new one."), record)
        return
    network._schedule = ScheduleRun(schedule, first, count)


# State arrays: real numbers and flags, stored little-endian.
STATE_DTYPES = frozenset({"<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2",
                          "<u4", "<u8", "|b1", "|i1", "|u1"})


def _state_array(record, where: str, what: str) -> np.ndarray:
    if not isinstance(record, dict) or not isinstance(record.get("data"), bytes):
        raise _bad(where, f"{what} is not an array record")
    dtype, shape = record.get("dtype"), record.get("shape")
    if not isinstance(dtype, str) or dtype not in STATE_DTYPES:
        raise _bad(where, f"{what} has dtype {brief(dtype)}")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(_is_int(n) and 0 <= n < _INT_LIMIT for n in shape)):
        raise _bad(where, f"{what} has shape {brief(shape)}")
    expected = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    if len(record["data"]) != expected:
        raise _bad(where, f"{what} holds {len(record['data'])} bytes, expected {expected}")
    array = np.frombuffer(record["data"], dtype=dtype).reshape(shape)
    array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _bad(where, f"{what} contains NaN or infinite values")
    return array


def _restore_optimizer(network, record, where: str) -> None:
    """Rebuild the saved optimizer with its state onto ``network``. A malformed record is the
    file's fault (ModelFileError); an optimizer that cannot be rebuilt here (its plugin is
    missing, or refuses the saved settings) leaves the network usable for prediction, with
    the reason kept for when training continues without a new optimizer."""
    checked = _checked_optimizer_record(record, len(network.parameters()), where)
    try:
        network._run = _rebuilt(None, checked, network.parameters(), where)
    except UnknownNameError as exc:
        then = ("continue training (it loads and predicts without it), or pass optimizer= "
                "to train to start a new one")
        network._saved_optimizer = (_missing(record, "optimizer", checked[0], where, exc,
                                             then), record)
    except Exception as exc:
        network._saved_optimizer = (ModelFileError(
            f"{where} saved the optimizer {brief(checked[0])}, which cannot continue here: "
            f"{_reason(exc)}. The model loads and predicts; pass optimizer= to train to start "
            "a new one."), record)


def optimizer_from_record(record, params: list[np.ndarray], cls=None,
                          where: str = "the optimizer record"):
    """The [OptimizerRun][nnframe.optimizers.OptimizerRun] that `optimizer_record` wrote,
    attached to ``params``: the class ``cls``, or the one registered under the record's name,
    built with the saved hyperparameters and given the saved states and step counts.

    Raises:
        ModelFileError: The record is malformed, or its state does not have the arrays that
            the optimizer's `init_state` makes.
        UnknownNameError: ``cls`` is None and no optimizer has the record's name.
        InputError: The optimizer refuses the saved hyperparameters.
    """
    return _rebuilt(cls, _checked_optimizer_record(record, len(params), where), params, where)


def _checked_optimizer_record(record, count: int, where: str):
    """``(name, hyperparameters, steps, states)`` from a record for ``count`` parameters, or
    a ModelFileError; the state arrays are decoded and checked."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise _bad(where, f"the optimizer entry is {brief(record)}, not a named record")
    name = record["name"]
    if len(name) > MAX_NAME_CHARS:
        raise _bad(where, f"the optimizer name {brief(name)} is {len(name):,} characters long; "
                          f"names have at most {MAX_NAME_CHARS}")
    hyper, steps, states = (record.get("hyperparameters"), record.get("steps"),
                            record.get("state"))
    if not isinstance(hyper, dict) or not all(
            isinstance(k, str) and isinstance(v, (bool, int, float, str))
            for k, v in hyper.items()):
        raise _bad(where, f"the optimizer's hyperparameters are {brief(hyper)}")
    if (not isinstance(steps, list) or len(steps) != count
            or not all(_is_int(n) and 0 <= n < _INT_LIMIT for n in steps)):
        raise _bad(where, f"the optimizer's step counts are {brief(steps)}, expected one per "
                          f"parameter ({count})")
    if (not isinstance(states, list) or len(states) != count
            or not all(isinstance(st, dict) and all(isinstance(k, str) for k in st)
                       for st in states)):
        raise _bad(where, f"the optimizer's state is {brief(states)}, expected one dict per "
                          f"parameter ({count})")
    saved = [{key: _state_array(value, where, f"optimizer state {i} {brief(key)}")
              for key, value in state.items()} for i, state in enumerate(states)]
    return name, hyper, steps, saved


def _rebuilt(cls, checked, params: list[np.ndarray], where: str):
    from .optimizers import OptimizerRun, create
    from .registry import get_registry

    name, hyper, steps, saved = checked
    if cls is None:
        cls = get_registry().lookup("optimizer", name).obj
    run = OptimizerRun(create(cls, hyper), params)
    for i, (state, stored) in enumerate(zip(run.states, saved, strict=True)):
        fresh = {k: (v.shape, v.dtype) for k, v in state.items()}
        if fresh != {k: (v.shape, v.dtype) for k, v in stored.items()}:
            raise _bad(where, f"the optimizer state of parameter {i} has the arrays "
                              f"{brief(sorted(stored))}, but {brief(name)}'s init_state makes "
                              f"{brief(sorted(fresh))} (shapes and dtypes included)")
        for key, value in stored.items():
            target = state[key]
            target[...] = value if isinstance(target, np.ndarray) else _device_copy(target, value)
    run.steps[:] = steps
    return run


def _generator(record, where: str) -> np.random.Generator:
    hexes = re.compile(r"[0-9a-f]{1,32}")
    if (not isinstance(record, dict) or record.get("bit_generator") != "PCG64"
            or not all(isinstance(record.get(k), str) and hexes.fullmatch(record[k])
                       for k in ("state", "inc"))
            or record.get("has_uint32") not in (0, 1) or not _is_int(record.get("uinteger"))
            or not 0 <= record["uinteger"] < 2**32):
        raise _bad(where, f"the shuffling generator is {brief(record)}")
    bit_generator = np.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64",
                           "state": {"state": int(record["state"], 16),
                                     "inc": int(record["inc"], 16)},
                           "has_uint32": record["has_uint32"], "uinteger": record["uinteger"]}
    return np.random.Generator(bit_generator)
