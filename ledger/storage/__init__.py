"""What the log needs from a store, as a :class:`Storage` protocol, and the values it trades in.

The log (:mod:`ledger.log`) decides everything about the tree: which nodes a proof
needs (``client.core.merkle`` plans), how tree hashes are grouped, when a tree head is
final. Storage answers plain questions (entries by index, hash groups by key,
candidate indices for a leaf hash, aux values) and commits one atomic batch at a
time. It does no Merkle math.

Implementations: :class:`ledger.storage.memory.MemoryStorage` (tests, and the
reference for the conformance suite), :class:`ledger.storage.rocks.RocksStorage` and
:class:`ledger.storage.postgres.PostgresStorage`; entry points open one from configuration
with :func:`ledger.storage.open.open_storage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from client.core.merkle import HASH_SIZE

HashGroupKey = tuple[int, int]
"""``(level, group)``: hashes of level ``level`` nodes ``[group * G, (group + 1) * G)``, G chosen by the log."""

DEDUP_PREFIX = 16
"""Leaf-hash bytes a store may index by; :meth:`Storage.leaf_candidates` may return prefix collisions."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A durable tree head: ``size`` leaves, the hashes of ``client.core.merkle.range_nodes(0, size)``, the root.

    The edge is what lets the sequencer resume appending without reading the tree.
    """

    size: int
    root: bytes
    edge: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.root) != HASH_SIZE or len(self.edge) != self.size.bit_count():
            raise ValueError(f"malformed tree head for size {self.size}")
        if any(len(h) != HASH_SIZE for h in self.edge):
            raise ValueError("tree head edge hashes must be 32 bytes")


@dataclass(frozen=True)
class Batch:
    """One atomic step of the log: entries appended at ``start`` and everything that indexes them.

    ``leaf_hashes[i]`` is the leaf hash of ``entries[i]`` (logged at ``start + i``) for the
    dedup index. ``hash_groups`` replace whole stored values (partial groups are rewritten
    as they grow). ``aux`` are the integration hook's index writes. ``meta`` holds small
    named values (the origin, on the first batch). ``head`` becomes the stored tree head.
    Requires ``start`` to equal the stored head's size and ``head.size == start + len(entries)``.
    """

    start: int
    entries: Sequence[bytes]
    leaf_hashes: Sequence[bytes]
    hash_groups: Mapping[HashGroupKey, bytes]
    head: TreeHead
    aux: Sequence[tuple[bytes, bytes]] = ()
    meta: Mapping[str, bytes] = field(default_factory=dict)


class Storage(Protocol):
    """A log's durable store.

    Durability promise: when :meth:`commit` returns, the whole batch is persisted and
    synced to stable storage, and every later read (also after a crash and reopen)
    sees all of it. A batch is atomic: readers see all of it or none of it, never a
    part. When :meth:`commit` raises, nothing of the failed batch is visible -- unless
    the backend cannot tell whether the write landed (e.g. the write went in but the
    sync failed), in which case the batch may be entirely visible; the caller must
    re-read :meth:`read_head` to learn which, and must not trust the batch as durable
    until a later commit succeeds. Only one thread commits; reads may come from any thread.

    Failures raise :class:`ledger.errors.StorageError`; data that cannot be right raises
    :class:`ledger.errors.CorruptStorageError`.
    """

    def read_head(self) -> TreeHead | None:
        """The tree head of the last committed batch, or None for a store never committed to."""
        ...

    def read_meta(self, name: str) -> bytes | None:
        """A named small value (from :attr:`Batch.meta` or :meth:`write_meta`), or None."""
        ...

    def write_meta(self, name: str, value: bytes) -> None:
        """Store a named value outside any batch, *without* a sync: it may be lost in a crash.

        For values that can be recomputed (the latest signed checkpoint note).
        """
        ...

    def record_signed(self, size: int, root: bytes) -> None:
        """Durably record the tree head about to be signed, *outside* the batches' write-ahead log.

        When it returns the record is synced. :meth:`read_signed` returns it after a crash
        even if damage to the store's own log rolled the batches back, which is how an
        open detects signed entries that were lost. Raises :class:`StorageError`.
        """
        ...

    def read_signed(self) -> tuple[int, bytes] | None:
        """(size, root) of the last :meth:`record_signed`, or None if never recorded."""
        ...

    def read_entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``. Requires ``0 <= start <= end <=`` the stored size."""
        ...

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        """The entry at each index (None where there is none), in order."""
        ...

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        """The stored value of each hash group (None where there is none), in order."""
        ...

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        """For each 32-byte leaf hash, the indices whose leaf hash *may* equal it.

        Never misses a logged index with that leaf hash; may also return indices whose
        leaf hash only shares the first :data:`DEDUP_PREFIX` bytes (the caller confirms).
        """
        ...

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The value of each aux key written by a batch (None where there is none)."""
        ...

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Aux ``(key, value)`` pairs whose key starts with ``prefix``, in ascending (bytewise) key order.

        At most ``limit`` pairs (None: all). Sees exactly the committed batches, like
        :meth:`read_aux`. With keys ``prefix || index (8 bytes, big-endian)`` this lists
        a posting list earliest first without any read-modify-write on the writer's side.
        """
        ...

    def commit(self, batch: Batch) -> None:
        """Persist ``batch`` atomically and durably (see the class docstring)."""
        ...

    def recover(self) -> None:
        """After a failed write: make the store take writes again, without a restart, if it can.

        A backend may latch a write failure (RocksDB refuses every write after one hit a
        full disk, until it is reopened); this clears it, e.g. by reopening in place. When
        it returns, reads see the durable state, as an open after a crash would (a batch
        whose commit failed is wholly visible or not at all: re-read :meth:`read_head`),
        and commits may succeed again; the caller proves it with one before trusting it.
        Raises :class:`StorageError` while the store still cannot take writes; a later call
        tries again (it may refuse to retry too often). Reads in flight meanwhile are not
        cut off: they may wait for the reopen, then read the reopened store. Only the
        committing thread calls it.
        """
        ...

    def close(self) -> None:
        """Release the store; later calls raise :class:`ledger.errors.StorageError`."""
        ...


__all__ = ["DEDUP_PREFIX", "Batch", "HashGroupKey", "Storage", "TreeHead"]
