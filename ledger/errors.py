"""Server-only errors. Each subclasses a :mod:`client.errors` class, so the gRPC edge maps it by family."""

from __future__ import annotations

from client.errors import DataLossError, InvalidInputError, UnavailableError


class StorageError(UnavailableError):
    """The storage backend failed (I/O error, full disk, closed handle). Retry later.

    Its text may name server paths: the gRPC edge logs it and sends clients a fixed message.
    """


class CorruptStorageError(StorageError, DataLossError):
    """The stored log is inconsistent with itself (bad tree head, missing hashes, wrong format, a failed checksum).

    Raised at open or when a read finds data that cannot be right; the log never serves from it.
    A :class:`DataLossError` too, so the edge answers DATA_LOSS (not a retryable UNAVAILABLE).
    """


class LostStoreError(CorruptStorageError):
    """The data directory shows its log has signed before, but the store is missing or holds no log."""


class KeyFileError(InvalidInputError):
    """The signing-key file is unsafe (group/world readable), malformed, or names another log."""


class WaitTimeoutError(UnavailableError):
    """A wait (for a durable index or a checkpoint of some size) ran past its deadline."""


class StoreInUseError(StorageError):
    """Another process holds the store open (RocksDB's LOCK): stop it, or ask it for an online backup."""
