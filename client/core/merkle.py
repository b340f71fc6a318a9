"""RFC 9162 section 2.1 Merkle tree math with SHA-256. Pure: no I/O.

Proof *building* is split from fetching, in the manner of transparency-dev/merkle:
:func:`inclusion_plan` and :func:`consistency_plan` say which perfect subtrees
(:class:`Node`) a proof needs; the caller reads those hashes from wherever it
keeps them and hands them to :func:`assemble`. Verification takes ints and
bytes only.

A :class:`Node` ``(level, index)`` is the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from client.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree: SHA-256 of the empty string (RFC 9162 2.1.1)."""

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)`` (RFC 9162 2.1.1)."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, order=True, slots=True)
class Node:
    """The perfect subtree at ``level`` covering leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


def _largest_pow2_below(n: int) -> int:
    """Largest power of two strictly less than ``n``. Requires ``n > 1``."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(begin: int, end: int) -> list[Node]:
    """Decompose leaves ``[begin, end)`` into perfect subtrees, left to right.

    Requires ``0 <= begin <= end``. For the ranges that occur in RFC 9162 proofs
    (``begin`` aligned to a power of two at least ``end - begin``), the sizes
    strictly decrease and the range's hash is the right fold of the node hashes
    (see :func:`fold`).
    """
    if not 0 <= begin <= end:
        raise ValueError(f"bad range [{begin}, {end})")
    nodes: list[Node] = []
    while begin < end:
        # Largest aligned block starting at begin that fits in [begin, end).
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append(Node(level, begin >> level))
        begin += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from the hashes of its :func:`range_nodes`, folding from the right."""
    if not hashes:
        raise ValueError("cannot fold an empty range")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_plan(size: int) -> list[Node]:
    """Nodes whose fold is the root of a tree of ``size`` leaves. Requires ``size >= 0``."""
    return range_nodes(0, size)


def inclusion_plan(index: int, size: int) -> list[list[Node]]:
    """Nodes needed for the inclusion proof of leaf ``index`` in a tree of ``size``.

    Requires ``0 <= index < size``. Returns one list per proof element (in RFC 9162
    audit path order, leaf level first); each list is folded into one hash.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range for tree size {size}")
    elements: list[list[Node]] = []
    lo, hi = 0, size
    # Walk down PATH(m, D[lo:hi]) from the root; collect siblings, then reverse.
    while hi - lo > 1:
        k = _largest_pow2_below(hi - lo)
        if index < lo + k:
            elements.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            elements.append(range_nodes(lo, lo + k))
            lo = lo + k
    elements.reverse()
    return elements


def consistency_plan(size1: int, size2: int) -> list[list[Node]]:
    """Nodes needed for the consistency proof from ``size1`` to ``size2`` (RFC 9162 2.1.4.1).

    Requires ``0 < size1 <= size2``; the proof for ``size1 == size2`` is empty.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to {size2}")
    elements: list[list[Node]] = []
    if size1 == size2:
        return elements
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                elements.append(range_nodes(lo, hi))
            break
        k = _largest_pow2_below(n)
        if m <= k:
            elements.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            elements.append(range_nodes(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    elements.reverse()
    return elements


def plan_nodes(plan: Iterable[Iterable[Node]]) -> list[Node]:
    """The distinct nodes a plan reads, sorted (one storage read each)."""
    return sorted({node for element in plan for node in element})


def assemble(plan: Sequence[Sequence[Node]], hashes: Mapping[Node, bytes]) -> list[bytes]:
    """Turn a plan into proof hashes, given the hash of every node it names."""
    return [fold([hashes[n] for n in element]) for element in plan]


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash of a whole list of leaf hashes (``EMPTY_ROOT`` for none)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    frontier = CompactRange()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class CompactRange:
    """The right edge of a growing tree: one hash per set bit of its size.

    ``append`` returns every perfect node completed by the new leaf, so a log
    can store them; ``root`` folds the edge. Memory is O(log size).
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Resume from ``hashes`` of ``range_nodes(0, size)`` (left to right)."""
        if len(hashes) != len(range_nodes(0, size)):
            raise ValueError(f"compact range of size {size} needs {len(range_nodes(0, size))} hashes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Append one leaf hash; return the new perfect nodes (leaf first, then parents)."""
        index = self._size
        created = [(Node(0, index), leaf)]
        h = leaf
        level = 0
        while index & 1:
            h = node_hash(self._hashes.pop(), h)
            index >>= 1
            level += 1
            created.append((Node(level, index), h))
        self._hashes.append(h)
        self._size += 1
        return created

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        return fold(self._hashes)


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, want {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 2.1.3.2). Requires ``0 <= index < size``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside tree size {size}")
    _check_hash("leaf hash", leaf)
    fn, sn = index, size - 1
    r = leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
        if sn == 0:
            raise ProofError(f"inclusion proof has {len(proof)} hashes, too many for index {index} in size {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, too few for index {index} in size {size}")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root``; raise :class:`ProofError` if not."""
    _check_hash("root", root)
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if got != root:
        raise ProofError(f"inclusion proof for index {index} in size {size} gives a different root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that tree (size2, root2) extends tree (size1, root1) (RFC 9162 2.1.4.2).

    Raises :class:`ProofError` on any mismatch. A proof from the empty tree is
    refused as meaningless (as transparency-dev/merkle does); equal sizes need an
    empty proof and equal roots.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"consistency from size {size1} to smaller size {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError(f"consistency proof between equal sizes must be empty, got {len(proof)} hashes")
        if root1 != root2:
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # size1 is a power of two: the old root is itself the first node.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {size1} to {size2} has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {size1} to {size2} has too few hashes")
    if fr != root1:
        raise ProofError(f"consistency proof does not match the root of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not match the root of size {size2}")
