"""The sequencer's in-memory right edge: the compact range plus the partial hash group of each level.

:meth:`RightEdge.extend` is the whole of "integrate these leaves into the tree":
it returns a new edge (the old one is untouched, so a failed commit leaves nothing
to undo) and the hash groups the batch must write. :func:`load_edge` rebuilds an
edge from storage and checks the stored tree head against the stored hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from client.core.merkle import HASH_SIZE, CompactRange, Node, node_hash, range_nodes
from ledger.errors import CorruptStorageError
from ledger.log.tree import GROUP_BITS, GROUP_BYTES, GROUP_WIDTH, TreeReader
from ledger.storage import HashGroupKey, Storage, TreeHead


@dataclass(frozen=True)
class Extension:
    """What :meth:`RightEdge.extend` produced."""

    edge: RightEdge
    writes: dict[HashGroupKey, bytes]
    """Groups to store: every group that became full, and every partial group that grew."""
    full: dict[HashGroupKey, bytes]
    """The groups that became full (immutable from now on: safe to cache), level 0 included."""


class RightEdge:
    """Compact range of the tree plus, for each level, the hashes of its last, partial group.

    Level 0 (leaf hashes) is tracked too, so full level-0 groups can be cached for
    proofs, but it is never written: storage keeps the entries instead.
    """

    __slots__ = ("_range", "_partial")

    def __init__(self, compact: CompactRange, partial: dict[int, bytes]) -> None:
        self._range = compact
        self._partial = partial

    @property
    def size(self) -> int:
        return self._range.size

    def root(self) -> bytes:
        return self._range.root()

    def head(self) -> TreeHead:
        return TreeHead(self._range.size, self._range.root(), tuple(self._range.hashes))

    def partial_groups(self) -> dict[HashGroupKey, bytes]:
        """The non-empty partial groups, keyed as stored (for :meth:`TreeReader.publish`)."""
        size = self._range.size
        return {(level, (size >> level) >> GROUP_BITS): h for level, h in self._partial.items() if h}

    def extend(self, leaf_hashes: Sequence[bytes]) -> Extension:
        """Append leaves; return the new edge and the hash groups to write. Does not modify ``self``."""
        compact = CompactRange(self._range.size, self._range.hashes)
        partial = {level: bytearray(h) for level, h in self._partial.items()}
        full: dict[HashGroupKey, bytes] = {}
        touched: set[int] = set()
        append = compact.append
        for leaf in leaf_hashes:
            for node, h in append(leaf):
                level = node.level
                buf = partial.get(level)
                if buf is None:
                    buf = partial[level] = bytearray()
                buf += h
                touched.add(level)
                if len(buf) == GROUP_BYTES:
                    full[(level, node.index >> GROUP_BITS)] = bytes(buf)
                    buf.clear()
        edge = RightEdge(compact, {level: bytes(buf) for level, buf in partial.items()})
        # Level-0 groups are kept in memory only (cached for proofs); storage has the entries.
        writes = {key: value for key, value in full.items() if key[0]}
        for key, value in edge.partial_groups().items():
            if key[0] and key[0] in touched:
                writes[key] = value
        return Extension(edge, writes, full)


def load_edge(storage: Storage, head: TreeHead, reader: TreeReader) -> RightEdge:
    """Rebuild the right edge of ``head`` from storage, checking the head against the stored tree.

    Checks: the root folds from the edge; each level's partial group has exactly the
    length the size implies; every edge node's stored hash (or hashed entry) equals
    the head's; no entry lies beyond the head. Raises :class:`CorruptStorageError`.
    Publishes the partial groups to ``reader``.
    """
    size = head.size
    compact = CompactRange(size, head.edge)
    if compact.root() != head.root:
        raise CorruptStorageError(f"stored tree head of size {size} does not fold to its root")
    keys: list[HashGroupKey] = []
    for level in range(1, size.bit_length()):
        if (size >> level) & (GROUP_WIDTH - 1):
            keys.append((level, (size >> level) >> GROUP_BITS))
    partial: dict[int, bytes] = {}
    for key, value in zip(keys, storage.read_hash_groups(keys), strict=True):
        want = ((size >> key[0]) & (GROUP_WIDTH - 1)) * HASH_SIZE
        if value is None or len(value) != want:
            got = "missing" if value is None else f"{len(value)} bytes"
            raise CorruptStorageError(f"hash group {key} is {got}, tree size {size} needs {want} bytes")
        partial[key[0]] = value
    first_leaf = size >> GROUP_BITS << GROUP_BITS
    if first_leaf < size:
        partial[0] = b"".join(reader.leaf_hashes(list(range(first_leaf, size))).values())
    if storage.read_entries_at([size])[0] is not None:
        raise CorruptStorageError(f"the store holds an entry beyond its tree head (size {size})")
    edge = RightEdge(compact, partial)
    reader.publish(edge.partial_groups(), {})
    nodes = range_nodes(0, size)
    stored = reader.node_hashes(nodes)
    for node, want_hash in zip(nodes, head.edge, strict=True):
        if stored[node] != want_hash:
            raise CorruptStorageError(f"stored hash of node {node} disagrees with the tree head of size {size}")
    for level, hashes in partial.items():
        if level == 0:
            continue  # hashed from the entries just above
        _check_partial_group(reader, level, (size >> level) >> GROUP_BITS << GROUP_BITS, hashes)
    return edge


def _check_partial_group(reader: TreeReader, level: int, first: int, hashes: bytes) -> None:
    """Each hash of a right-edge group must be the hash of its two stored children (entries at level 1)."""
    children = [Node(level - 1, j) for j in range(2 * first, 2 * first + 2 * (len(hashes) // HASH_SIZE))]
    got = reader.node_hashes(children)
    for k in range(len(hashes) // HASH_SIZE):
        if node_hash(got[children[2 * k]], got[children[2 * k + 1]]) != hashes[k * HASH_SIZE : (k + 1) * HASH_SIZE]:
            raise CorruptStorageError(f"stored hash of node ({level}, {first + k}) disagrees with its children")
