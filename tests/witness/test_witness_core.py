"""The add-checkpoint decision (ledger/witness/core.py): every status code of tlog-witness, state and evidence."""

from __future__ import annotations

import base64

import pytest
from witness_kit import ToyLog

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.cosignature import WitnessSigner, verify_cosignature
from client.core.note import Signer
from ledger.witness.core import Decision, LogConfig, LogState, add_checkpoint, parse_request

W = WitnessSigner("witness.example/w1", bytes(range(40, 72)))
LOG = ToyLog().grow(20)
LOGS = {LOG.origin: LogConfig(LOG.origin, (LOG.signer.verifier(),))}


def run(body: bytes, state: LogState | None = None, now: int = 1000) -> Decision:
    return add_checkpoint(LOGS, {} if state is None else {LOG.origin: state}, body, now, [W])


def held(n: int, ts: int = 1000) -> LogState:
    d = run(LOG.request(0, n), now=ts)
    assert d.status == 200 and d.new_state is not None
    return d.new_state


def test_first_checkpoint_is_cosigned_and_state_returned() -> None:
    d = run(LOG.request(0, 5))
    assert d.status == 200 and d.evidence is None and d.new_state is not None
    assert d.body.startswith("\u2014 witness.example/w1 ".encode()) and d.body.count(b"\n") == 1
    assert verify_cosignature(W.key(), LOG.note(5) + d.body) == 1000
    st = d.new_state
    assert (st.origin, st.size, st.root, st.timestamp) == (LOG.origin, 5, LOG.root(5), 1000)
    # The note served to monitors carries the log's signature and the cosignature.
    assert st.note == LOG.note(5) + d.body


def test_consistent_growth_is_cosigned() -> None:
    d = run(LOG.request(5, 13), held(5))
    assert d.status == 200 and d.new_state is not None and d.new_state.size == 13


def test_same_checkpoint_again_is_cosigned_again_with_a_later_time() -> None:
    d = run(LOG.request(5, 5), held(5, ts=1000), now=2000)
    assert d.status == 200 and d.new_state is not None and d.new_state.timestamp == 2000


def test_timestamps_never_go_backwards() -> None:
    d = run(LOG.request(5, 8), held(5, ts=5000), now=10)  # the clock stepped back
    assert d.status == 200 and d.new_state is not None and d.new_state.timestamp == 5000
    assert verify_cosignature(W.key(), LOG.note(8) + d.body) == 5000


def test_rollback_answers_409_with_the_held_size() -> None:
    d = run(LOG.request(3, 4), held(10))
    assert (d.status, d.body, d.content_type) == (409, b"10\n", "text/x.tlog.size")
    assert d.new_state is None and d.evidence is None
    d = run(LOG.request(5, 5))  # never cosigned: the held size is 0
    assert (d.status, d.body) == (409, b"0\n")


def test_smaller_tree_from_the_held_size_is_400_and_never_cosigned() -> None:
    d = run(LOG.request(10, 4, proof=[]), held(10))
    assert d.status == 400 and d.new_state is None and b"above the checkpoint size" in d.body


def test_fork_at_the_same_size_is_422_with_evidence() -> None:
    st = held(10)
    fork = LOG.forked(7)
    body = fork.request(10, 10)
    d = run(body, st, now=1234)
    assert d.status == 422 and d.new_state is None and b"fork" in d.body
    ev = d.evidence
    assert ev is not None and (ev.origin, ev.received, ev.request, ev.held) == (LOG.origin, 1234, body, st.note)


def test_fork_to_a_larger_size_fails_the_proof_with_evidence() -> None:
    st = held(10)
    fork = LOG.forked(7)
    d = run(fork.request(10, 15), st)
    assert d.status == 422 and d.evidence is not None and b"does not verify" in d.body
    # Even with a proof of its own branch: it does not lead from the held root.
    d = run(fork.request(10, 15, proof=fork.proof(10, 15)), st)
    assert d.status == 422 and d.evidence is not None


