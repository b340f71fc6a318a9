"""Append-only posting lists of log indices over a get/put store, O(1) reads per append.

A list under ``key`` is a head value ``count(8) || tail`` where the tail holds the
last ``count % BLOCK`` indices, plus full blocks of ``BLOCK`` indices at
``key || block_number(4)``. Appending reads the head only; reading a whole list
reads the head and ``count // BLOCK`` blocks. Indices are appended in log order,
so lists are sorted (earliest first).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

BLOCK = 128
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def append(head: bytes | None, key: bytes, index: int) -> list[tuple[bytes, bytes]]:
    """The writes that append ``index`` to the list whose current head value is ``head``."""
    if head is None:
        return [(key, _U64.pack(1) + _U64.pack(index))]
    count = _U64.unpack_from(head)[0]
    tail = head[8:] + _U64.pack(index)
    count += 1
    if count % BLOCK == 0:
        return [(key + _U32.pack(count // BLOCK - 1), tail), (key, _U64.pack(count))]
    return [(key, _U64.pack(count) + tail)]


def _unpack(data: bytes) -> list[int]:
    return [v for (v,) in _U64.iter_unpack(data)]


def read(get_many: Callable[[Sequence[bytes]], list[bytes | None]], key: bytes, limit: int | None = None) -> list[int]:
    """The list under ``key``, earliest first (at most ``limit`` entries)."""
    head = get_many([key])[0]
    if head is None:
        return []
    count = _U64.unpack_from(head)[0]
    blocks = count // BLOCK
    want = blocks if limit is None else min(blocks, -(-limit // BLOCK))
    out: list[int] = []
    if want:
        for value in get_many([key + _U32.pack(b) for b in range(want)]):
            if value is not None:
                out.extend(_unpack(value))
    if limit is None or len(out) < limit:
        out.extend(_unpack(head[8:]))
    return out if limit is None else out[:limit]


def count(head: bytes | None) -> int:
    return 0 if head is None else int(_U64.unpack_from(head)[0])
