"""Client trust state: every newer checkpoint proved consistent; forks and rollbacks refused with evidence."""

from __future__ import annotations

import naive_merkle as nm
import pytest

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.note import Signer
from client.core.trust import TrustState, evidence_text
from client.errors import InconsistencyError, SignatureError

ORIGIN = "example.com/trust-test"
SIGNER = Signer.generate(ORIGIN)
VERIFIER = SIGNER.verifier()
LEAVES = [nm.leaf(b"entry %d" % i) for i in range(20)]


def note(size: int, leaves: list[bytes] = LEAVES) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, nm.mth(leaves[:size])), SIGNER)


def test_first_use_then_consistent_growth() -> None:
    state, cp = TrustState().advance(VERIFIER, note(5), [])
    assert cp.checkpoint.size == 5
    assert state.proof_needed(cp) is None
    new = note(13)
    from client.core.checkpoint import open_checkpoint

    assert state.proof_needed(type(cp)(open_checkpoint(new, VERIFIER), new)) == (5, 13)
    state2, cp2 = state.advance(VERIFIER, new, nm.proof(5, LEAVES[:13]))
    assert state2.trusted(ORIGIN).size == 13  # type: ignore[union-attr]
    again = TrustState.from_text(state2.to_text())
    assert again.trusted(ORIGIN) == state2.trusted(ORIGIN)
    # Same checkpoint again: nothing changes.
    state3, _ = state2.advance(VERIFIER, new, [])
    assert state3.trusted(ORIGIN) == state2.trusted(ORIGIN)


def test_fork_same_size_different_root_refused_with_evidence() -> None:
    state, _ = TrustState().advance(VERIFIER, note(8), [])
    forked = [*LEAVES[:7], nm.leaf(b"evil")]
    with pytest.raises(InconsistencyError, match="two different roots") as info:
        state.advance(VERIFIER, note(8, forked), [])
    err = info.value
    assert err.old_note == note(8) and err.new_note == note(8, forked)
    text = evidence_text(err)
    assert note(8).decode() in text and note(8, forked).decode() in text


def test_fork_at_larger_size_refused() -> None:
    state, _ = TrustState().advance(VERIFIER, note(6), [])
    forked = [*LEAVES[:3], nm.leaf(b"evil"), *LEAVES[4:12]]
    bad_proof = nm.proof(6, forked[:12])
    with pytest.raises(InconsistencyError, match="not consistent with the trusted size 6") as info:
        state.advance(VERIFIER, note(12, forked), bad_proof)
    assert info.value.proof == bad_proof


def test_rollback_refused() -> None:
    state, _ = TrustState().advance(VERIFIER, note(10), [])
    with pytest.raises(InconsistencyError, match="shrank from size 10 to 9"):
        state.advance(VERIFIER, note(9), [])


def test_other_key_refused() -> None:
    state, _ = TrustState().advance(VERIFIER, note(3), [])
    other = Signer.generate(ORIGIN)
    cp = sign_checkpoint(Checkpoint(ORIGIN, 4, nm.mth(LEAVES[:4])), other)
    with pytest.raises(SignatureError):
        state.advance(VERIFIER, cp, [])
    with pytest.raises(SignatureError, match="is known in the trust state with the key"):
        state.advance(other.verifier(), cp, [])


def test_key_rotation_is_accepted_only_when_the_new_tree_extends_the_old_one() -> None:
    state, _ = TrustState().advance(VERIFIER, note(5), [])
    new_signer = Signer.generate(ORIGIN)  # the key the log was handed over to, obtained out of band
    extended = sign_checkpoint(Checkpoint(ORIGIN, 9, nm.mth(LEAVES[:9])), new_signer)
    with pytest.raises(SignatureError, match="--accept-key-rotation"):
        state.advance(new_signer.verifier(), extended, nm.proof(5, LEAVES[:9]))
    rotated, cp = state.advance(new_signer.verifier(), extended, nm.proof(5, LEAVES[:9]), accept_rotation=True)
    assert cp.checkpoint.size == 9
    assert rotated.trusted(ORIGIN).verifier_key == new_signer.verifier().text()  # type: ignore[union-attr]
    # A "rotation" whose tree rewrites what the old key signed is a fork, not a handover.
    other = [nm.leaf(b"other %d" % i) for i in range(9)]
    forked = sign_checkpoint(Checkpoint(ORIGIN, 9, nm.mth(other)), new_signer)
    with pytest.raises(InconsistencyError, match="not consistent with the trusted size 5"):
        state.advance(new_signer.verifier(), forked, nm.proof(5, other), accept_rotation=True)
    shrunk = sign_checkpoint(Checkpoint(ORIGIN, 4, nm.mth(LEAVES[:4])), new_signer)
    with pytest.raises(InconsistencyError, match="shrank"):
        state.advance(new_signer.verifier(), shrunk, [], accept_rotation=True)
