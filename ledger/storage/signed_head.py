"""A synced record of the last signed tree head, kept outside the store's own write-ahead log.

RocksDB recovers its write-ahead log in point-in-time mode: damage inside that log
(a flipped bit, a truncation) silently rolls the store back to the last intact
record, which can be *behind* checkpoints already signed and handed out. This
small file lets :meth:`ledger.log.Log.open` notice that and refuse to serve.

Layout: two 64-byte slots, written alternately, each
``seq (8, BE) || size (8, BE) || root (32) || crc32 of the previous 48 bytes (4, BE)``
followed by zero padding. A torn or damaged slot fails its CRC and the other slot
(the previous head) is used; the newest valid slot wins.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

from ledger.errors import CorruptStorageError, StorageError

SLOT = 64
_REC = struct.Struct(">QQ32s")


def _encode(seq: int, size: int, root: bytes) -> bytes:
    body = _REC.pack(seq, size, root)
    return (body + struct.pack(">I", zlib.crc32(body))).ljust(SLOT, b"\x00")


def _decode(slot: bytes) -> tuple[int, int, bytes] | None:
    if len(slot) < _REC.size + 4:
        return None
    body, crc = slot[: _REC.size], slot[_REC.size : _REC.size + 4]
    if struct.unpack(">I", crc)[0] != zlib.crc32(body):
        return None
    seq, size, root = _REC.unpack(body)
    return seq, size, root


class SignedHeadFile:
    """The record file at ``path``; :meth:`write` returns only after the data is synced.

    ``read_only`` (``provenance fsck``) creates nothing: a missing file reads as never written.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            self._fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError as e:
            if not read_only:
                raise StorageError(f"cannot open {path}: {e}") from e
            self._fd = -1  # read-only and absent
        except OSError as e:
            raise StorageError(f"cannot open {path}: {e}") from e
        latest = self._read_slots()
        self._seq = latest[0] if latest else 0

    def _read_slots(self) -> tuple[int, int, bytes] | None:
        if self._fd < 0:
            return None
        try:
            data = os.pread(self._fd, 2 * SLOT, 0)
        except OSError as e:
            raise StorageError(f"cannot read {self._path}: {e}") from e
        if data.strip(b"\x00") and not any(_decode(data[i : i + SLOT]) for i in (0, SLOT)):
            raise CorruptStorageError(f"{self._path}: neither record of the last signed tree head is intact")
        valid = [r for r in (_decode(data[0:SLOT]), _decode(data[SLOT : 2 * SLOT])) if r is not None]
        return max(valid) if valid else None

    def read(self) -> tuple[int, bytes] | None:
        """(size, root) of the newest intact record, or None if none was ever written."""
        with self._lock:
            latest = self._read_slots()
        return None if latest is None else (latest[1], latest[2])

    def write(self, size: int, root: bytes) -> None:
        """Record (size, root) durably (one pwrite and one fdatasync)."""
        with self._lock:
            seq = self._seq + 1
            try:
                os.pwrite(self._fd, _encode(seq, size, root), (seq % 2) * SLOT)
                os.fdatasync(self._fd)
            except OSError as e:
                raise StorageError(f"cannot record the signed tree head in {self._path}: {e}") from e
            self._seq = seq

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
