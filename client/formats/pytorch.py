"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``) without torch and without running code.

Two layouts (torch/serialization.py):

- the zip format (torch >= 1.6): ``<prefix>/data.pkl`` holds the object tree, each storage is
  the entry ``<prefix>/data/<key>``; ``<prefix>/byteorder`` says "little" or "big";
- the legacy format: five consecutive pickles/blocks — magic number, protocol version,
  system info, the object tree, the list of storage keys — then each storage as a u64 element
  count followed by its raw bytes, in the order of that list.

The object tree is unpickled by :class:`client.formats._unpickle.RestrictedUnpickler`. A tensor
is a view of a storage: element offset, size and strides. Regions (manifests): a contiguous view
(C-order strides) of a storage whose bytes lie uncompressed in the file is one byte range, hashed
in place (``byteswap`` for a big-endian file). A non-contiguous view (a transpose, a slice with a
step) has no byte range and is left out of the digests, with that reason, rather than copied
into memory to be hashed in logical order; likewise a storage in a compressed zip entry (torch
itself never compresses). Reading (:class:`TorchReader`) materialises every view; a compressed
storage must declare exactly the bytes its pickle says and is inflated within the bounds of
:func:`client.formats._zip.zip_read` (no zip bomb).
"""

from __future__ import annotations

import io
import pickletools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from client.formats import LEGACY_MAGIC
from client.formats._unpickle import (
    LEGACY_PROTOCOL,
    MAX_PICKLE,
    LazyTensor,
    StorageType,
    flatten,
    unpickle,
)
from client.formats._zip import member_span, open_zip, zip_read
from client.formats.arrays import Tensor, bf16_to_f32
from client.formats.base import NUMPY_DTYPES, Layout, TensorRegion, check_dims, fail
from client.formats.source import PathSource, Source, open_stream

FORMAT = "pytorch"


@dataclass(frozen=True)
class _Checkpoint:
    """A parsed checkpoint: its tensors (by flattened name) and where each storage's bytes lie
    (``(start, nbytes)``, or None for a compressed zip entry)."""

    tensors: list[tuple[str, LazyTensor]]
    storages: dict[str, tuple[int, int] | None]
    big_endian: bool
    zip_prefix: str = ""


def _zip(source: Source) -> _Checkpoint:
    with open_zip(source) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise fail(source.name, "zip archive is not a PyTorch checkpoint (no single <prefix>/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        if zf.getinfo(pkls[0]).file_size > MAX_PICKLE:
            raise fail(source.name, f"object pickle of {zf.getinfo(pkls[0]).file_size} bytes exceeds {MAX_PICKLE}")
        big = False
        if prefix + "byteorder" in zf.namelist():
            order = zip_read(zf, prefix + "byteorder", source.name, limit=16).strip()
            if order not in (b"little", b"big"):
                raise fail(source.name, f"bad byteorder {order!r}")
            big = order == b"big"
        flat: list[tuple[str, LazyTensor]] = []
        flatten(unpickle(zip_read(zf, pkls[0], source.name, limit=MAX_PICKLE), source.name, _ignore), "", flat)
        storages: dict[str, tuple[int, int] | None] = {}
        for _name, t in flat:
            member = f"{prefix}data/{t.storage.key}"
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise fail(source.name, f"missing archive entry {member}") from None
            storages[t.storage.key] = member_span(source, info)
    return _Checkpoint(flat, storages, big, prefix)


def _ignore(_key: str, _stype: StorageType, _numel: int) -> None:
    return None


def _next_pickle(f: IO[bytes], where: str, what: str) -> bytes:
    """One complete pickle from the current position, found by parsing opcodes (nothing is
    executed); bounded by MAX_PICKLE."""
    start = f.tell()
    try:
        for op, _arg, pos in pickletools.genops(f):
            if pos is not None and pos - start > MAX_PICKLE:
                raise fail(where, f"{what} pickle larger than {MAX_PICKLE} bytes")
            if op.name == "STOP":
                break
    except (ValueError, EOFError, IndexError, struct.error, UnicodeDecodeError, MemoryError, OverflowError) as err:
        # MemoryError/OverflowError: an opcode claiming an absurd length (genops tries to read it all).
        raise fail(where, f"truncated or malformed {what} pickle ({type(err).__name__}: {err})") from err
    end = f.tell()
    f.seek(start)
    return f.read(end - start)


def _legacy(source: Source) -> _Checkpoint:
    where = source.name
    f = open_stream(source)
    if unpickle(_next_pickle(f, where, "magic number"), where, None) != LEGACY_MAGIC:
        raise fail(where, "not a PyTorch checkpoint (bad magic number)")
    proto = unpickle(_next_pickle(f, where, "protocol"), where, None)
    if proto != LEGACY_PROTOCOL:
        raise fail(where, f"unsupported legacy protocol {proto!r}")
    sys_info = unpickle(_next_pickle(f, where, "system info"), where, None)
    little = not (isinstance(sys_info, dict) and sys_info.get("little_endian") is False)
    types: dict[str, StorageType] = {}

    def note(key: str, stype: StorageType, _numel: int) -> None:
        types[key] = stype

    tree = unpickle(_next_pickle(f, where, "object"), where, note)
    keys = unpickle(_next_pickle(f, where, "storage key"), where, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in types for k in keys):
        raise fail(where, "bad storage key list")
    storages: dict[str, tuple[int, int] | None] = {}
    for key in keys:
        head = f.read(8)
        if len(head) != 8:
            raise fail(where, f"truncated before storage {key}")
        (numel,) = struct.unpack("<Q" if little else ">Q", head)
        nbytes = numel * types[key].itemsize
        if f.tell() + nbytes > source.size:
            raise fail(where, f"truncated: storage {key} claims {numel} elements, past the end of the file")
        storages[key] = (f.tell(), nbytes)
        f.seek(nbytes, io.SEEK_CUR)
    flat: list[tuple[str, LazyTensor]] = []
    flatten(tree, "", flat)
    for name, t in flat:
        if t.storage.key not in storages:
            raise fail(where, f"tensor {name!r} uses a storage that is not in the file")
    return _Checkpoint(flat, storages, not little)


def _parse(source: Source) -> _Checkpoint:
    head = source.read(0, min(4, source.size), "magic")
    return _zip(source) if head.startswith(b"PK") else _legacy(source)


def _check_view(where: str, t: LazyTensor, nbytes: int) -> int:
    """Validate a view against its storage of ``nbytes`` bytes; returns the view's element count."""
    st = t.storage.stype
    if nbytes != t.storage.numel * st.itemsize:
        raise fail(where, f"storage {t.storage.key}: {nbytes} bytes for {t.storage.numel} elements")
    check_dims(where, f"view of storage {t.storage.key}", t.size)
    numel = 1
    for d in t.size:
        numel *= d
    if len(t.size) != len(t.stride):
        raise fail(where, "tensor size and stride differ in length")
    if t.offset < 0:  # a negative offset made the strided view read memory before the storage (fuzz finding)
        raise fail(where, f"tensor view of storage {t.storage.key} has a negative offset {t.offset}")
    if numel:
        last = t.offset + sum((d - 1) * s for d, s in zip(t.size, t.stride, strict=True))
        if last >= t.storage.numel:
            raise fail(where, f"tensor view out of bounds of storage {t.storage.key}")
    if numel > t.storage.numel:
        # More elements than its storage holds: a view that reads storage elements more than once
        # (stride 0, as from expand()). Read out, a few bytes of file could ask for terabytes
        # (fuzz finding: a 24 GB allocation, OOM-killed); no saved weight is such a view.
        raise fail(where, f"tensor of shape {t.size} with strides {t.stride} reads its storage "
                          f"{t.storage.key} of {t.storage.numel} elements more than once (an expanded view); "
                          "only views that read each element at most once are supported")
    return numel


