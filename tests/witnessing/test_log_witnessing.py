"""The log's side of witnessing (ledger/log/witnessing.py) against real witness servers.

Two witnesses at quorum 2 (aics-witness, an independent implementation, and ours when it is on the
tree, else a second aics-witness); a witness that is down; one that answers 409; one that sees a fork.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from client.core.checkpoint import SignedCheckpoint
from client.core.cosignature import verify_cosignature
from client.core.note import Signer
from client.core.witness_policy import WitnessPolicy
from ledger.log import Log, LogConfig
from ledger.log.witnessing import Witnessing, WitnessingConfig
from ledger.storage.memory import MemoryStorage
from tests.witnessing.conftest import WitnessPool, WitnessProcess, policy_text

FAST = WitnessingConfig(timeout_seconds=2.0, backoff_min_seconds=0.05, backoff_max_seconds=0.2)


def open_log(signer: Signer) -> Log:
    return Log.open(MemoryStorage(), signer, LogConfig(origin=signer.name))


def until(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def signer(witness_pool: WitnessPool) -> Signer:
    return witness_pool.signer()


@pytest.fixture
def pair(witness_pool: WitnessPool) -> Iterator[list[WitnessProcess]]:
    yield witness_pool.pair
    for w in witness_pool.pair:  # a test that stopped one leaves it running again
        if w.proc is None:
            w.start()


@pytest.fixture
def log_(signer: Signer) -> Iterator[Log]:
    lg = open_log(signer)
    yield lg
    lg.close()


def witnessing(signer: Signer, ws: list[WitnessProcess], quorum: str = "all", saved: bytes | None = None,
               persist: object = None) -> Witnessing:
    policy = WitnessPolicy.parse(policy_text(signer.verifier().text(), ws, quorum))
    return Witnessing(policy, signer.verifier(), saved=saved, persist=persist, config=FAST)  # type: ignore[arg-type]


def test_two_witnesses_quorum_two_cosign_the_same_checkpoint(log_: Log, signer: Signer,
                                                             pair: list[WitnessProcess]) -> None:
    saved: list[bytes] = []
    wit = witnessing(signer, pair, persist=saved.append)
    wit.start(log_)
    try:
        for i in range(20):
            log_.add([f"entry {i}".encode()])
        fut = wit.wait_for_cosigned(20)
        cosigned = fut.result(10)
    finally:
        wit.close()
    assert cosigned.checkpoint.size >= 20
    SignedCheckpoint.open(cosigned.note, signer.verifier())  # the log's own signature is still there
    result = wit.policy.evaluate(cosigned.note)
    assert result.satisfied and result.verified == ("w0", "w1") and not result.unknown_lines
    for w in pair:
        assert verify_cosignature(w.key, cosigned.note) is not None
    assert saved and saved[-1] == cosigned.note  # persisted for a restart
    assert wit.cosigned() == cosigned


def test_restart_serves_the_saved_cosigned_checkpoint(log_: Log, signer: Signer, pair: list[WitnessProcess]) -> None:
    saved: list[bytes] = []
    wit = witnessing(signer, pair, persist=saved.append)
    wit.start(log_)
    log_.add([b"a", b"b"])
    first = wit.wait_for_cosigned(2).result(10)
    wit.close()
    again = witnessing(signer, [pair[0], pair[1]], saved=saved[-1])
    for w in pair:  # no witness answers: what is served comes from the saved note alone
        w.stop()
    again.start(log_)
    try:
        assert again.cosigned() == first
        assert again.wait_for_cosigned(2).result(1) == first
    finally:
        again.close()


def test_a_saved_note_of_another_tree_is_ignored(log_: Log, signer: Signer, pair: list[WitnessProcess],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    other = open_log(signer)  # same key and origin, different entries: a fork's checkpoint
    other.add([b"forked", b"tree", b"bigger"])
    log_.add([b"x", b"y", b"z", b"w"])
    wit = witnessing(signer, pair, saved=other.latest().note)
    with caplog.at_level(logging.ERROR, logger="ledger.log.witnessing"):
        wit.start(log_)
    try:
        assert "saved cosigned checkpoint ignored" in caplog.text
        assert wit.wait_for_cosigned(4).result(10).checkpoint.size == 4
    finally:
        wit.close()
        other.close()


def test_a_down_witness_delays_nothing_and_is_missing(log_: Log, signer: Signer, pair: list[WitnessProcess]) -> None:
    pair[1].stop()
    wit = witnessing(signer, pair)
    wit.start(log_)
    try:
        t0 = time.monotonic()
        for i in range(10):
            log_.add([f"e{i}".encode()])
        assert time.monotonic() - t0 < 2.0  # the log keeps signing
        until(lambda: (c := wit.cosigned()) is not None and c.checkpoint.size == 10)
        partial = wit.cosigned()
        assert partial is not None
        result = wit.policy.evaluate(partial.note)
        assert not result.satisfied and result.verified == ("w0",) and result.missing == ("w1",)
        assert not wit.wait_for_cosigned(10).done()
        down = next(s for s in wit.status() if s.name == "w1")
        assert down.failures >= 1 and down.size == 0
        pair[1].start()  # back: it catches up on the newest checkpoint and the quorum forms
        assert wit.wait_for_cosigned(10).result(10).checkpoint.size == 10
    finally:
        wit.close()


@pytest.mark.parametrize("which", [0, 1], ids=["aics-witness", "second"])
def test_409_the_log_retries_from_the_witness_size(log_: Log, signer: Signer, pair: list[WitnessProcess],
                                                   caplog: pytest.LogCaptureFixture, which: int) -> None:
    """The witness already holds size 3 (sent out of band by another feeder); we start from old 0."""
    from ledger.log.witness_wire import WitnessConnection, format_request

    log_.add([b"one", b"two", b"three"])
    conn = WitnessConnection(pair[which].url, 5)
    out = conn.add_checkpoint(format_request(0, [], log_.latest().note))
    conn.close()
    assert out.kind == "cosigned"
    log_.add([b"four"])
    wit = witnessing(signer, pair[which:which + 1])
    with caplog.at_level(logging.INFO, logger="ledger.log.witnessing"):
        wit.start(log_)
        try:
            got = wit.wait_for_cosigned(4).result(10)
        finally:
            wit.close()
    assert got.checkpoint.size == 4
    assert "holds size 3 (we sent old 0)" in caplog.text


@pytest.mark.parametrize("which", [0, 1], ids=["aics-witness", "second"])
def test_a_fork_is_refused_and_logged(signer: Signer, pair: list[WitnessProcess],
                                      caplog: pytest.LogCaptureFixture, which: int) -> None:
    honest, fork = open_log(signer), open_log(signer)
    try:
        honest.add([b"a", b"b"])
        fork.add([b"a", b"B", b"c"])  # same origin and key, different second entry
        w1 = witnessing(signer, pair[which:which + 1])
        w1.start(honest)
        w1.wait_for_cosigned(2).result(10)
        w1.close()
        w2 = witnessing(signer, pair[which:which + 1])
        with caplog.at_level(logging.INFO, logger="ledger.log.witnessing"):
            w2.start(fork)
            until(lambda: w2.status()[0].stopped is not None)
            w2.close()
        status = w2.status()[0]
        assert status.stopped is not None and "422" in status.stopped
        assert "refused the checkpoint of size 3" in caplog.text
        assert w2.cosigned() is None
    finally:
        honest.close()
        fork.close()


def test_a_witness_ahead_of_the_log_is_logged_as_an_error(signer: Signer, pair: list[WitnessProcess],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The witness cosigned size 5 of this origin; a log of size 3 under the same key (a fork, or a store that
    lost entries) gets a 409 it cannot prove from: it says so and sends nothing until it reaches that size."""
    ahead, behind = open_log(signer), open_log(signer)
    try:
        ahead.add([b"1", b"2", b"3", b"4", b"5"])
        first = witnessing(signer, pair[:1])
        first.start(ahead)
        first.wait_for_cosigned(5).result(10)
        first.close()
        behind.add([b"1", b"2", b"3"])
        second = witnessing(signer, pair[:1])
        with caplog.at_level(logging.INFO, logger="ledger.log.witnessing"):
            second.start(behind)
            until(lambda: "larger than this log's checkpoint 3" in caplog.text)
            second.close()
        assert second.cosigned() is None and second.status()[0].stopped is None
    finally:
        ahead.close()
        behind.close()
