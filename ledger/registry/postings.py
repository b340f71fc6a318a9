"""Posting lists of log indices as one aux key per posting. Pure.

A list lives under a *list key*; its posting for log index ``i`` is the key
``list key || i (8 bytes, big-endian)`` with a small value (empty, or a label such
as a lineage relation). Appending is a blind write -- no read of the list first --
so the sequencer indexes a manifest's digests at the store's write speed, and a
prefix scan lists the postings in key order, which is index order: earliest first.
The first posting of a list is the first registration.

Requires every list key under one index letter to have the same length, so no list
key is a prefix of another list's keys (keys.py fixes each length).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_U64 = struct.Struct(">Q")

Scan = Callable[[bytes, "int | None"], list[tuple[bytes, bytes]]]
"""``scan(prefix, limit)``: aux ``(key, value)`` pairs under ``prefix`` in key order (``Storage.scan_aux``)."""


def posting(list_key: bytes, index: int) -> bytes:
    """The key of ``index``'s posting in the list ``list_key``."""
    return list_key + _U64.pack(index)


def suffix(index: int) -> bytes:
    """What :func:`posting` appends to a list key (to build many postings of one index at C speed)."""
    return _U64.pack(index)


def read(scan: Scan, list_key: bytes, limit: int | None = None) -> list[int]:
    """The indices in the list ``list_key``, earliest first (at most ``limit``)."""
    return [_U64.unpack_from(k, len(k) - 8)[0] for k, _ in scan(list_key, limit)]


def read_labelled(scan: Scan, list_key: bytes, limit: int | None = None) -> list[tuple[int, bytes]]:
    """``(index, value)`` of each posting in the list ``list_key``, earliest first (at most ``limit``)."""
    return [(_U64.unpack_from(k, len(k) - 8)[0], v) for k, v in scan(list_key, limit)]
