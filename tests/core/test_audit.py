"""client/core/audit.py: the auditor's decisions, with no server (attack tests by name)."""

from __future__ import annotations

import pytest

from client.core import audit, merkle
from client.core.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from client.core.note import Signer
from client.errors import FormatError, InconsistencyError, SignatureError

ORIGIN = "audit.example/log"
SIGNER = Signer.generate(ORIGIN)
ENTRIES = [f"entry {i}".encode() for i in range(13)]


def signed(size: int, root: bytes | None = None) -> SignedCheckpoint:
    if root is None:
        root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in ENTRIES[:size]])
    cp = Checkpoint(ORIGIN, size, root)
    return SignedCheckpoint(cp, sign_checkpoint(cp, SIGNER))


def state(size: int, root: bytes | None = None) -> audit.AuditState:
    s = signed(size, root)
    return audit.AuditState(ORIGIN, SIGNER.verifier().text(), size, s.checkpoint.root, s.note)


def rebuilt(size: int, remember: int = 0) -> audit.TreeRebuilder:
    r = audit.TreeRebuilder([remember])
    r.add(ENTRIES[:size])
    return r


def proof(size1: int, size2: int) -> list[bytes]:
    hashes = [merkle.leaf_hash(e) for e in ENTRIES[:size2]]
    plan = merkle.consistency_plan(size1, size2)
    nodes = {n: merkle.root_from_leaf_hashes(hashes[n.begin : n.end]) for n in merkle.plan_nodes(plan)}
    return merkle.assemble(plan, nodes)


def test_honest_growth_passes() -> None:
    new = signed(13)
    audit.check_root(new, rebuilt(13, 5))
    audit.check_old_root(state(5), new, rebuilt(13, 5))


def test_first_audit_has_no_old_root() -> None:
    audit.check_old_root(None, signed(13), rebuilt(13))


def test_root_mismatch_carries_evidence() -> None:
    bad = signed(13, merkle.leaf_hash(b"lie"))
    with pytest.raises(audit.RootMismatchError) as info:
        audit.check_root(bad, rebuilt(13))
    assert info.value.note == bad.note and info.value.computed_root == rebuilt(13).root()


def test_size_mismatch_is_a_root_mismatch() -> None:
    with pytest.raises(audit.RootMismatchError):
        audit.check_root(signed(13), rebuilt(12))


def test_rewritten_prefix_is_a_fork_even_with_a_valid_proof() -> None:
    # The entries served now hash to another root at the trusted size.
    other = audit.TreeRebuilder([5])
    other.add([b"x"] * 5 + ENTRIES[5:13])
    with pytest.raises(InconsistencyError, match="trusted size 5") as info:
        audit.check_old_root(state(5), signed(13), other)
    assert info.value.old_note == state(5).note and info.value.new_note == signed(13).note


def test_trust_state_reads_what_audit_writes() -> None:
    from client.core.trust import TrustState

    trust = TrustState.from_text(audit.format_states({ORIGIN: state(5)}))
    assert trust.proof_needed(signed(13)) == (5, 13)
    advanced, _ = trust.advance(SIGNER.verifier(), signed(13).note, proof(5, 13))
    assert audit.parse_states(advanced.to_text())[ORIGIN].size == 13


def test_choose_verifier_tofu_pinned_and_remembered() -> None:
    served = SIGNER.verifier().text()
    other = Signer.generate(ORIGIN).verifier().text()
    assert audit.choose_verifier(ORIGIN, served, None, None).text() == served
    assert audit.choose_verifier(ORIGIN, served, other, None).text() == other
    remembered = audit.AuditState(ORIGIN, other, 1, bytes(32), b"")
    assert audit.choose_verifier(ORIGIN, served, None, remembered).text() == other
    with pytest.raises(SignatureError):
        audit.choose_verifier("another/log", served, None, None)


def test_state_round_trip_and_strict_parse() -> None:
    states = {ORIGIN: state(5)}
    assert audit.parse_states(audit.format_states(states)) == states
    assert audit.parse_states("") == {}
    for bad in ("[]", '{"version": 2, "logs": {}}', '{"version": 1, "logs": {"a": {"size": 1}}}', "{"):
        with pytest.raises(FormatError):
            audit.parse_states(bad)
