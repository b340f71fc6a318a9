"""A strict parser for the safetensors container (huggingface/safetensors, "Format").

Layout, per the specification:

* 8 bytes: ``N``, an unsigned little-endian 64-bit integer, the header size;
* ``N`` bytes: a UTF-8 JSON object, starting with ``{``, possibly padded at the
  end with spaces (0x20). Keys are tensor names mapping to
  ``{"dtype": str, "shape": [int], "data_offsets": [begin, end]}``; the optional
  special key ``__metadata__`` maps to a string-to-string object;
* the rest of the file: the byte buffer. ``data_offsets`` are relative to its
  start, tensors are stored little-endian, row-major, and the buffer must be
  entirely indexed: no holes, no overlaps.

Everything is bounded: the header size (100 MB, as the reference
implementation), the tensor count, the rank; duplicate JSON keys, unknown
dtypes, sizes that disagree with dtype x shape and any hole or overlap are
refused with :class:`TensorFormatError`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from client.core.manifest.errors import TensorFormatError
from client.hashing.tensors import REGISTRY, ReadAt, TensorRegion

MAX_HEADER_SIZE = 100_000_000
MAX_TENSORS = 1_000_000
MAX_RANK = 32
METADATA_KEY = "__metadata__"

#: Bits per element of every dtype the specification lists.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise TensorFormatError(f"safetensors header: duplicate key {k!r}")
        out[k] = v
    return out


def _uint(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise TensorFormatError(f"safetensors header: {what} must be a non-negative integer")
    return v


def parse_header(header: bytes, data_size: int) -> list[TensorRegion]:
    """Tensor regions from a header's JSON bytes, given the byte buffer's size.

    Offsets in the result are relative to the byte buffer; :func:`regions`
    shifts them to file offsets. Raises TensorFormatError on any violation.
    """
    if not header.startswith(b"{"):
        raise TensorFormatError("safetensors header must start with '{'")
    try:
        text = header.decode("utf-8").rstrip(" ")
        if not text.endswith("}"):
            raise TensorFormatError("safetensors header must end with '}' and only spaces may pad it")
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise TensorFormatError(f"safetensors header is not UTF-8 JSON: {e}") from e
    if not isinstance(obj, dict):
        raise TensorFormatError("safetensors header must be a JSON object")
    meta = obj.pop(METADATA_KEY, {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise TensorFormatError("safetensors __metadata__ must map strings to strings")
    if len(obj) > MAX_TENSORS:
        raise TensorFormatError(f"safetensors header: more than {MAX_TENSORS} tensors")
    out: list[TensorRegion] = []
    for name, info in obj.items():
        if not name:
            raise TensorFormatError("safetensors header: empty tensor name")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise TensorFormatError(f"tensor {name!r}: needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise TensorFormatError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            raise TensorFormatError(f"tensor {name!r}: shape must be a list of at most {MAX_RANK} dims")
        dims = tuple(_uint(d, f"tensor {name!r} shape") for d in shape)
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise TensorFormatError(f"tensor {name!r}: data_offsets must be [begin, end]")
        begin, end = (_uint(o, f"tensor {name!r} data_offsets") for o in offsets)
        if not begin <= end <= data_size:
            raise TensorFormatError(f"tensor {name!r}: data_offsets [{begin}, {end}] outside the buffer")
        bits = math.prod(dims) * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            raise TensorFormatError(f"tensor {name!r}: {end - begin} bytes do not hold {dtype} x {list(dims)}")
        out.append(TensorRegion(name=name, dtype=dtype, shape=dims, start=begin, end=end))
    cursor = 0
    for r in sorted(out, key=lambda r: (r.start, r.end)):
        if r.start != cursor:
            raise TensorFormatError(f"safetensors buffer has a hole or overlap at {cursor} (tensor {r.name!r})")
        cursor = r.end
    if cursor != data_size:
        raise TensorFormatError(f"safetensors buffer has {data_size - cursor} unindexed trailing bytes")
    return out


def regions(read_at: ReadAt, size: int) -> list[TensorRegion]:
    """Tensor regions of a safetensors file of ``size`` bytes, in file offsets, sorted by name."""
    if size < 8:
        raise TensorFormatError("safetensors file shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", read_at(0, 8))
    if n > MAX_HEADER_SIZE or n > size - 8:
        raise TensorFormatError(f"safetensors header length {n} exceeds the file or {MAX_HEADER_SIZE}")
    base = 8 + n
    rel = parse_header(read_at(8, n), size - base)
    return sorted(
        (TensorRegion(r.name, r.dtype, r.shape, base + r.start, base + r.end) for r in rel),
        key=lambda r: r.name,
    )


class SafetensorsFormat:
    """The safetensors container; claims files named ``*.safetensors``."""

    name = "safetensors"

    def claims(self, filename: str, head: bytes) -> bool:
        return filename.endswith(".safetensors")

    def regions(self, read_at: ReadAt, size: int) -> Sequence[TensorRegion]:
        return regions(read_at, size)


FORMAT = SafetensorsFormat()
REGISTRY.register(FORMAT)