def test_bad_proof_is_422() -> None:
    proof = LOG.proof(5, 13)
    proof[0] = bytes(32)
    d = run(LOG.request(5, 13, proof=proof), held(5))
    assert d.status == 422 and d.new_state is None


def test_proof_where_none_belongs_is_422_without_evidence() -> None:
    d = run(LOG.request(0, 5, proof=[bytes(32)]))
    assert d.status == 422 and d.evidence is None
    d = run(LOG.request(5, 5, proof=[bytes(32)]), held(5))
    assert d.status == 422 and d.evidence is None


def test_size_zero_needs_the_empty_root() -> None:
    assert run(LOG.request(0, 0)).status == 200
    bad = sign_checkpoint(Checkpoint(LOG.origin, 0, bytes(32)), LOG.signer)
    d = run(LOG.request(0, 0, note=bad))
    assert d.status == 422 and d.evidence is not None


def test_unknown_origin_is_404() -> None:
    other = ToyLog(origin="example.com/other").grow(3)
    d = run(other.request(0, 3))
    assert d.status == 404 and d.new_state is None


def test_unsigned_or_badly_signed_is_403() -> None:
    stranger = Signer.from_seed(LOG.origin, bytes(32))  # the right name, another key
    assert run(LOG.request(0, 5, note=LOG.note(5, stranger))).status == 403
    note = bytearray(LOG.note(5))
    line_start = note.rindex(b"\n", 0, len(note) - 1) + 1
    raw = bytearray(base64.b64decode(note[line_start:-1].split(b" ")[2]))
    raw[10] ^= 1
    tampered = bytes(note[:line_start]) + note[line_start:-1].rsplit(b" ", 1)[0] + b" " + base64.b64encode(raw) + b"\n"
    d = run(LOG.request(0, 5, note=tampered))
    assert d.status == 403 and b"invalid signature" in d.body


NOTE5 = LOG.note(5)
HASH = base64.b64encode(bytes(32)) + b"\n"


@pytest.mark.parametrize("body", [
    b"",
    b"old 5\n",  # no blank line
    b"old 05\n\n" + NOTE5,  # leading zero
    b"old -1\n\n" + NOTE5,
    b"old  5\n\n" + NOTE5,
    b"new 5\n\n" + NOTE5,
    b"old 5\nnot base64!\n\n" + NOTE5,
    b"old 5\n" + base64.b64encode(bytes(31)) + b"\n\n" + NOTE5,  # not a 32-byte hash
    b"old 0\n" + HASH * 64 + b"\n" + NOTE5,  # over 63 proof lines
    b"old 0\n\nnot a note\n",
    b"old 0\n\n" + NOTE5.split(b"\n\n")[0] + b"\n",  # no signature lines
    b"old 0\n\nexample.com/toy-log\n5\n\n" + NOTE5.split(b"\n\n")[1],  # no root line
    b"old 99999999999999999999\n\n" + NOTE5,
])
def test_malformed_requests_are_400(body: bytes) -> None:
    d = run(body)
    assert d.status == 400 and d.new_state is None and d.evidence is None


def test_parse_request_keeps_the_parts() -> None:
    body = LOG.request(5, 13)
    req = parse_request(body)
    assert (req.old_size, list(req.proof), req.note, req.raw) == (5, LOG.proof(5, 13), LOG.note(13), body)
    assert req.checkpoint.size == 13 and req.text == Checkpoint(LOG.origin, 13, LOG.root(13)).to_text().encode()


def test_two_witness_keys_answer_two_lines() -> None:
    w2 = WitnessSigner("witness.example/w2", bytes(32))
    d = add_checkpoint(LOGS, {}, LOG.request(0, 5), 7, [W, w2])
    assert d.status == 200 and d.body.count(b"\n") == 2
    assert verify_cosignature(w2.key(), LOG.note(5) + d.body) == 7
