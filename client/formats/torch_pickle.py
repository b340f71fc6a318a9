"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``) without torch and without running code.

Two layouts are read:

- the zip format (torch >= 1.6): ``<prefix>/data.pkl`` holds the object tree, each storage is
  the entry ``<prefix>/data/<key>``; ``<prefix>/byteorder`` says "little" or "big";
- the legacy format: five consecutive pickles/blocks — magic number, protocol version,
  system info, the object tree, the list of storage keys — then each storage as a little-endian
  u64 element count followed by its raw bytes, in the order of that list.

The object tree is unpickled by :class:`RestrictedUnpickler`, which resolves only the globals
needed to rebuild tensors (``torch._utils._rebuild_tensor_v2`` and friends, ``torch.*Storage``
types, ``collections.OrderedDict``) to inert stand-ins defined here; any other global — e.g.
``os.system`` or ``builtins.eval`` in a malicious file — raises :class:`FormatError` before
anything is called. Tensors come back as lazy references and are read one at a time.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from client.formats.base import MAX_NDIM, Tensor, bf16_to_f32, fail, file_size

MAX_PICKLE = 256 * 1024 * 1024  # bytes of object tree
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    dtype: str

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class _StorageRef:
    key: str
    stype: _StorageType
    numel: int


@dataclass(frozen=True)
class _LazyTensor:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > MAX_NDIM:
        raise pickle.UnpicklingError(f"bad {what}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"bad {what}")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _LazyTensor:
    if not isinstance(storage, _StorageRef) or not isinstance(offset, int):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return _LazyTensor(storage, offset, _ints(size, "tensor size"), _ints(stride, "tensor stride"))


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
    **{("torch", name): _StorageType(dt) for name, dt in _STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that maps a fixed allow-list of globals to inert stand-ins and refuses the rest.

    ``on_storage(key, stype, numel)`` is called for each persistent storage reference.
    """

    def __init__(self, data: bytes, path: Path, on_storage: Callable[[str, _StorageType, int], None] | None):
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
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise fail(self._path, f"bad storage reference {pid!r:.80}")
        self._on_storage(key, stype, numel)
        return _StorageRef(key, stype, numel)


def _unpickle(data: bytes, path: Path, on_storage: Callable[[str, _StorageType, int], None] | None) -> Any:
    try:
        return RestrictedUnpickler(data, path, on_storage).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, RecursionError, MemoryError, UnicodeDecodeError, OverflowError) as err:
        # OverflowError: a FRAME (or other length) past sys.maxsize (fuzz finding)
        raise fail(path, f"malformed or truncated pickle ({type(err).__name__}: {err})") from err


def _flatten(obj: Any, prefix: str, out: list[tuple[str, _LazyTensor]], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(obj, _LazyTensor):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)


def _materialize(path: Path, t: _LazyTensor, raw: bytes, big_endian: bool) -> npt.NDArray[np.generic]:
    st = t.storage.stype
    if len(raw) != t.storage.numel * st.itemsize:
        raise fail(path, f"storage {t.storage.key}: {len(raw)} bytes for {t.storage.numel} elements")
    base_dt = np.dtype("<u2" if st.dtype == "bf16" else st.dtype)
    if big_endian:
        base_dt = base_dt.newbyteorder(">")
    flat = np.frombuffer(raw, dtype=base_dt)
    numel = 1
    for d in t.size:
        numel *= d
    if len(t.size) != len(t.stride):
        raise fail(path, "tensor size and stride differ in length")
    if t.offset < 0:  # a negative offset made the strided view read memory before the storage (fuzz finding)
        raise fail(path, f"tensor view of storage {t.storage.key} has a negative offset {t.offset}")
    if numel:
        last = t.offset + sum((d - 1) * s for d, s in zip(t.size, t.stride, strict=True))
        if last >= flat.size:
            raise fail(path, f"tensor view out of bounds of storage {t.storage.key}")
    if numel > flat.size:
        # More elements than its storage holds: a view that reads storage elements more than once
        # (stride 0, as from expand()). Read out, a few bytes of file could ask for terabytes
        # (fuzz finding: a 24 GB allocation, OOM-killed); no saved weight is such a view.
        raise fail(path, f"tensor of shape {t.size} with strides {t.stride} reads its storage "
                         f"{t.storage.key} of {flat.size} elements more than once (an expanded view); "
                         "only views that read each element at most once are supported")
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset:] if numel else flat[:0], shape=t.size,
        strides=tuple(s * base_dt.itemsize for s in t.stride),
    )
    arr = np.ascontiguousarray(view).astype(base_dt.newbyteorder("<"), copy=False)
    return bf16_to_f32(arr.view(np.uint16)) if st.dtype == "bf16" else arr


class TorchZipReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        try:
            zf = zipfile.ZipFile(self.path)
        # NotImplementedError: zip version; UnicodeDecodeError: a name flagged UTF-8 that is not.
        except (zipfile.BadZipFile, OSError, NotImplementedError, UnicodeDecodeError) as err:
            raise fail(self.path, f"not a readable zip archive ({err})") from err
        with zf:
            pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise fail(self.path, "zip archive is not a PyTorch checkpoint (no single <prefix>/data.pkl)")
            prefix = pkls[0][: -len("data.pkl")]
            info = zf.getinfo(pkls[0])
            if info.file_size > MAX_PICKLE:
                raise fail(self.path, f"object pickle of {info.file_size} bytes exceeds {MAX_PICKLE}")
            big = False
            if prefix + "byteorder" in zf.namelist():
                order = self._read(zf, prefix + "byteorder").strip()
                if order not in (b"little", b"big"):
                    raise fail(self.path, f"bad byteorder {order!r}")
                big = order == b"big"
            flat: list[tuple[str, _LazyTensor]] = []
            _flatten(_unpickle(self._read(zf, pkls[0]), self.path, _ignore), "", flat)
            for name, t in flat:
                raw = self._read(zf, f"{prefix}data/{t.storage.key}")
                yield name, _materialize(self.path, t, raw, big)

    def _read(self, zf: zipfile.ZipFile, name: str) -> bytes:
        try:
            return zf.read(name)
        except KeyError:
            raise fail(self.path, f"missing archive entry {name}") from None
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression method;
        # UnicodeDecodeError: a local header name flagged UTF-8 that is not (found by make fuzz).
        except (zipfile.BadZipFile, OSError, EOFError, zlib_error, RuntimeError, NotImplementedError,
                UnicodeDecodeError) as err:
            raise fail(self.path, f"truncated or damaged archive entry {name} ({err})") from err


def _ignore(_key: str, _stype: _StorageType, _numel: int) -> None:
    return None


try:
    from zlib import error as zlib_error
except ImportError:  # pragma: no cover
    zlib_error = OSError  # type: ignore[misc,assignment]


def _next_pickle(f: IO[bytes], path: Path, what: str) -> bytes:
    """Read one complete pickle from the current position, found by parsing opcodes (nothing
    is executed); bounded by MAX_PICKLE."""
    start = f.tell()
    try:
        for op, _arg, pos in pickletools.genops(f):
            if pos is not None and pos - start > MAX_PICKLE:
                raise fail(path, f"{what} pickle larger than {MAX_PICKLE} bytes")
            if op.name == "STOP":
                break
    except (ValueError, EOFError, IndexError, struct.error, UnicodeDecodeError, MemoryError, OverflowError) as err:
        # MemoryError/OverflowError: an opcode claiming an absurd length (genops tries to read it all).
        raise fail(path, f"truncated or malformed {what} pickle ({type(err).__name__}: {err})") from err
    end = f.tell()
    f.seek(start)
    return f.read(end - start)


class TorchLegacyReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        with open(self.path, "rb") as f:
            magic = _unpickle(_next_pickle(f, self.path, "magic number"), self.path, None)
            if magic != LEGACY_MAGIC:
                raise fail(self.path, "not a PyTorch checkpoint (bad magic number)")
            proto = _unpickle(_next_pickle(f, self.path, "protocol"), self.path, None)
            if proto != LEGACY_PROTOCOL:
                raise fail(self.path, f"unsupported legacy protocol {proto!r}")
            sys_info = _unpickle(_next_pickle(f, self.path, "system info"), self.path, None)
            little = not (isinstance(sys_info, dict) and sys_info.get("little_endian") is False)
            types: dict[str, _StorageType] = {}

            def note(key: str, stype: _StorageType, _numel: int) -> None:
                types[key] = stype

            tree = _unpickle(_next_pickle(f, self.path, "object"), self.path, note)
            keys = _unpickle(_next_pickle(f, self.path, "storage key"), self.path, None)
            if not isinstance(keys, list) or not all(isinstance(k, str) and k in types for k in keys):
                raise fail(self.path, "bad storage key list")
            where: dict[str, tuple[int, int]] = {}
            for key in keys:
                head = f.read(8)
                if len(head) != 8:
                    raise fail(self.path, f"truncated before storage {key}")
                (numel,) = struct.unpack("<Q" if little else ">Q", head)
                nbytes = numel * types[key].itemsize
                if nbytes > file_size(self.path):  # seek() itself fails on absurd offsets
                    raise fail(self.path, f"truncated: storage {key} claims {numel} elements, past the end of the file")
                where[key] = (f.tell(), nbytes)
                f.seek(nbytes, io.SEEK_CUR)
            end = f.seek(0, io.SEEK_END)
            flat: list[tuple[str, _LazyTensor]] = []
            _flatten(tree, "", flat)
            for name, t in flat:
                if t.storage.key not in where:
                    raise fail(self.path, f"tensor {name!r} uses a storage that is not in the file")
                off, nbytes = where[t.storage.key]
                if off + nbytes > end:
                    raise fail(self.path, f"truncated: storage {t.storage.key} ends past the end of the file")
                f.seek(off)
                yield name, _materialize(self.path, t, f.read(nbytes), not little)
