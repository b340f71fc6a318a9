"""safetensors (huggingface/safetensors, "Format"): single files and sharded folders.

Layout, per the specification:

* 8 bytes: ``N``, an unsigned little-endian 64-bit integer, the header size;
* ``N`` bytes: a UTF-8 JSON object, starting with ``{``, possibly padded at the end with spaces
  (0x20). Keys are tensor names mapping to ``{"dtype": str, "shape": [int], "data_offsets":
  [begin, end]}``; the optional special key ``__metadata__`` maps to a string-to-string object;
* the rest of the file: the byte buffer. ``data_offsets`` are relative to its start, tensors are
  stored little-endian, row-major, and the buffer must be entirely indexed: no holes, no overlaps.

Bounded: the header size (100,000,000 bytes, as the reference implementation), its JSON nesting
depth (:mod:`client.core.jsonlimits`, measured before the JSON parser recurses), the tensor count,
the rank, name length and dimensions (:mod:`.base`); duplicate JSON keys, unknown dtypes, sizes
that disagree with dtype x shape and any hole or overlap are refused. The stored bytes are the
tensor digest's input as they are (docs/manifest.md, "Tensor digests").
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.core.jsonlimits import MAX_DEPTH, nesting_depth
from client.core.jsonlimits import loads as json_loads
from client.errors import FormatError
from client.formats.base import (
    MAX_TENSORS,
    NUMPY_DTYPES,
    Layout,
    TensorRegion,
    check_dims,
    check_name,
    fail,
)
from client.formats.source import PathSource, Source

if TYPE_CHECKING:
    from client.formats.arrays import Tensor

FORMAT = "safetensors"
MAX_HEADER_SIZE = 100_000_000
METADATA_KEY = "__metadata__"

#: Bits per element of every dtype the specification lists.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
    "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


def _uint(name: str, v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise fail(name, f"safetensors header: {what} must be a non-negative integer")
    return v


def parse_header(header: bytes, data_size: int, name: str = "safetensors") -> list[TensorRegion]:
    """Tensor regions from a header's JSON bytes, given the byte buffer's size.

    Offsets in the result are relative to the byte buffer (:func:`layout` shifts them to file
    offsets). Raises TensorFormatError (naming ``name``) on any violation.
    """
    if not header.startswith(b"{"):
        raise fail(name, "safetensors header must start with '{'")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise fail(name, f"safetensors header: duplicate key {k!r}")
            out[k] = v
        return out

    try:
        text = header.decode("utf-8").rstrip(" ")
        if not text.endswith("}"):
            raise fail(name, "safetensors header must end with '}' and only spaces may pad it")
        if (depth := nesting_depth(text)) > MAX_DEPTH:  # before json recurses (client/core/jsonlimits.py)
            raise fail(name, f"safetensors header nests {depth} levels deep, more than {MAX_DEPTH}")
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise fail(name, f"safetensors header is not UTF-8 JSON: {e}") from e
    if not isinstance(obj, dict):
        raise fail(name, "safetensors header must be a JSON object")
    meta = obj.pop(METADATA_KEY, {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail(name, "safetensors __metadata__ must map strings to strings")
    if len(obj) > MAX_TENSORS:
        raise fail(name, f"safetensors header: more than {MAX_TENSORS} tensors")
    out: list[TensorRegion] = []
    for tname, info in obj.items():
        if not tname:
            raise fail(name, "safetensors header: empty tensor name")
        check_name(name, tname)
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(name, f"tensor {tname!r}: needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise fail(name, f"tensor {tname!r}: unknown dtype {dtype!r}")
        dims = check_dims(name, tname, shape)
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise fail(name, f"tensor {tname!r}: data_offsets must be [begin, end]")
        begin, end = (_uint(name, o, f"tensor {tname!r} data_offsets") for o in offsets)
        if not begin <= end <= data_size:
            raise fail(name, f"tensor {tname!r}: data_offsets [{begin}, {end}] outside the buffer of {data_size}")
        bits = math.prod(dims) * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            raise fail(name, f"tensor {tname!r}: {end - begin} bytes do not hold {dtype} x {list(dims)}")
        out.append(TensorRegion(name=tname, dtype=dtype, shape=dims, start=begin, end=end))
    cursor = 0
    for r in sorted(out, key=lambda r: (r.start, r.end)):
        if r.start != cursor:
            raise fail(name, f"safetensors buffer has a hole or overlap at {cursor} (tensor {r.name!r})")
        cursor = r.end
    if cursor != data_size:
        raise fail(name, f"safetensors buffer has {data_size - cursor} unindexed trailing bytes")
    return out


def layout(source: Source) -> Layout:
    """The tensors of a safetensors file, in file offsets, sorted by name."""
    if source.size < 8:
        raise fail(source.name, "safetensors file shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", source.read(0, 8))
    if n > MAX_HEADER_SIZE or n > source.size - 8:
        raise fail(source.name, f"safetensors header length {n} exceeds the file ({source.size} bytes) "
                                f"or {MAX_HEADER_SIZE}")
    base = 8 + n
    rel = parse_header(source.read(8, n, "header"), source.size - base, source.name)
    regions = sorted(
        (TensorRegion(r.name, r.dtype, r.shape, base + r.start, base + r.end) for r in rel), key=lambda r: r.name
    )
    return Layout(FORMAT, tuple(regions))


class SafetensorsReader:
    """One ``.safetensors`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with PathSource(path) as src:
            self._layout = layout(src)

    def names(self) -> list[str]:
        return [r.name for r in self._layout.tensors]

    def tensors(self) -> Iterator[Tensor]:
        from client.formats.arrays import as_array

        with PathSource(self.path) as src:
            for r in sorted(self._layout.tensors, key=lambda r: r.start):
                if r.dtype not in NUMPY_DTYPES:
                    raise fail(self.path, f"tensor {r.name!r} has unsupported dtype {r.dtype!r}")
                yield r.name, as_array(src.array(r.start, r.end - r.start, f"tensor {r.name!r}"), r.dtype, r.shape)


class ShardedSafetensorsReader:
    """A folder of shards, listed by a ``*.safetensors.index.json`` (``weight_map``: name -> file),
    or, without an index, every ``*.safetensors`` file in the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if len(indexes) > 1:
            raise fail(path, "more than one *.safetensors.index.json")
        if indexes:
            try:
                index = json_loads(indexes[0].read_bytes(), "safetensors index")
                weight_map = index["weight_map"]
                files = sorted(set(weight_map.values()))
            except FormatError as err:
                raise fail(indexes[0], str(err)) from err
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise fail(indexes[0], f"bad safetensors index ({err})") from err
            for fname in files:
                if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
                    raise fail(indexes[0], f"index names a file outside the folder: {fname!r}")
            self._shards = [SafetensorsReader(path / f) for f in files]
            listed = {n for s in self._shards for n in s.names()}
            missing = set(weight_map) - listed
            if missing:
                raise fail(indexes[0], f"index lists tensors not in any shard: {sorted(missing)[:5]}")
        else:
            files = sorted(p.name for p in path.glob("*.safetensors"))
            if not files:
                raise fail(path, "folder holds no .safetensors files")
            self._shards = [SafetensorsReader(path / f) for f in files]

    def tensors(self) -> Iterator[Tensor]:
        seen: set[str] = set()
        for shard in self._shards:
            for name, arr in shard.tensors():
                if name in seen:
                    raise fail(shard.path, f"tensor {name!r} appears in more than one shard")
                seen.add(name)
                yield name, arr
