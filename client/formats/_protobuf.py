"""A minimal, bounded protobuf wire-format decoder (enough to read ONNX initializers).

Only the wire format is decoded (https://protobuf.dev/programming-guides/encoding/):
varint (0), fixed64 (1), length-delimited (2) and fixed32 (5); groups (3, 4) are refused.
Errors raise :class:`FormatError` naming the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from client.formats.base import fail

Value = int | memoryview


def _varint(buf: memoryview, pos: int, path: Path | str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise fail(path, "truncated protobuf (varint runs past the end)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise fail(path, "malformed protobuf (varint longer than 10 bytes)")


def fields(buf: memoryview, path: Path | str, base: int = 0) -> Iterator[tuple[int, int, Value, int]]:
    """Yield (field number, wire type, value, offset) for each field of one message.

    ``offset`` is where the value's bytes start: ``base`` (the buffer's own offset in the file)
    plus the position in ``buf``.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, path)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise fail(path, "malformed protobuf (field number 0)")
        if wire == 0:
            at = pos
            value, pos = _varint(buf, pos, path)
            yield field, wire, value, base + at
        elif wire == 1:
            if pos + 8 > end:
                raise fail(path, "truncated protobuf (fixed64)")
            yield field, wire, struct.unpack_from("<Q", buf, pos)[0], base + pos
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise fail(path, "truncated protobuf (fixed32)")
            yield field, wire, struct.unpack_from("<I", buf, pos)[0], base + pos
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos, path)
            if pos + n > end:
                raise fail(path, f"truncated protobuf (field {field} wants {n} bytes, {end - pos} left)")
            yield field, wire, buf[pos : pos + n], base + pos
            pos += n
        else:
            raise fail(path, f"unsupported protobuf wire type {wire}")


def packed_varints(value: Value, path: Path | str) -> list[int]:
    """A repeated varint field: either one unpacked value or a packed run."""
    if isinstance(value, int):
        return [value]
    out = []
    pos = 0
    while pos < len(value):
        v, pos = _varint(value, pos, path)
        out.append(v)
    return out


def signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v
