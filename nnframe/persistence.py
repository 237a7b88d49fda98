"""Saving and loading networks as ``.pkl`` files written with dill, safe by default.

The file holds plain data only (dicts, lists, strings, numbers, bytes): a format version,
the architecture, the names of the activations and cost with the distribution and version
that provided each, the weights as raw little-endian bytes, and the training history. It
never holds the Python objects of installed plugins, so it survives refactors and says which
package to install.

``load`` scans the pickle's opcodes before unpickling and refuses any that could import or
call something; the unpickler itself also refuses every global. ``trusted=True`` switches to
a full dill load, needed only for networks whose activation or cost objects were defined in
the user's own code (``save`` embeds those by value and marks them as code).
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import dill
import numpy as np

from . import _files, _validation
from .base import Activation, Cost
from .errors import (
    MissingPluginError,
    ModelFileError,
    NNFrameError,
    UnknownNameError,
    UnsafeModelError,
)

FORMAT = "nnframe-model"
FORMAT_VERSION = 1
DTYPES = {"float32": "<f4", "float64": "<f8"}
# The largest model file load reads (2 billion float32 weights); checked before reading.
MAX_FILE_BYTES = 8 * 2**30

# Opcodes that build plain data. Anything else (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST,
# OBJ, NEWOBJ, EXT*, PERSID, out-of-band buffers...) could import or call code.
PLAIN_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP MEMOIZE PUT BINPUT LONG_BINPUT GET BINGET
    LONG_BINGET NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT
    BINFLOAT STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 UNICODE
    BINUNICODE SHORT_BINUNICODE BINUNICODE8 EMPTY_LIST APPEND APPENDS LIST EMPTY_DICT DICT
    SETITEM SETITEMS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_SET ADDITEMS FROZENSET
""".split())

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


def _array_record(array: np.ndarray, dtype: str) -> dict:
    return {"shape": list(array.shape),
            "data": np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()}


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
    }


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


def _scan(data: bytes, where: str) -> None:
    """Refuse, before unpickling anything, a pickle that uses any non-plain opcode."""
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name not in PLAIN_OPCODES:
                if opcode.name == "GLOBAL" and isinstance(arg, str):
                    target = arg.replace(" ", ".")
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    target = ".".join(strings[-2:])
                else:
                    target = None
                asks = f"asks to import {target}" if target else f"uses opcode {opcode.name}"
                raise UnsafeModelError(f"refusing to load {where}: it {asks}, which could run "
                                       "code. " + _TRUST_HINT)
            if isinstance(arg, str):
                strings.append(arg)
                del strings[:-2]
    except UnsafeModelError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{where} is not a valid nnframe model file (corrupt or truncated "
                             f"pickle: {exc}).") from None


def _read(path: Path) -> bytes:
    data = _files.read_regular(path, limit=MAX_FILE_BYTES, what="model file",
                               error=ModelFileError)
    if not data:
        raise ModelFileError(f"{str(path)!r} is empty, not a model file (was a save "
                             "interrupted outside nnframe?).")
    return data


def load(path, *, trusted: bool = False):
    """Read a network saved by :meth:`NeuralNetwork.save`.

    By default only plain data is accepted: a file that would import or run anything raises
    :class:`UnsafeModelError` and nothing runs. ``trusted=True`` allows a full dill load,
    including activation or cost objects that ``save`` embedded by value.
    """
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
                             f"{exc}).") from None
    try:
        return from_payload(payload, where, trusted=trusted)
    except NNFrameError:
        raise
    except Exception as exc:  # a structure the checks did not foresee: still the file's fault
        raise ModelFileError(f"{where} is not a valid nnframe model file (unexpected structure: "
                             f"{type(exc).__name__}: {exc}).") from None


def _bad(where: str, problem: str) -> ModelFileError:
    return ModelFileError(f"{where} is not a valid nnframe model file: {problem}.")


def _resolve(record, kind: str, where: str, trusted: bool):
    from .registry import get_registry

    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise _bad(where, f"an {kind} entry is {record!r}, not a named record")
    name = record["name"]
    embedded = record.get("embedded")
    base = Activation if kind == "activation" else Cost
    if embedded is not None:
        if not trusted:
            raise UnsafeModelError(
                f"{where} embeds Python code for the {kind} {name!r} (an object defined "
                "outside any installed plugin when the model was saved). Loading it would run "
                "that code; use load(path, trusted=True) only if you trust the file.")
        if not isinstance(embedded, bytes):
            raise _bad(where, f"the embedded {kind} {name!r} is not bytes")
        obj = dill.loads(embedded)
        if not isinstance(obj, base):
            raise _bad(where, f"the embedded {kind} {name!r} is not an nnframe.{base.__name__}")
        return obj
    try:
        return get_registry().lookup(kind, name).obj
    except UnknownNameError:
        dist, version = record.get("distribution"), record.get("version")
        if isinstance(dist, str) and dist:
            hint = (f"it was provided by {dist} {version}; install it with "
                    f"`pip install {dist}` and load again")
        else:
            hint = "install the plugin that provides it and load again"
        raise MissingPluginError(f"{where} needs the {kind} {name!r}, which is not installed: "
                                 f"{hint}.") from None


def _array(record, shape: tuple[int, int], dtype: str, where: str, what: str) -> np.ndarray:
    if not isinstance(record, dict) or not isinstance(record.get("data"), bytes):
        raise _bad(where, f"{what} is not an array record")
    if list(record.get("shape", ())) != list(shape):
        raise _bad(where, f"{what} has shape {record.get('shape')!r} but the architecture "
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

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _bad(where, "it does not start with the nnframe model header")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(where, f"format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{where} uses model format {version}, newer than this nnframe "
                             f"understands ({FORMAT_VERSION}); upgrade nnframe.")
    nodes = payload.get("num_nodes")
    if (not isinstance(nodes, list) or len(nodes) < 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                       for n in nodes)):
        raise _bad(where, f"num_nodes is {nodes!r}")
    dtype = payload.get("dtype")
    if dtype not in DTYPES:
        raise _bad(where, f"dtype is {dtype!r}, expected float32 or float64")
    records = payload.get("activations")
    if not isinstance(records, list) or len(records) != len(nodes) or records[0] is not None:
        raise _bad(where, "the activations do not match the layers")
    for key in ("weights", "biases"):
        if not isinstance(payload.get(key), list) or len(payload[key]) != len(nodes) - 1:
            raise _bad(where, f"{key} do not match the layers")
    # Check every array before building anything: a bad file allocates nothing big.
    weights = [_array(payload["weights"][i], (nodes[i], nodes[i + 1]), dtype, where,
                      f"weights[{i}]") for i in range(len(nodes) - 1)]
    biases = [_array(payload["biases"][i], (1, nodes[i + 1]), dtype, where, f"biases[{i}]")
              for i in range(len(nodes) - 1)]
    activations = [None] + [_resolve(r, "activation", where, trusted) for r in records[1:]]
    cost = _resolve(payload.get("cost"), "cost", where, trusted)
    network = NeuralNetwork(len(nodes), nodes, activations, cost, dtype=dtype)
    for layer, w, b in zip(network.layers[:-1], weights, biases, strict=True):
        layer.weights_for_layer = w
        layer.bias_for_layer = b
    history = payload.get("history")
    if isinstance(history, dict):
        network.history = {str(k): [float(x) for x in v] for k, v in history.items()
                           if isinstance(v, list)
                           and all(isinstance(x, (int, float)) for x in v)}
    rate = payload.get("learning_rate")
    if isinstance(rate, float) and np.isfinite(rate) and rate > 0:
        network.learning_rate = rate
    return network
