"""client/core/merkle.py against the transparency-dev/merkle vectors, a naive RFC 9162 reference and Hypothesis.

- every JSON vector in ../shared/testdata/merkle: accept ``wantErr: false``, reject ``wantErr: true``;
- plans + assemble, CompactRange and root_from_leaf_hashes equal the naive MTH / PATH / PROOF,
  exhaustively for small trees and with Hypothesis for larger ones;
- mutation properties: flip any bit of any proof hash, change the index or a size, truncate or
  extend the proof, and verification raises ProofError (or agrees with the naive verifier where
  RFC 9162 itself does not bind the size; see test_inclusion_proof_does_not_bind_size).
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import naive_merkle as naive
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core import merkle
from client.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    assemble,
    consistency_plan,
    fold,
    inclusion_plan,
    plan_nodes,
    range_nodes,
    root_from_leaf_hashes,
    root_plan,
    verify_consistency,
    verify_inclusion,
)
from client.errors import ProofError

# The vectors live in the team's shared folder; a copy in tests/testdata/merkle (with its LICENSE) wins.
_HERE = Path(__file__).resolve().parent
_SHARED_VECTORS = _HERE.parents[2] / "shared" / "testdata" / "merkle"
VECTORS = next((p for p in [_HERE.parent / "testdata" / "merkle", _SHARED_VECTORS] if p.is_dir()), _SHARED_VECTORS)
VECTOR_FILES = sorted(VECTORS.rglob("*.json"))
# The eight leaves behind the vector trees (testdata/merkle/README.md).
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_vector_count() -> None:
    assert len(VECTOR_FILES) == 196, "the shared vector set changed; update this count deliberately"


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[str(p.relative_to(VECTORS)) for p in VECTOR_FILES])
def test_vector(path: Path) -> None:
    case = _load(path)
    proof = [_b64(p) for p in case["proof"] or []]
    if "leafIdx" in case:
        index, size = case["leafIdx"], case["treeSize"]
        leaf, root = _b64(case["leafHash"]), _b64(case["root"])
        well_formed = all(len(h) == 32 for h in [leaf, root, *proof])
        naive_ok = well_formed and naive.verify_path(index, size, leaf, proof, root)

        def check() -> None:
            verify_inclusion(index, size, leaf, proof, root)

        if not case["wantErr"] and path.parent.name.isdigit():
            leaves = [merkle.leaf_hash(e) for e in VECTOR_LEAVES[:size]]
            assert naive.mth(leaves) == root and leaves[index] == leaf
            assert naive.path(index, leaves) == proof
    else:
        size1, size2 = case["size1"], case["size2"]
        root1, root2 = _b64(case["root1"]), _b64(case["root2"])
        well_formed = all(len(h) == 32 for h in [root1, root2, *proof])
        naive_ok = well_formed and naive.verify_proof(size1, size2, proof, root1, root2)

        def check() -> None:
            verify_consistency(size1, size2, proof, root1, root2)

        if not case["wantErr"] and path.parent.name.isdigit():
            leaves = [merkle.leaf_hash(e) for e in VECTOR_LEAVES[:size2]]
            assert naive.mth(leaves[:size1]) == root1 and naive.mth(leaves) == root2
            assert naive.proof(size1, leaves) == proof

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
        assert not naive_ok
    else:
        check()
        assert naive_ok or not well_formed


# --- a reference tree -------------------------------------------------------------------------


@cache
def leaves_of(size: int, salt: bytes = b"") -> tuple[bytes, ...]:
    """Leaf hashes of distinct entries (distinct leaves make every mutation detectable)."""
    return tuple(merkle.leaf_hash(salt + b"entry-%d" % i) for i in range(size))


def node_hashes(leaves: tuple[bytes, ...], nodes: list[Node]) -> dict[Node, bytes]:
    """What storage would answer for these nodes, computed naively."""
    assert all(n.end <= len(leaves) for n in nodes), "a plan asked for a node beyond the tree"
    return {n: naive.mth(leaves[n.begin : n.end]) for n in nodes}


def inclusion_proof(leaves: tuple[bytes, ...], index: int) -> list[bytes]:
    plan = inclusion_plan(index, len(leaves))
    return assemble(plan, node_hashes(leaves, plan_nodes(plan)))


def consistency_proof(leaves: tuple[bytes, ...], size1: int) -> list[bytes]:
    plan = consistency_plan(size1, len(leaves))
    return assemble(plan, node_hashes(leaves, plan_nodes(plan)))


SMALL = 33


@pytest.mark.parametrize("size", range(SMALL + 1))
def test_roots_match_naive(size: int) -> None:
    leaves = leaves_of(size)
    want = naive.mth(leaves)
    assert root_from_leaf_hashes(leaves) == want
    if size:
        nodes = root_plan(size)
        assert fold([naive.mth(leaves[n.begin : n.end]) for n in nodes]) == want
    else:
        assert want == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_inclusion_plans_match_naive_path(size: int) -> None:
    leaves = leaves_of(size)
    root = naive.mth(leaves)
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        assert proof == naive.path(index, leaves), (index, size)
        verify_inclusion(index, size, leaves[index], proof, root)
        assert naive.verify_path(index, size, leaves[index], proof, root)


@pytest.mark.parametrize("size2", range(1, SMALL + 1))
def test_consistency_plans_match_naive_proof(size2: int) -> None:
    leaves = leaves_of(size2)
    root2 = naive.mth(leaves)
    for size1 in range(1, size2 + 1):
        proof = consistency_proof(leaves, size1)
        assert proof == naive.proof(size1, leaves), (size1, size2)
        root1 = naive.mth(leaves[:size1])
        verify_consistency(size1, size2, proof, root1, root2)
        assert naive.verify_proof(size1, size2, proof, root1, root2)


@pytest.mark.parametrize("begin", range(0, 20))
def test_range_nodes_tile_the_range(begin: int) -> None:
    for end in range(begin, 45):
        nodes = range_nodes(begin, end)
        pos = begin
        for n in nodes:
            assert n.begin == pos and n.end > pos and n.index >= 0
            pos = n.end
        assert pos == end


def test_compact_range_matches_naive() -> None:
    leaves = leaves_of(70)
    cr = CompactRange()
    for size in range(1, len(leaves) + 1):
        created = cr.append(leaves[size - 1])
        assert created[0] == (Node(0, size - 1), leaves[size - 1])
        for n, h in created:
            assert n.end == size, "a new node must end at the new leaf"
            assert h == naive.mth(leaves[n.begin : n.end])
        # Every perfect node that ends at `size` is reported exactly once.
        assert len(created) == 1 + ((size & -size).bit_length() - 1)
        assert cr.size == size
        assert cr.root() == naive.mth(leaves[:size])
        assert cr.hashes == [naive.mth(leaves[n.begin : n.end]) for n in range_nodes(0, size)]
        resumed = CompactRange(size, cr.hashes)
        if size < len(leaves):
            resumed.append(leaves[size])
            assert resumed.root() == naive.mth(leaves[: size + 1])
    assert CompactRange().root() == EMPTY_ROOT


def test_compact_range_rejects_wrong_hash_count() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [bytes(32)])


def test_plans_refuse_impossible_requests() -> None:
    for index, size in [(0, 0), (-1, 3), (3, 3)]:
        with pytest.raises(ValueError):
            inclusion_plan(index, size)
    for size1, size2 in [(0, 0), (0, 5), (6, 5)]:
        with pytest.raises(ValueError):
            consistency_plan(size1, size2)


def test_inclusion_proof_does_not_bind_size() -> None:
    """RFC 9162 2.1.3.2 reads only the proof's left/right shape: leaf 0 in size 3 and in size 4 share it.

    The root binds the size (a checkpoint signs both), so this is harmless; the naive verifier and Go's
    tlog.CheckRecord accept the same claim, and the property tests hold the fast verifier to the naive one.
    """
    leaves = leaves_of(3)
    proof = inclusion_proof(leaves, 0)
    root = naive.mth(leaves)
    verify_inclusion(0, 4, leaves[0], proof, root)
    assert naive.verify_path(0, 4, leaves[0], proof, root)


# --- Hypothesis ---------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=3000)


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    h = bytearray(out[i])
    h[bit // 8] ^= 1 << (bit % 8)
    out[i] = bytes(h)
    return out


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int, tuple[bytes, ...], list[bytes], bytes]:
    size = draw(sizes)
    index = draw(st.integers(0, size - 1))
    salt = draw(st.binary(max_size=4))
    leaves = leaves_of(size, salt)
    proof = inclusion_proof(leaves, index)
    assert proof == naive.path(index, leaves), "plan + assemble differs from RFC 9162 PATH"
    return index, size, leaves, proof, naive.mth(leaves)


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes, bytes]:
    """(size1, size2, proof, root1, root2); the leaves are leaves_of(size2, salt) for some salt."""
    size2 = draw(sizes)
    size1 = draw(st.integers(1, size2))
    salt = draw(st.binary(max_size=4))
    leaves = leaves_of(size2, salt)
    proof = consistency_proof(leaves, size1)
    assert proof == naive.proof(size1, leaves), "plan + assemble differs from RFC 9162 PROOF"
    return size1, size2, proof, naive.mth(leaves[:size1]), naive.mth(leaves)


@given(inclusion_cases())
def test_any_inclusion_proof_verifies_and_matches_naive(
    case: tuple[int, int, tuple[bytes, ...], list[bytes], bytes],
) -> None:
    index, size, leaves, proof, root = case
    verify_inclusion(index, size, leaves[index], proof, root)


@given(inclusion_cases(), st.data())
def test_inclusion_bit_flip_fails(
    case: tuple[int, int, tuple[bytes, ...], list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaves, proof, root = case
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaves[index], _flip(proof, i, bit), root)


@given(inclusion_cases(), st.data())
def test_inclusion_other_index_fails(
    case: tuple[int, int, tuple[bytes, ...], list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaves, proof, root = case
    other = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(other, size, leaves[index], proof, root)


@given(inclusion_cases(), st.data())
def test_inclusion_other_size_fails_unless_naive_accepts(
    case: tuple[int, int, tuple[bytes, ...], list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaves, proof, root = case
    other = data.draw(st.one_of(st.integers(0, 2 * size + 2), st.integers(0, 1 << 40)).filter(lambda n: n != size))
    leaf = leaves[index]
    if naive.verify_path(index, other, leaf, proof, root):
        verify_inclusion(index, other, leaf, proof, root)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(index, other, leaf, proof, root)


@given(inclusion_cases(), st.data())
def test_inclusion_truncated_or_extended_fails(
    case: tuple[int, int, tuple[bytes, ...], list[bytes], bytes], data: st.DataObject
) -> None:
    index, size, leaves, proof, root = case
    variants = [proof + [data.draw(st.binary(min_size=32, max_size=32))], proof + [root]]
    if proof:
        variants += [proof[:-1], proof[1:], proof[:-1] + proof[-1:] * 2]
    for bad in variants:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaves[index], bad, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, _flip([leaves[index]], 0, data.draw(st.integers(0, 255)))[0], proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaves[index], proof, _flip([root], 0, data.draw(st.integers(0, 255)))[0])


@given(consistency_cases())
def test_any_consistency_proof_verifies_and_matches_naive(case: tuple[int, int, list[bytes], bytes, bytes]) -> None:
    size1, size2, proof, root1, root2 = case
    verify_consistency(size1, size2, proof, root1, root2)


@given(consistency_cases(), st.data())
def test_consistency_bit_flip_fails(case: tuple[int, int, list[bytes], bytes, bytes], data: st.DataObject) -> None:
    size1, size2, proof, root1, root2 = case
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, _flip(proof, i, bit), root1, root2)


@given(consistency_cases(), st.data())
def test_consistency_other_sizes_fail_unless_naive_accepts(
    case: tuple[int, int, list[bytes], bytes, bytes], data: st.DataObject
) -> None:
    size1, size2, proof, root1, root2 = case
    new1 = data.draw(st.integers(-1, size2 + 2))
    new2 = data.draw(st.integers(-1, 2 * size2 + 2))
    if (new1, new2) == (size1, size2):
        return
    if naive.verify_proof(new1, new2, proof, root1, root2):
        verify_consistency(new1, new2, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(new1, new2, proof, root1, root2)


@given(consistency_cases(), st.data())
def test_consistency_truncated_extended_or_swapped_fails(
    case: tuple[int, int, list[bytes], bytes, bytes], data: st.DataObject
) -> None:
    size1, size2, proof, root1, root2 = case
    variants = [proof + [data.draw(st.binary(min_size=32, max_size=32))], [root1, *proof]]
    if proof:
        variants += [proof[:-1], proof[1:], proof + proof[-1:]]
    for bad in variants:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, bad, root1, root2)
    if root1 != root2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root2, root1)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, _flip([root1], 0, bit)[0], root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, _flip([root2], 0, bit)[0])


@given(st.lists(st.binary(max_size=8), max_size=300), st.integers(0, 300))
def test_compact_range_resume_matches_naive(entries: list[bytes], cut: int) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries]
    cut = min(cut, len(leaves))
    first = CompactRange()
    for h in leaves[:cut]:
        first.append(h)
    resumed = CompactRange(first.size, first.hashes)
    for h in leaves[cut:]:
        resumed.append(h)
    assert resumed.root() == naive.mth(leaves) == root_from_leaf_hashes(leaves)
