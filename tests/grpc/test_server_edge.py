"""The gRPC edge against a fake log, in process: wiring, request parsing and the one error table."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.core import merkle
from client.core.checkpoint import open_checkpoint
from client.errors import (
    FormatError,
    InconsistencyError,
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProofError,
    ProvenanceError,
    ResourceExhaustedError,
    SignatureError,
    UnavailableError,
    VerificationError,
)
from client.remote import LogClient, RemoteError
from client.remote.base import ERROR_FOR_STATUS
from ledger.grpc.status import STATUS_FOR_ERROR, code_for
from tests.fake_log import FakeLog
from tests.inproc import serving

_IDENTITY = {"request_serializer": None, "response_deserializer": None}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeLog, str]]:
    log = FakeLog()
    with serving(log, max_range=4) as (address, _):
        yield log, address


@pytest.fixture
def client(served: tuple[FakeLog, str]) -> Iterator[LogClient]:
    with LogClient(served[1], timeout=10) as c:
        yield c


def test_status_table_order_puts_subclasses_first() -> None:
    classes = [cls for cls, _ in STATUS_FOR_ERROR]
    for i, cls in enumerate(classes):
        for later in classes[i + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


@pytest.mark.parametrize(
    "err, code",
    [
        (InvalidInputError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (FormatError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (OutOfRangeError("x"), grpc.StatusCode.OUT_OF_RANGE),
        (ResourceExhaustedError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (UnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
        (ProofError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (SignatureError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (InconsistencyError("x", old_note=b"", new_note=b"", proof=[]), grpc.StatusCode.FAILED_PRECONDITION),
        (VerificationError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (ProvenanceError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_error_table(err: ProvenanceError, code: grpc.StatusCode) -> None:
    assert code_for(err) == code


def test_client_maps_every_server_code_back_to_a_family() -> None:
    for cls, code in STATUS_FOR_ERROR:
        back = ERROR_FOR_STATUS[code]
        # The client gets the family back (a ProofError arrives as InvalidInputError: the request was refused).
        assert issubclass(cls, back) or code in (grpc.StatusCode.INVALID_ARGUMENT,), (cls, back)


def test_round_trip_add_prove_consist(served: tuple[FakeLog, str], client: LogClient) -> None:
    log, _ = served
    first = client.add_entries([b"a", b"b", b"c"], wait_for_checkpoint=True)
    assert first.checkpoint is not None
    cp = open_checkpoint(first.checkpoint, log.signer.verifier())
    for added, entry in zip(first.entries, [b"a", b"b", b"c"], strict=True):
        assert added.leaf_hash == merkle.leaf_hash(entry)
        merkle.verify_inclusion(added.index, cp.size, added.leaf_hash, added.inclusion_proof, cp.root)
    again = client.add_entries([b"b", b"d"])
    assert again.checkpoint is None
    assert [e.duplicate for e in again.entries] == [True, False]
    assert again.entries[0].index == first.entries[1].index
    latest = open_checkpoint(client.checkpoint(), log.signer.verifier())
    p = client.inclusion_proof(leaf_hash=merkle.leaf_hash(b"d"))
    assert p.tree_size == latest.size
    merkle.verify_inclusion(p.index, p.tree_size, p.leaf_hash, p.hashes, latest.root)
    many = client.inclusion_proofs(list(range(latest.size)))
    leaves = [merkle.leaf_hash(e) for e in client.iter_entries(0, latest.size)]
    for q in many:
        assert q.leaf_hash == b""
        merkle.verify_inclusion(q.index, q.tree_size, leaves[q.index], q.hashes, latest.root)
    c = client.consistency_proof(cp.size, 0)
    merkle.verify_consistency(c.old_size, c.new_size, c.hashes, cp.root, latest.root)
    assert list(client.iter_entries(0, latest.size))[: 3] == [b"a", b"b", b"c"]
    assert len(client.entries(0, 100)) <= 4  # max_range
    info = client.log_info()
    assert info.origin == log.origin and info.verifier_key == log.signer.verifier().text()


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda c: c.add_entries([]), InvalidInputError),
        (lambda c: c.add_entries([b"x" * 2000]), InvalidInputError),
        (lambda c: c.add_entries([bytes([i]) for i in range(17)]), InvalidInputError),
        (lambda c: c.inclusion_proof(index=10**6), OutOfRangeError),
        (lambda c: c.inclusion_proof(index=0, tree_size=10**6), OutOfRangeError),
        (lambda c: c.inclusion_proof(leaf_hash=b"\x00" * 32), NotFoundError),
        (lambda c: c.inclusion_proof(leaf_hash=b"\x00" * 7), InvalidInputError),
        (lambda c: c.inclusion_proofs([]), InvalidInputError),
        (lambda c: c.consistency_proof(0, 1), InvalidInputError),
        (lambda c: c.consistency_proof(1, 10**6), OutOfRangeError),
        (lambda c: c.entries(5, 5), InvalidInputError),
        (lambda c: c.entries(10**6, 10**6 + 1), OutOfRangeError),
    ],
)
def test_bad_requests_map_to_codes(client: LogClient, call: object, err: type[Exception]) -> None:
    client.add_entries([b"seed"])
    with pytest.raises(err):
        call(client)  # type: ignore[operator]


def test_per_entry_failure_is_the_batch_status(served: tuple[FakeLog, str], client: LogClient) -> None:
    served[0].fail_next = UnavailableError("disk on fire")
    with pytest.raises(UnavailableError, match="disk on fire"):
        client.add_entries([b"will fail"])


def test_malformed_request_bytes_are_invalid_argument(served: tuple[FakeLog, str]) -> None:
    with grpc.insecure_channel(served[1]) as channel:
        call = channel.unary_unary("/provenance.ledger.v1.LogService/GetInclusionProof", **_IDENTITY)
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_method_is_unimplemented(client: LogClient) -> None:
    with pytest.raises(RemoteError) as info:
        client._unary("NoSuchMethod", pb.GetCheckpointRequest(), pb.GetCheckpointResponse)
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_watch_streams_new_checkpoints(served: tuple[FakeLog, str], client: LogClient) -> None:
    log, _ = served
    stream = client.watch_checkpoints(timeout=10)
    first = open_checkpoint(next(stream), log.signer.verifier())
    client.add_entries([b"watch me"])
    second = open_checkpoint(next(stream), log.signer.verifier())
    assert second.size > first.size


def test_health_follows_log(served: tuple[FakeLog, str], client: LogClient) -> None:
    import time

    log, _ = served
    assert client.serving() and client.serving("provenance.ledger.v1.LogService")
    log.healthy = False
    try:
        deadline = time.monotonic() + 5
        while client.serving() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not client.serving()
    finally:
        log.healthy = True
    deadline = time.monotonic() + 5
    while not client.serving() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.serving()


def test_unexpected_exception_is_internal_and_logged(
    served: tuple[FakeLog, str], client: LogClient, caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = served

    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    original = log.consistency_proof
    log.consistency_proof = broken  # type: ignore[method-assign]
    try:
        client.add_entries([b"c1", b"c2"])
        with pytest.raises(RemoteError) as info:
            client.consistency_proof(1, 2)
    finally:
        log.consistency_proof = original  # type: ignore[method-assign]
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert "bug" not in str(info.value), "internal details stay in the server log"
    assert any("unexpected error" in r.message for r in caplog.records)
