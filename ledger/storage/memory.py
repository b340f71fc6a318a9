"""An in-memory :class:`~ledger.storage.Storage`: the reference the conformance suite holds others to.

"Durable" here means "in this process": a :meth:`MemoryStorage.reopen` handle sees
exactly what was committed, which is what tests of restart need.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger.errors import StorageError
from ledger.storage import Batch, HashGroupKey, TreeHead


@dataclass
class _Contents:
    head: TreeHead | None = None
    meta: dict[str, bytes] = field(default_factory=dict)
    entries: list[bytes] = field(default_factory=list)
    groups: dict[HashGroupKey, bytes] = field(default_factory=dict)
    leaves: dict[bytes, list[int]] = field(default_factory=dict)
    aux: dict[bytes, bytes] = field(default_factory=dict)
    # Sorted aux keys for scans, rebuilt lazily: ``aux_sorted`` covers every key except ``aux_new``.
    aux_sorted: list[bytes] = field(default_factory=list)
    aux_new: list[bytes] = field(default_factory=list)
    signed: tuple[int, bytes] | None = None


class MemoryStorage:
    """Dicts and a list behind one lock, so a reader never sees half a batch."""

    def __init__(self, contents: _Contents | None = None) -> None:
        self._c = contents if contents is not None else _Contents()
        self._lock = threading.Lock()
        self._closed = False

    def reopen(self) -> MemoryStorage:
        """A fresh handle over the same committed contents (a restart, for tests)."""
        return MemoryStorage(self._c)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("memory storage is closed")

    def read_head(self) -> TreeHead | None:
        self._check_open()
        return self._c.head

    def read_meta(self, name: str) -> bytes | None:
        self._check_open()
        return self._c.meta.get(name)

    def write_meta(self, name: str, value: bytes) -> None:
        self._check_open()
        with self._lock:
            self._c.meta[name] = bytes(value)

    def record_signed(self, size: int, root: bytes) -> None:
        self._check_open()
        with self._lock:
            self._c.signed = (size, bytes(root))

    def read_signed(self) -> tuple[int, bytes] | None:
        self._check_open()
        return self._c.signed

    def read_entries(self, start: int, end: int) -> list[bytes]:
        self._check_open()
        with self._lock:
            if not 0 <= start <= end <= len(self._c.entries):
                raise StorageError(f"entries [{start}, {end}) are not all stored")
            return self._c.entries[start:end]

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        self._check_open()
        with self._lock:
            entries = self._c.entries
            n = len(entries)
            return [entries[i] if 0 <= i < n else None for i in indices]

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        self._check_open()
        with self._lock:
            groups = self._c.groups
            return [groups.get(k) for k in keys]

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        self._check_open()
        with self._lock:
            leaves = self._c.leaves
            return [list(leaves.get(h, ())) for h in leaf_hashes]

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self._check_open()
        with self._lock:
            aux = self._c.aux
            return [aux.get(k) for k in keys]

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        self._check_open()
        with self._lock:
            c = self._c
            if c.aux_new:
                c.aux_sorted.extend(c.aux_new)  # the old keys are one sorted run: Timsort merges, not re-sorts
                c.aux_sorted.sort()
                c.aux_new.clear()
            keys = c.aux_sorted
            out: list[tuple[bytes, bytes]] = []
            for i in range(bisect.bisect_left(keys, prefix), len(keys)):
                if (limit is not None and len(out) >= limit) or not keys[i].startswith(prefix):
                    break
                out.append((keys[i], c.aux[keys[i]]))
            return out

    def commit(self, batch: Batch) -> None:
        self._check_open()
        c = self._c
        with self._lock:
            size = c.head.size if c.head is not None else 0
            if batch.start != size or batch.head.size != size + len(batch.entries):
                raise StorageError(f"batch [{batch.start}, {batch.head.size}) does not extend stored size {size}")
            if len(batch.leaf_hashes) != len(batch.entries):
                raise StorageError("batch needs one leaf hash per entry")
            # Everything is checked above; the in-place updates below cannot fail half-way.
            c.entries.extend(bytes(e) for e in batch.entries)
            for i, h in enumerate(batch.leaf_hashes, start=batch.start):
                c.leaves.setdefault(h, []).append(i)
            c.groups.update((k, bytes(v)) for k, v in batch.hash_groups.items())
            for k, v in batch.aux:
                k = bytes(k)
                if k not in c.aux:
                    c.aux_new.append(k)
                c.aux[k] = bytes(v)
            c.meta.update(batch.meta)
            c.head = batch.head

    def recover(self) -> None:
        """Nothing latches here: a failed commit changed nothing (the checks come before any update)."""
        self._check_open()

    def close(self) -> None:
        self._closed = True
