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

import numpy as np

_U64 = struct.Struct(">Q")

Scan = Callable[[bytes, "int | None"], list[tuple[bytes, bytes]]]
"""``scan(prefix, limit)``: aux ``(key, value)`` pairs under ``prefix`` in key order (``Storage.scan_aux``)."""


def posting(list_key: bytes, index: int) -> bytes:
    """The key of ``index``'s posting in the list ``list_key``."""
    return list_key + _U64.pack(index)


def stamp(list_keys: bytes, width: int, index: int) -> list[bytes]:
    """The postings of ``index`` in each list whose key is a ``width``-byte slice of ``list_keys``.

    Equal to ``[posting(k, index) for k in slices]``, built in C (one numpy copy, one ``tolist``)
    because a manifest has tens of thousands of them and this runs in the sequencer.
    """
    n = len(list_keys) // width
    out = np.empty((n, width + 8), np.uint8)
    out[:, :width] = np.frombuffer(list_keys, np.uint8).reshape(n, width)
    out[:, width:] = np.frombuffer(_U64.pack(index), np.uint8)
    keys: list[bytes] = out.view(f"V{width + 8}").ravel().tolist()  # void items come out as bytes
    return keys


def read(scan: Scan, list_key: bytes, limit: int | None = None) -> list[int]:
    """The indices in the list ``list_key``, earliest first (at most ``limit``)."""
    return [_U64.unpack_from(k, len(k) - 8)[0] for k, _ in scan(list_key, limit)]


def read_labelled(scan: Scan, list_key: bytes, limit: int | None = None) -> list[tuple[int, bytes]]:
    """``(index, value)`` of each posting in the list ``list_key``, earliest first (at most ``limit``)."""
    return [(_U64.unpack_from(k, len(k) - 8)[0], v) for k, v in scan(list_key, limit)]
