"""The restricted unpickler for PyTorch checkpoints: tensors rebuilt as inert references, nothing run.

:class:`RestrictedUnpickler` resolves only the globals needed to rebuild tensors
(``torch._utils._rebuild_tensor_v2`` and friends, ``torch.*Storage`` types,
``collections.OrderedDict``) to stand-ins defined here; any other global — e.g. ``os.system`` or
``builtins.eval`` in a malicious file — raises a FormatError before anything is called. Tensors
come back as :class:`LazyTensor` (storage reference, offset, size, stride), read later by
:mod:`client.formats.pytorch`.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.formats.base import MAX_NDIM, NUMPY_DTYPES, fail

MAX_PICKLE = 256 * 1024 * 1024  # bytes of object tree
LEGACY_PROTOCOL = 1001

#: torch storage type -> manifest dtype name.
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}


@dataclass(frozen=True)
class StorageType:
    dtype: str  # manifest dtype name

    @property
    def itemsize(self) -> int:
        return np.dtype(NUMPY_DTYPES[self.dtype]).itemsize


@dataclass(frozen=True)
class StorageRef:
    key: str
    stype: StorageType
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > MAX_NDIM:
        raise pickle.UnpicklingError(f"bad {what}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"bad {what}")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> LazyTensor:
    if not isinstance(storage, StorageRef) or not isinstance(offset, int):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return LazyTensor(storage, offset, _ints(size, "tensor size"), _ints(stride, "tensor stride"))


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
    if func is not _rebuild_tensor or not isinstance(args, tuple):
        raise pickle.UnpicklingError("unexpected _rebuild_from_type_v2 arguments")
    return _rebuild_tensor(*args)


class _Parameter:
    """Stand-in for torch.nn.parameter.Parameter when named as a type; never instantiated."""


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("unexpected _codecs.encode arguments")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _Parameter,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _codecs_encode,
    **{("torch", name): StorageType(dt) for name, dt in _STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that maps a fixed allow-list of globals to inert stand-ins and refuses the rest.

    ``on_storage(key, stype, numel)`` is called for each persistent storage reference.
    """

    def __init__(self, data: bytes, path: Path | str, on_storage: Callable[[str, StorageType, int], None] | None):
        super().__init__(io.BytesIO(data))
        self._path = path
        self._on_storage = on_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            problem = f"refusing pickle global {module}.{name}: only tensors can be loaded (file may be malicious)"
            raise fail(self._path, problem) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._on_storage is None:
            raise fail(self._path, "unexpected persistent reference in pickle")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise fail(self._path, f"unsupported persistent reference {pid!r:.80}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise fail(self._path, f"bad storage reference {pid!r:.80}")
        self._on_storage(key, stype, numel)
        return StorageRef(key, stype, numel)


def unpickle(data: bytes, path: Path | str, on_storage: Callable[[str, StorageType, int], None] | None) -> Any:
    try:
        return RestrictedUnpickler(data, path, on_storage).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, RecursionError, MemoryError, UnicodeDecodeError, OverflowError) as err:
        # OverflowError: a FRAME (or other length) past sys.maxsize (fuzz finding)
        raise fail(path, f"malformed or truncated pickle ({type(err).__name__}: {err})") from err


def flatten(obj: Any, prefix: str, out: list[tuple[str, LazyTensor]], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(obj, LazyTensor):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)
