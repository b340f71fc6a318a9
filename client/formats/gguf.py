"""GGUF (llama.cpp, ggml docs/gguf.md): header, metadata, tensor infos; regions and dequantized tensors.

Layout (GGUF v2/v3, little-endian): "GGUF" | u32 version | u64 tensor count | u64 metadata
count | metadata (key string, u32 value type, value) | tensor infos (name string, u32 n_dims,
n_dims x u64 dims, u32 ggml type, u64 offset) | padding to ``general.alignment`` (default 32)
| tensor data. Strings are u64 length + UTF-8. Dims list the fastest-varying axis first, so
the row-major shape is their reverse.

Regions (manifests): every ggml type of :data:`TYPES` has a byte size (blocks of ``block``
values of ``size`` bytes), so every tensor has a byte range; its dtype is the ggml type name.
Plain types (F32, F16, BF16, F64, I8..I64) are stored as safetensors stores them, so the same
tensor has the same digest in both; quantized types are digested as their raw block bytes.
Reading (:class:`GgufReader`) dequantizes the types of :mod:`.gguf_quants`; any other type
raises a FormatError naming the type.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from client.formats.arrays import Tensor, as_array
from client.formats.base import (
    MAX_NAME,
    MAX_NDIM,
    MAX_TENSORS,
    Layout,
    TensorRegion,
    check_dims,
    check_name,
    element_count,
    fail,
)
from client.formats.gguf_quants import BLOCKS, KBLOCKS, dequantize
from client.formats.source import PathSource, Source

FORMAT = "gguf"
MAGIC = b"GGUF"
MAX_KV = 1_000_000
MAX_ARRAY = 100_000_000
_READ_AHEAD = 1 << 16

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

#: ggml type id -> (name, values per block, bytes per block), as ggml's type traits.
TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}
_TYPE_IDS = {name: tid for tid, (name, _b, _s) in TYPES.items()}


class _Cursor:
    """Sequential reads through a source, ``_READ_AHEAD`` bytes buffered (metadata holds many short strings)."""

    def __init__(self, source: Source, pos: int = 0) -> None:
        self.src = source
        self.pos = pos
        self._buf = b""
        self._at = pos

    def take(self, n: int, what: str) -> bytes:
        lo = self.pos - self._at
        if lo + n > len(self._buf):
            if self.pos + n > self.src.size:
                raise fail(self.src.name, f"truncated while reading {what} (wanted {n} bytes at {self.pos})")
            self._at = self.pos
            self._buf = self.src.read(self.pos, max(n, min(_READ_AHEAD, self.src.size - self.pos)), what)
            lo = 0
        self.pos += n
        return self._buf[lo : lo + n]

    def unpack(self, fmt: str, what: str) -> tuple[object, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def u32(self, what: str) -> int:
        v = self.unpack("<I", what)[0]
        assert isinstance(v, int)
        return v

    def u64(self, what: str) -> int:
        v = self.unpack("<Q", what)[0]
        assert isinstance(v, int)
        return v

    def string(self, what: str, limit: int = 1 << 20) -> str:
        n = self.u64(what)
        if n > limit:
            raise fail(self.src.name, f"{what} string of {n} bytes exceeds {limit}")
        try:
            return self.take(n, what).decode()
        except UnicodeDecodeError as err:
            raise fail(self.src.name, f"{what} is not UTF-8") from err

    def value(self, vtype: int, what: str, depth: int = 0) -> object:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype], what)[0]
        if vtype == 8:
            return self.string(what)
        if vtype == 9 and depth == 0:
            etype = self.u32(what)
            count = self.u64(what)
            if count > MAX_ARRAY:
                raise fail(self.src.name, f"{what}: array of {count} items exceeds {MAX_ARRAY}")
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype]) * count
                if self.pos + size > self.src.size:
                    raise fail(self.src.name, f"truncated while reading {what}")
                self.pos += size  # skipped, not read: the buffer is refilled on the next take
                return f"<array of {count}>"
            return [self.value(etype, what, depth + 1) for _ in range(count)]
        raise fail(self.src.name, f"{what}: unknown metadata value type {vtype}")


def _nbytes(where: str, tname: str, shape: tuple[int, ...], tid: int) -> int:
    if tid not in TYPES:
        raise fail(where, f"tensor {tname!r}: unknown GGUF tensor type {tid}")
    type_name, block, size = TYPES[tid]
    count = element_count(shape)
    if block > 1 and (not shape or shape[-1] % block):
        raise fail(where, f"tensor {tname!r}: row length not a multiple of {block} ({type_name})")
    return count // block * size


def layout(source: Source, require: Callable[[str, str], None] | None = None) -> tuple[dict[str, object], Layout]:
    """(metadata, tensors) of a GGUF file. ``require(tensor, type_name)``, if given, is called for
    each tensor before its bytes are located (the reader refuses types it cannot dequantize)."""
    where = source.name
    s = _Cursor(source)
    if s.take(4, "magic") != MAGIC:
        raise fail(where, "not a GGUF file (bad magic)")
    version = s.u32("version")
    if version not in (2, 3):
        raise fail(where, f"unsupported GGUF version {version}")
    n_tensors, n_kv = s.u64("tensor count"), s.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise fail(where, f"implausible counts ({n_tensors} tensors, {n_kv} metadata)")
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = s.string("metadata key", MAX_NAME)
        meta[key] = s.value(s.u32(f"type of {key}"), key)
    raw_infos = []
    for _ in range(n_tensors):
        name = s.string("tensor name", MAX_NAME)
        ndim = s.u32(f"ndim of {name}")
        if ndim > MAX_NDIM:
            raise fail(where, f"tensor {name!r} has {ndim} dimensions")
        dims = [s.u64(f"dims of {name}") for _ in range(ndim)]
        raw_infos.append((name, tuple(reversed(dims)), s.u32(f"type of {name}"), s.u64(f"offset of {name}")))
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
        raise fail(where, f"bad general.alignment {align!r}")
    base = (s.pos + align - 1) // align * align
    regions: list[TensorRegion] = []
    seen: set[str] = set()
    for name, rev_dims, tid, off in raw_infos:
        check_name(where, name)
        shape = check_dims(where, name, rev_dims)
        if name in seen:
            raise fail(where, f"tensor {name!r} appears twice")
        seen.add(name)
        if require is not None:
            require(name, TYPES[tid][0] if tid in TYPES else f"type {tid}")
        nbytes = _nbytes(where, name, shape, tid)
        start = base + off
        if start + nbytes > source.size:
            raise fail(where, f"truncated: tensor {name!r} ends past the end of the file")
        regions.append(TensorRegion(name, TYPES[tid][0], shape, start, start + nbytes))
    return meta, Layout(FORMAT, tuple(regions))


_PLAIN = ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")


def _dequantizable(path: Path) -> Callable[[str, str], None]:
    def require(name: str, type_name: str) -> None:
        if type_name not in _PLAIN and _TYPE_IDS.get(type_name) not in BLOCKS.keys() | KBLOCKS.keys():
            raise fail(path, f"tensor {name!r}: GGUF tensor type {type_name} is not supported")

    return require


class GgufReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        with PathSource(self.path) as src:
            _meta, lay = layout(src, _dequantizable(self.path))
            for r in lay.tensors:
                raw = src.array(r.start, r.end - r.start, f"tensor {r.name!r}")
                if r.dtype in _PLAIN:
                    yield r.name, as_array(raw, r.dtype, r.shape)
                else:
                    yield r.name, dequantize(_TYPE_IDS[r.dtype], raw, r.shape)
