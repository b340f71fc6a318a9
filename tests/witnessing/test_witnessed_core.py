"""The pure parts: every signature line accounted for (client/core/witnessed.py), the trust state under a
policy (client/core/trust.py), and the add-checkpoint wire format (ledger/log/witness_wire.py). No servers."""

from __future__ import annotations

import dataclasses

import pytest

from client.core.bundle.format import Bundle, BundleRecord, to_bytes
from client.core.bundle.report import report_json, report_text
from client.core.bundle.verify import BundleQuorumError, verify_parsed
from client.core.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from client.core.cosignature import WitnessSigner
from client.core.merkle import CompactRange, leaf_hash
from client.core.note import Signer, encode_base64
from client.core.records import record_id
from client.core.trust import TrustState
from client.core.witness_policy import WitnessPolicy
from client.core.witnessed import WitnessQuorumError, check_signatures, require_quorum, verified_note
from client.errors import InconsistencyError, InvalidInputError, SignatureError
from ledger.log.witness_wire import format_request, parse_outcome
from tests import naive_merkle

LOG = Signer.from_seed("test.example/log", bytes(range(32)))
W = [WitnessSigner(f"w{i}.test/key", bytes([i + 1]) * 32) for i in range(3)]
FAKE = f"\u2014 fake.example/w {encode_base64(b'WXYZ' + bytes(72))}\n"


def policy(quorum: str = "all", names: tuple[int, ...] = (0, 1), log: bool = True) -> WitnessPolicy:
    lines = [f"log {LOG.verifier().text()}"] if log else []
    lines += [f"witness w{i} {W[i].key().text()}" for i in range(3)]
    lines += [f"group g {quorum} " + " ".join(f"w{i}" for i in names), "quorum g"]
    return WitnessPolicy.parse("\n".join(lines) + "\n")


def tree(n: int) -> tuple[list[bytes], CompactRange]:
    entries = [f"entry {i}".encode() for i in range(n)]
    r = CompactRange()
    for e in entries:
        r.append(leaf_hash(e))
    return entries, r


def note_of(size: int, *witnesses: int, ts: int = 1_800_000_000, extra: str = "") -> bytes:
    cp = Checkpoint(LOG.name, size, tree(size)[1].root())
    body = cp.to_text().encode()
    return sign_checkpoint(cp, LOG) + b"".join(W[i].cosign(body, ts + i).encode() for i in witnesses) + extra.encode()


def test_quorum_met_lists_each_witness_with_its_time() -> None:
    rep = check_signatures(note_of(5, 0, 1), LOG.verifier(), policy())
    assert rep.satisfied and [(w.name, w.status, w.timestamp) for w in rep.witnesses] == [
        ("w0", "verified", 1_800_000_000), ("w1", "verified", 1_800_000_001), ("w2", "absent", None)]
    require_quorum(rep)


def test_below_quorum_names_the_missing_witness() -> None:
    rep = check_signatures(note_of(5, 0), LOG.verifier(), policy())
    assert not rep.satisfied and rep.missing == ("w1",)
    with pytest.raises(WitnessQuorumError, match="missing cosignatures by w1") as err:
        require_quorum(rep)
    assert err.value.report is rep


def test_a_bad_line_of_a_policy_witness_is_refused_even_when_the_quorum_holds() -> None:
    good = note_of(5, 0, 1)
    forged = good + f"\u2014 {W[2].name} {encode_base64(W[2].key().key_id + bytes(72))}\n".encode()
    rep = check_signatures(forged, LOG.verifier(), policy("any", (0, 1, 2)))
    assert rep.bad == ("w2",) and rep.satisfied
    with pytest.raises(WitnessQuorumError, match="do not verify by w2"):
        require_quorum(rep)


def test_a_line_under_no_known_key_is_reported_and_refused_only_under_a_policy() -> None:
    faked = note_of(5, 0, 1, extra=FAKE)
    without = check_signatures(faked, LOG.verifier(), None)
    assert without.quorum is None and without.witnesses == ()
    assert [s.name for s in without.unverified] == ["w0.test/key", "w1.test/key", "fake.example/w"]
    require_quorum(without)  # no policy: nothing required
    assert "unverified signature line by fake.example/w (no key known; key ID 5758595a)" in without.unverified_text()
    under = check_signatures(faked, LOG.verifier(), policy())
    assert [s.name for s in under.unverified] == ["fake.example/w"]
    with pytest.raises(WitnessQuorumError, match="unverified signature line by fake.example/w"):
        require_quorum(under)
    assert verified_note(faked, under) == note_of(5, 0, 1)


