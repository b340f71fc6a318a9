"""A deliberately naive RFC 9162 Merkle tree, used only to test client/core/merkle.py.

Everything here is the recursive definition of RFC 9162 section 2.1 written out
as plainly as possible: slow (it rehashes whole subtrees) and obviously right.
It shares no code with client/core/merkle.py except SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k: the largest power of two smaller than n (RFC 9162 2.1.1). Requires n > 1."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from leaf hashes (RFC 9162 2.1.1)."""
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = split(n)
    return node(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def path(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the inclusion proof of leaf m (RFC 9162 2.1.3.1)."""
    n = len(leaf_hashes)
    assert 0 <= m < n
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return path(m, leaf_hashes[:k]) + [mth(leaf_hashes[k:])]
    return path(m - k, leaf_hashes[k:]) + [mth(leaf_hashes[:k])]


def proof(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): the consistency proof from size m (RFC 9162 2.1.4.1)."""
    assert 0 < m <= len(leaf_hashes)
    return subproof(m, leaf_hashes, True)


def subproof(m: int, leaf_hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 9162 2.1.4.1)."""
    n = len(leaf_hashes)
    if m == n:
        return [] if b else [mth(leaf_hashes)]
    k = split(n)
    if m <= k:
        return subproof(m, leaf_hashes[:k], b) + [mth(leaf_hashes[k:])]
    return subproof(m - k, leaf_hashes[k:], False) + [mth(leaf_hashes[:k])]


# Naive verifiers: run the same recursions backwards, consuming proof hashes from
# the end. They accept exactly the proofs whose shape matches (index, size), so
# client/core/merkle.py's iterative verifiers must agree with them on any input.


def root_from_path(m: int, n: int, leaf_hash: bytes, proof_hashes: Sequence[bytes]) -> bytes | None:
    """The root PATH(m, D[n]) implies for ``leaf_hash``; None if the proof has the wrong length."""
    if not 0 <= m < n:
        return None
    if n == 1:
        return leaf_hash if not proof_hashes else None
    if not proof_hashes:
        return None
    *rest, last = proof_hashes
    k = split(n)
    if m < k:
        sub = root_from_path(m, k, leaf_hash, rest)
        return None if sub is None else node(sub, last)
    sub = root_from_path(m - k, n - k, leaf_hash, rest)
    return None if sub is None else node(last, sub)


def verify_path(m: int, n: int, leaf_hash: bytes, proof_hashes: Sequence[bytes], root: bytes) -> bool:
    return root_from_path(m, n, leaf_hash, proof_hashes) == root


def _run_subproof(
    m: int, n: int, b: bool, proof_hashes: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(old hash, new hash) of the subtree SUBPROOF(m, D[n], b) describes; None on a shape mismatch."""
    if m == n:
        if b:
            return (old_root, old_root) if not proof_hashes else None
        return (proof_hashes[0], proof_hashes[0]) if len(proof_hashes) == 1 else None
    if not proof_hashes:
        return None
    *rest, last = proof_hashes
    k = split(n)
    if m <= k:
        sub = _run_subproof(m, k, b, rest, old_root)
        return None if sub is None else (sub[0], node(sub[1], last))
    sub = _run_subproof(m - k, n - k, False, rest, old_root)
    return None if sub is None else (node(last, sub[0]), node(last, sub[1]))


def verify_proof(m: int, n: int, proof_hashes: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """Whether PROOF(m, D[n]) = ``proof_hashes`` proves (m, root1) is a prefix of (n, root2)."""
    if not 0 < m <= n:
        return False
    got = _run_subproof(m, n, True, proof_hashes, root1)
    return got is not None and got == (root1, root2)
