"""The log's proof reader: tree hashes from storage, grouped and cached, turned into RFC 9162 proofs.

Stored layout (decided here, kept by any :class:`~ledger.storage.Storage`): level-0
(leaf) hashes are not stored -- a level-0 node is the hash of its entry, which is
stored anyway (the sequencer does cache level-0 groups in memory as they fill, so
proofs over recent entries skip the entry read). Nodes of level >= 1 are stored in groups of :data:`GROUP_WIDTH`
consecutive nodes of one level, key ``(level, index // GROUP_WIDTH)``, value the
32-byte hashes concatenated. A full group never changes again, so it is cached in a
byte-bounded LRU; the partial group at the right edge of each level is held in
memory by the sequencer and published here after each commit.

Any perfect node therefore costs one group lookup (or one entry read), and an
inclusion or consistency proof at any tree size reads O(log n) of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from hashlib import sha256

from client.core.merkle import HASH_SIZE, Node, assemble, consistency_plan, fold, plan_nodes, range_nodes, root_plan
from ledger.errors import CorruptStorageError
from ledger.storage import HashGroupKey, Storage

GROUP_BITS = 8
GROUP_WIDTH = 1 << GROUP_BITS
GROUP_BYTES = GROUP_WIDTH * HASH_SIZE
_EPHEMERAL_CACHE = 4096  # right-edge (imperfect) node hashes kept, keyed by (tree size, level)


def group_key(level: int, index: int) -> HashGroupKey:
    """The key of the group holding node ``(level, index)``. Requires ``level >= 1``."""
    return (level, index >> GROUP_BITS)


class GroupCache:
    """A byte-bounded LRU of full hash groups (immutable once full, so never stale)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._data: OrderedDict[HashGroupKey, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: HashGroupKey) -> bytes | None:
        # Lock-free: each OrderedDict call is atomic under the GIL; a concurrent eviction
        # only means the refresh is skipped.
        value = self._data.get(key)
        if value is not None:
            with contextlib.suppress(KeyError):
                self._data.move_to_end(key)
        return value

    def put(self, key: HashGroupKey, value: bytes) -> None:
        if len(value) > self._max:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = value
            self._bytes += len(value)
            while self._bytes > self._max:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= len(evicted)

    @property
    def size_bytes(self) -> int:
        return self._bytes


