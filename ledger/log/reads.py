"""The log's read side: entries, leaf lookups, RFC 9162 proofs and roots, the hook's aux values.

Every tree read is bounded by the latest *signed* checkpoint: a tree size beyond it is
:class:`OutOfRangeError`, even while a larger head is already durable and being signed.
The proofs themselves come from :class:`~ledger.log.tree.TreeReader` (the sequencer's
current one: it is replaced after a recovery).

A read that finds the store damaged (:class:`CorruptStorageError`: a block checksum
RocksDB refuses, a hash group that is missing) raises it as before and also latches it
(:attr:`LogReads.damage`, logged once with the detail): the log then reports itself
unhealthy for good, since such damage does not heal by retrying.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Any, TypeVar, cast

from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import EMPTY_ROOT, HASH_SIZE
from client.errors import InvalidInputError, NotFoundError, OutOfRangeError
from ledger.errors import CorruptStorageError
from ledger.log.integrity import confirm
from ledger.log.tree import GROUP_WIDTH, TreeReader, group_key
from ledger.storage import Storage

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _latching(method: F) -> F:
    """``method``, latching any :class:`CorruptStorageError` it raises into :meth:`LogReads.report_damage`."""

    @functools.wraps(method)
    def read(self: LogReads, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except CorruptStorageError as err:
            self.report_damage(f"a read of {method.__name__} found the store damaged: {err}")
            raise

    return cast(F, read)


class LogReads:
    """Reads of one log. Thread-safe.

    ``latest`` gives the latest signed checkpoint (the publisher's), ``tree`` the current
    tree reader (the sequencer's); ``max_range`` caps :meth:`entries`.
    """

    def __init__(self, storage: Storage, max_range: int, latest: Callable[[], SignedCheckpoint],
                 tree: Callable[[], TreeReader]) -> None:
        self._storage = storage
        self._max_range = max_range
        self._latest = latest
        self._tree = tree
        self._damage: str | None = None
        self._damage_lock = threading.Lock()

    @property
    def damage(self) -> str | None:
        """The first damage a read (or the store's scrub) found, or None: the log is unhealthy once set."""
        return self._damage

    def report_damage(self, reason: str) -> None:
        """Latch ``reason`` (server-side text: it may name files) as the store's damage; logged once, at ERROR."""
        with self._damage_lock:
            if self._damage is not None:
                return
            self._damage = reason
        log.error("store damaged; reporting NOT_SERVING: %s", reason)

    def latest(self) -> SignedCheckpoint:
        """The latest signed checkpoint (signed only after its tree head was durable)."""
        return self._latest()

    @property
    def size(self) -> int:
        """Size of the latest signed checkpoint: the largest tree readers can ask about."""
        return self._latest().checkpoint.size

    @_latching
    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)`` of the signed tree."""
        if start < 0 or start >= end or end - start > self._max_range:
            raise InvalidInputError(f"bad range [{start}, {end}): need 0 <= start < end, at most "
                                    f"{self._max_range} entries")
        if end > self.size:
            raise OutOfRangeError(f"range end {end} is beyond the tree size {self.size}")
        return self._storage.read_entries(start, end)

    @_latching
    def index_of(self, leaf_hash: bytes) -> int:
        """The index of the entry with this leaf hash (the first, should there be several)."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise InvalidInputError(f"a leaf hash is {HASH_SIZE} bytes")
        size = self.size
        found = confirm(self._storage, [leaf_hash], limit=size)
        if leaf_hash not in found:
            raise NotFoundError(f"no entry with leaf hash {leaf_hash.hex()} in the tree of size {size}")
        return found[leaf_hash]

    @_latching
    def leaf_hash(self, index: int) -> bytes:
        """The RFC 9162 2.1.1 leaf hash of entry ``index`` of the signed tree (hashes its stored entry)."""
        if index < 0:
            raise InvalidInputError(f"index {index} is negative")
        if index >= self.size:
            raise OutOfRangeError(f"index {index} is beyond the tree size {self.size}")
        return sha256(b"\x00" + self._storage.read_entries(index, index + 1)[0]).digest()

    def _check_tree_size(self, tree_size: int) -> None:
        if tree_size <= 0:
            raise InvalidInputError(f"tree size {tree_size} must be positive")
        if tree_size > self.size:
            raise OutOfRangeError(f"tree size {tree_size} is beyond the signed size {self.size}")

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 2.1.3 inclusion proof of leaf ``index`` in the tree of ``tree_size``."""
        return self.inclusion_proofs([index], tree_size)[0]

    @_latching
    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """Inclusion proofs of many leaves in one tree (one pass over the hash groups they share)."""
        self._check_tree_size(tree_size)
        for index in indices:
            if index < 0:
                raise InvalidInputError(f"index {index} is negative")
            if index >= tree_size:
                raise OutOfRangeError(f"index {index} is not in the tree of size {tree_size}")
        return self._tree().inclusion_proofs(indices, tree_size)

    @_latching
    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 2.1.4 proof that the tree of ``size2`` extends the tree of ``size1``."""
        if not 0 < size1 <= size2:
            raise InvalidInputError(f"no consistency proof from size {size1} to {size2}: need 0 < size1 <= size2")
        self._check_tree_size(size2)
        return self._tree().consistency_proof(size1, size2)

    @_latching
    def level_hashes(self, level: int, start: int, end: int) -> bytes:
        """Hashes of the perfect nodes ``(level, start) .. (level, end - 1)`` of the signed tree, concatenated.

        Requires ``0 <= start < end <= size >> level`` (:class:`OutOfRangeError` beyond the signed
        tree). What a C2SP tile holds (``client/core/tiles.py``; ``ledger/http/tiles.py``).
        """
        if level < 0 or start < 0 or start >= end:
            raise InvalidInputError(f"bad node range [{start}, {end}) at level {level}")
        if end > self.size >> level:
            raise OutOfRangeError(f"nodes up to {end} at level {level} are beyond the signed size {self.size}")
        if level == 0:  # leaf hashes are not stored: one range read of the entries, hashed
            return b"".join([sha256(b"\x00" + e).digest() for e in self._storage.read_entries(start, end)])
        tree = self._tree()
        groups = tree.groups({group_key(level, i) for i in range(start, end, GROUP_WIDTH)}
                             | {group_key(level, end - 1)})
        out = b"".join(groups[k] for k in sorted(groups))[
            (start % GROUP_WIDTH) * HASH_SIZE : (start % GROUP_WIDTH + end - start) * HASH_SIZE]
        if len(out) != (end - start) * HASH_SIZE:
            raise CorruptStorageError(f"hashes of nodes [{start}, {end}) at level {level} are missing")
        return out

    @_latching
    def root_at(self, size: int) -> bytes:
        """Root (RFC 9162 2.1.1) of the tree of ``size`` leaves, ``0 <= size <= self.size``."""
        if size < 0:
            raise InvalidInputError(f"tree size {size} is negative")
        latest = self._latest().checkpoint
        if size > latest.size:
            raise OutOfRangeError(f"tree size {size} is beyond the signed size {latest.size}")
        if size == latest.size:
            return latest.root
        return EMPTY_ROOT if size == 0 else self._tree().root_at(size)

    @_latching
    def get_aux(self, key: bytes) -> bytes | None:
        """The hook's value for ``key`` (may include the batch being signed right now)."""
        return self._storage.read_aux([key])[0]

    @_latching
    def get_aux_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get_aux` of each key, in one storage read."""
        return self._storage.read_aux(keys)

    @_latching
    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """The hook's ``(key, value)`` pairs under ``prefix`` in key order (see :meth:`Storage.scan_aux`)."""
        return self._storage.scan_aux(prefix, limit)