def test_the_policy_must_list_this_log_with_this_key() -> None:
    other = Signer.generate("test.example/log")
    with pytest.raises(SignatureError, match="lists the log"):
        check_signatures(note_of(3, 0, 1), other.verifier(), policy())
    stranger = Signer.generate("test.example/another")
    with pytest.raises(SignatureError, match="does not list the log"):
        check_signatures(note_of(3, 0, 1), stranger.verifier(), policy())
    assert check_signatures(note_of(3, 0, 1), LOG.verifier(), policy(log=False)).satisfied


def test_trust_state_under_a_policy() -> None:
    state, _ = TrustState().advance(LOG.verifier(), note_of(9), [])  # trusted without witnesses, size 9
    with pytest.raises(WitnessQuorumError):
        state.advance(LOG.verifier(), note_of(9, 0), [], policy())
    # A cosigned checkpoint behind the trusted one: accepted with a proof that it is a prefix, state kept.
    older = note_of(6, 0, 1)
    signed6 = state.logs[LOG.name]
    assert state.proof_needed(_signed(older), witnessed=True) == (6, 9)
    assert state.proof_needed(_signed(older)) is None
    proof = _consistency(6, 9)
    same, got = state.advance(LOG.verifier(), older, proof, policy())
    assert same is state and got.checkpoint.size == 6 and same.logs[LOG.name] == signed6
    with pytest.raises(InconsistencyError, match="not a prefix"):
        state.advance(LOG.verifier(), older, [bytes(32)] * len(proof), policy())
    with pytest.raises(InconsistencyError, match="rollback"):  # without a policy a smaller one is still refused
        state.advance(LOG.verifier(), note_of(6), [])
    bigger, got = state.advance(LOG.verifier(), note_of(12, 0, 1), _consistency(9, 12), policy())
    assert bigger.logs[LOG.name].size == 12 and got.note == note_of(12, 0, 1)


def _signed(note: bytes) -> SignedCheckpoint:
    return SignedCheckpoint.open(note, LOG.verifier())


def _consistency(m: int, n: int) -> list[bytes]:
    entries, _ = tree(n)
    return naive_merkle.proof(m, [leaf_hash(e) for e in entries])


def test_bundle_report_lists_witnesses_and_does_not_echo_unknown_lines() -> None:
    from tests.registry_kit import Lab

    _, signed = Lab("lab").dataset("d")
    entry = signed.entry
    cp = Checkpoint(LOG.name, 1, leaf_hash(entry))
    body = cp.to_text().encode()
    note = sign_checkpoint(cp, LOG) + W[0].cosign(body, 1).encode() + FAKE.encode()
    b = Bundle(LOG.verifier().text(), LOG.name, note, record_id(entry), None,
               (BundleRecord(record_id(entry), 0, entry, ()),))
    rep = verify_parsed(b, LOG.verifier().text(), require_identities=False)
    text = report_text(rep)
    assert "2 signature line(s) under no known key: NOT verified" in text
    assert report_json(rep)["checkpoint"]["note"].count("\u2014 ") == 1
    with pytest.raises(BundleQuorumError, match="unverified signature line by fake.example/w"):
        verify_parsed(b, LOG.verifier().text(), require_identities=False, policy=policy("any", (0,)))
    clean = dataclasses.replace(b, checkpoint=note.replace(FAKE.encode(), b""))
    ok = verify_parsed(clean, LOG.verifier().text(), require_identities=False, policy=policy("any", (0,)))
    assert "w0 (w0.test/key+" in report_text(ok) and "checks out" in report_text(ok)
    assert to_bytes(clean)


def test_add_checkpoint_wire_format() -> None:
    note = note_of(4)
    assert format_request(0, [], note) == b"old 0\n\n" + note
    assert format_request(2, [b"\x01" * 32], note) == b"old 2\n" + encode_base64(b"\x01" * 32).encode() + b"\n\n" + note
    with pytest.raises(InvalidInputError):
        format_request(0, [b"\x00" * 32], note)
    line = W[0].cosign(b"x\n1\n" + b"A" * 43 + b"=\n", 5)
    assert parse_outcome(200, "text/plain", line.encode()).lines == (line,)
    assert parse_outcome(200, None, b"not a line\n").kind == "refused"
    assert parse_outcome(409, "text/x.tlog.size", b"17\n").size == 17
    assert parse_outcome(409, "text/x.tlog.size; charset=utf-8", b"017\n").kind == "retry"  # not canonical
    assert parse_outcome(409, "text/plain", b"17\n").kind == "retry"
    for status in (400, 403, 404, 422):
        assert parse_outcome(status, "text/plain", b"why\n").kind == "refused"
    busy = parse_outcome(503, "text/plain", b"later\n", "3")
    assert busy.kind == "retry" and busy.retry_after == 3.0