def _contiguous(t: LazyTensor) -> bool:
    step = 1
    for d, s in zip(reversed(t.size), reversed(t.stride), strict=True):
        if d != 1 and s != step:
            return False
        step *= d
    return True


def layout(source: Source) -> Layout:
    """Regions of a PyTorch checkpoint's tensors, sorted by name (see the module docstring)."""
    ck = _parse(source)
    regions: dict[str, TensorRegion] = {}
    skipped: list[tuple[str, str]] = []
    for name, t in ck.tensors:
        span = ck.storages[t.storage.key]
        item = t.storage.stype.itemsize
        if span is None:
            skipped.append((name, f"storage {t.storage.key} is a compressed zip entry: no byte range"))
            continue
        numel = _check_view(source.name, t, span[1])
        if numel and not _contiguous(t):
            skipped.append((name, f"non-contiguous view (strides {list(t.stride)}): no byte range"))
            continue
        start = span[0] + t.offset * item if numel else span[0]
        swap = item if ck.big_endian and item > 1 else 0
        if name in regions:
            raise fail(source.name, f"tensor {name!r} appears twice")
        regions[name] = TensorRegion(name, t.storage.stype.dtype, t.size, start, start + numel * item, byteswap=swap)
    return Layout(FORMAT, tuple(regions[n] for n in sorted(regions)), tuple(skipped))


def _materialize(where: str, t: LazyTensor, raw: bytes, big_endian: bool) -> npt.NDArray[np.generic]:
    numel = _check_view(where, t, len(raw))
    dtype = t.storage.stype.dtype
    base_dt = np.dtype(NUMPY_DTYPES[dtype])
    if big_endian:
        base_dt = base_dt.newbyteorder(">")
    if not numel:  # no element is read: strides and offset do not matter (and may not fit a C long)
        view = np.zeros(t.size, dtype=base_dt)
    else:
        # A dim of size 1 is never stepped along: its stride (any int) is set to 0 so that every stride
        # left is bounded by the storage (checked above), and fits numpy's C long (make fuzz).
        flat = np.frombuffer(raw, dtype=base_dt)
        view = np.lib.stride_tricks.as_strided(
            flat[t.offset:], shape=t.size,
            strides=tuple(0 if d == 1 else s * base_dt.itemsize for d, s in zip(t.size, t.stride, strict=True)),
        )
    arr = np.ascontiguousarray(view).astype(base_dt.newbyteorder("<"), copy=False)
    return bf16_to_f32(arr.view(np.uint16)) if dtype == "BF16" else arr


class TorchReader:
    """A PyTorch checkpoint, zip or legacy; every tensor materialised (views copied out)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        with PathSource(self.path) as src:
            ck = _parse(src)
            zf = open_zip(src) if None in ck.storages.values() else None
            try:
                for name, t in ck.tensors:
                    span = ck.storages[t.storage.key]
                    if span is None:
                        assert zf is not None
                        raw = zip_read(zf, f"{ck.zip_prefix}data/{t.storage.key}", src.name,
                                       expected=t.storage.numel * t.storage.stype.itemsize)
                    else:
                        raw = src.read(span[0], span[1], f"storage {t.storage.key}")
                    yield name, _materialize(src.name, t, raw, ck.big_endian)
            finally:
                if zf is not None:
                    zf.close()