class TreeReader:
    """Reads node hashes and builds proofs for any tree size the caller has checked is durable.

    Thread-safe for readers; the sequencer calls :meth:`publish` after each commit.
    """

    def __init__(self, storage: Storage, cache_bytes: int) -> None:
        self._storage = storage
        self._cache = GroupCache(cache_bytes)
        self._partial: Mapping[HashGroupKey, bytes] = {}
        self._ephemeral: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._eph_lock = threading.Lock()

    def publish(self, partial: Mapping[HashGroupKey, bytes], full: Mapping[HashGroupKey, bytes]) -> None:
        """After a commit: cache the groups that became full, then swap in the new right-edge groups.

        Full groups go in first, so a reader that no longer finds a group among the
        partial ones finds it cached (or in storage, where it already is).
        """
        for key, value in full.items():
            self._cache.put(key, value)
        self._partial = dict(partial)

    def groups(self, keys: Collection[HashGroupKey]) -> dict[HashGroupKey, bytes]:
        """The current value of each group: right-edge ones from memory, full ones cached or read."""
        partial = self._partial
        found: dict[HashGroupKey, bytes] = {}
        missing: list[HashGroupKey] = []
        for key in keys:
            value = partial.get(key)
            if value is None:
                value = self._cache.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            for key, got in zip(missing, self._storage.read_hash_groups(missing), strict=True):
                if got is None:
                    raise CorruptStorageError(f"hash group {key} is missing from the store")
                if len(got) == GROUP_BYTES:
                    self._cache.put(key, got)
                found[key] = got
        return found

    def leaf_hashes(self, indices: Sequence[int]) -> dict[int, bytes]:
        """Level-0 node hashes: from a level-0 group in memory if there is one, else by hashing the entry.

        Level-0 groups are never stored; the sequencer caches them as they fill.
        """
        out: dict[int, bytes] = {}
        missing: list[int] = []
        partial = self._partial
        cache_get = self._cache.get
        for i in indices:
            key = (0, i >> GROUP_BITS)
            group = partial.get(key) or cache_get(key)
            off = (i & (GROUP_WIDTH - 1)) << 5
            if group is not None and len(group) >= off + HASH_SIZE:
                out[i] = group[off : off + HASH_SIZE]
            else:
                missing.append(i)
        if missing:
            for i, entry in zip(missing, self._storage.read_entries_at(missing), strict=True):
                if entry is None:
                    raise CorruptStorageError(f"entry {i} is missing from the store")
                out[i] = sha256(b"\x00" + entry).digest()
        return out

    def node_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        """The hash of each perfect node. Requires every node to lie inside a durable tree."""
        nodes = list(nodes)
        leaves = self.leaf_hashes([n.index for n in nodes if n.level == 0])
        groups = self.groups({group_key(n.level, n.index) for n in nodes if n.level})
        out: dict[Node, bytes] = {}
        for n in nodes:
            if n.level == 0:
                out[n] = leaves[n.index]
                continue
            off = (n.index & (GROUP_WIDTH - 1)) * HASH_SIZE
            h = groups[group_key(n.level, n.index)][off : off + HASH_SIZE]
            if len(h) != HASH_SIZE:
                raise CorruptStorageError(f"hash of node {n} is missing from its group")
            out[n] = h
        return out

    def range_hash(self, begin: int, end: int) -> bytes:
        """Hash of leaves ``[begin, end)`` folded from its :func:`range_nodes`. Requires ``begin < end``."""
        nodes = range_nodes(begin, end)
        hashes = self.node_hashes(nodes)
        return fold([hashes[n] for n in nodes])

    def root_at(self, size: int) -> bytes:
        """Root of the tree of ``size`` leaves. Requires ``0 < size <=`` the durable size."""
        plan = root_plan(size)
        hashes = self.node_hashes(plan)
        return fold([hashes[n] for n in plan])

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 2.1.4 proof. Requires ``0 < size1 <= size2 <=`` the durable size."""
        plan = consistency_plan(size1, size2)
        return assemble(plan, self.node_hashes(plan_nodes(plan)))

    def _ephemeral_hash(self, size: int, level: int) -> bytes:
        """The right-edge sibling at ``level`` in a tree of ``size``: leaves ``[(size-1) >> level << level, size)``."""
        key = (size, level)
        with self._eph_lock:
            cached = self._ephemeral.get(key)
            if cached is not None:
                self._ephemeral.move_to_end(key)
                return cached
        value = self.range_hash(((size - 1) >> level) << level, size)
        with self._eph_lock:
            self._ephemeral[key] = value
            while len(self._ephemeral) > _EPHEMERAL_CACHE:
                self._ephemeral.popitem(last=False)
        return value

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> list[list[bytes]]:
        """RFC 9162 2.1.3 audit paths of each index in the tree of ``size``.

        Requires ``0 <= index < size <=`` the durable size. Same nodes as
        ``client.core.merkle.inclusion_plan`` (tests hold it to that), computed without
        building plan objects: below the level where ``index`` and ``size - 1`` part,
        siblings are perfect nodes; at that level the right sibling may be the
        imperfect right edge (cached per size); above it, left siblings where ``index``
        has a one bit.
        """
        last = size - 1
        top = last.bit_length()
        leaves = self.leaf_hashes(sorted({i ^ 1 for i in indices if (i ^ 1) < size}))
        seen: dict[int, bytes] = {}  # groups this call has looked up, keyed level << 56 | group
        group_of = self._group
        mask = GROUP_WIDTH - 1
        proofs: list[list[bytes]] = [[] for _ in indices]
        # In index order, two neighbours' paths agree from the first level where their node
        # indices agree: (a ^ b).bit_length() upwards (the branch taken at each level depends
        # only on index >> level and size). So each path reuses its predecessor's tail.
        prev = -1
        prev_proof: list[bytes] = []
        prev_starts: list[int] = []
        for pos in sorted(range(len(indices)), key=indices.__getitem__):
            index = indices[pos]
            if index == prev:
                proofs[pos] = list(prev_proof)
                continue
            shared = (index ^ prev).bit_length() if prev >= 0 else top
            sib = index ^ 1
            proof = [leaves[sib]] if sib < size else []
            starts = [0] * (top + 1)  # starts[level]: where that level's element (if any) goes
            split = (index ^ last).bit_length() - 1
            # Above level 0, bottom-up: perfect siblings below the split; at the split the
            # right sibling (perhaps the imperfect right edge); above it left siblings
            # wherever index has a one bit.
            for level in range(1, min(shared, top)):
                starts[level] = len(proof)
                node = index >> level
                if level < split:
                    sib = node ^ 1
                elif level == split:
                    sib = node + 1
                    if (sib + 1) << level > size:
                        proof.append(self._ephemeral_hash(size, level))
                        continue
                elif node & 1:
                    sib = node - 1
                else:
                    continue
                key = level << 56 | sib >> GROUP_BITS
                group = seen.get(key)
                if group is None:
                    group = seen[key] = group_of(level, sib >> GROUP_BITS)
                off = (sib & mask) << 5
                h = group[off : off + HASH_SIZE]
                if len(h) != HASH_SIZE:
                    raise CorruptStorageError(f"hash of node ({level}, {sib}) is missing from its group")
                proof.append(h)
            if shared < top:
                base = len(proof) - prev_starts[shared]
                starts[shared:] = [base + s for s in prev_starts[shared:]]
                proof += prev_proof[prev_starts[shared] :]
            else:
                starts[top] = len(proof)
            proofs[pos] = proof
            prev, prev_proof, prev_starts = index, proof, starts
        return proofs

    def _group(self, level: int, group: int) -> bytes:
        key = (level, group)
        value = self._partial.get(key) or self._cache.get(key)
        return value if value is not None else self.groups((key,))[key]
