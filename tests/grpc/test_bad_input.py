"""Hostile and broken requests get the right status and leave the stored log exactly as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.core import merkle
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Verifier
from client.remote import LogClient
from tests.servers import ServerProcess, running_server

MAX_ENTRY = 1024
MAX_BATCH = 8
MAX_RECEIVE = 64 * 1024
METHODS = (
    "AddEntries",
    "GetCheckpoint",
    "GetEntries",
    "GetInclusionProof",
    "GetInclusionProofs",
    "GetConsistencyProof",
    "GetLogInfo",
)
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--max-entry-bytes", str(MAX_ENTRY), "--max-batch-entries", str(MAX_BATCH),
            "--max-receive-bytes", str(MAX_RECEIVE)]
    with running_server(tmp_path_factory.mktemp("bad") / "data", args) as srv:
        with srv.client() as c:
            c.add_entries([f"seed {i}".encode() for i in range(5)], wait_for_checkpoint=True)
        yield srv


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
        yield ch


def _state(server: ServerProcess) -> Checkpoint:
    with server.client() as c:
        return open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key))


def _raw(channel: grpc.Channel, method: str) -> Callable[..., bytes]:
    return channel.unary_unary(f"/provenance.ledger.v1.LogService/{method}")  # identity (de)serializers


def _expect(server: ServerProcess, channel: grpc.Channel, method: str, body: bytes, code: Code) -> str:
    """Call ``method`` with raw ``body``; assert the status and that the log's size and root did not move."""
    before = _state(server)
    with pytest.raises(grpc.RpcError) as info:
        _raw(channel, method)(body, timeout=10)
    after = _state(server)
    assert info.value.code() == code, info.value.details()
    assert (after.size, after.root) == (before.size, before.root)
    details: str = info.value.details() or ""
    assert details, "errors must say what was wrong"
    return details


def _add(*entries: bytes) -> bytes:
    return pb.AddEntriesRequest(entries=list(entries)).SerializeToString()


def test_oversized_entry(server: ServerProcess, channel: grpc.Channel) -> None:
    details = _expect(server, channel, "AddEntries", _add(b"ok", b"x" * (MAX_ENTRY + 1)), Code.INVALID_ARGUMENT)
    assert str(MAX_ENTRY) in details


def test_oversized_batch(server: ServerProcess, channel: grpc.Channel) -> None:
    batch = [f"batch {i}".encode() for i in range(MAX_BATCH + 1)]
    _expect(server, channel, "AddEntries", _add(*batch), Code.INVALID_ARGUMENT)


def test_message_over_receive_limit(server: ServerProcess, channel: grpc.Channel) -> None:
    _expect(server, channel, "AddEntries", _add(b"y" * (MAX_RECEIVE + 10)), Code.RESOURCE_EXHAUSTED)


def test_empty_batch(server: ServerProcess, channel: grpc.Channel) -> None:
    _expect(server, channel, "AddEntries", _add(), Code.INVALID_ARGUMENT)


@pytest.mark.parametrize("method", METHODS)
def test_malformed_protobuf(server: ServerProcess, channel: grpc.Channel, method: str) -> None:
    # A length-delimited field whose length runs past the end of the message.
    _expect(server, channel, method, b"\x0a\xff\xff\x03abc", Code.INVALID_ARGUMENT)


BEYOND = 1 << 40


@pytest.mark.parametrize(
    "method, request_, code",
    [
        ("GetInclusionProof", pb.GetInclusionProofRequest(index=BEYOND), Code.OUT_OF_RANGE),
        ("GetInclusionProof", pb.GetInclusionProofRequest(index=0, tree_size=BEYOND), Code.OUT_OF_RANGE),
        ("GetInclusionProof", pb.GetInclusionProofRequest(index=3, tree_size=2), Code.OUT_OF_RANGE),
        ("GetInclusionProof", pb.GetInclusionProofRequest(leaf_hash=b"\x01" * 31), Code.INVALID_ARGUMENT),
        ("GetInclusionProof", pb.GetInclusionProofRequest(leaf_hash=merkle.leaf_hash(b"nope")), Code.NOT_FOUND),
        ("GetInclusionProof", pb.GetInclusionProofRequest(), Code.INVALID_ARGUMENT),
        ("GetInclusionProofs", pb.GetInclusionProofsRequest(), Code.INVALID_ARGUMENT),
        ("GetInclusionProofs", pb.GetInclusionProofsRequest(indices=[0, BEYOND]), Code.OUT_OF_RANGE),
        ("GetInclusionProofs", pb.GetInclusionProofsRequest(indices=[0], tree_size=BEYOND), Code.OUT_OF_RANGE),
        ("GetInclusionProofs", pb.GetInclusionProofsRequest(indices=[0] * 20_000), Code.INVALID_ARGUMENT),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=0, new_size=1), Code.INVALID_ARGUMENT),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=3, new_size=2), Code.INVALID_ARGUMENT),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=1, new_size=BEYOND), Code.OUT_OF_RANGE),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(old_size=BEYOND), Code.OUT_OF_RANGE),
        ("GetEntries", pb.GetEntriesRequest(start=2, end=2), Code.INVALID_ARGUMENT),
        ("GetEntries", pb.GetEntriesRequest(start=5, end=1), Code.INVALID_ARGUMENT),
        ("GetEntries", pb.GetEntriesRequest(start=BEYOND, end=BEYOND + 1), Code.OUT_OF_RANGE),
    ],
)
def test_bad_proof_and_range_requests(
    server: ServerProcess, channel: grpc.Channel, method: str, request_: object, code: Code
) -> None:
    _expect(server, channel, method, request_.SerializeToString(), code)  # type: ignore[attr-defined]


def test_the_log_still_works_afterwards(server: ServerProcess) -> None:
    with server.client() as c:
        added = c.add_entries([b"after the abuse"], wait_for_checkpoint=True)
        assert added.checkpoint is not None
        cp = open_checkpoint(added.checkpoint, Verifier.from_text(c.log_info().verifier_key))
        a = added.entries[0]
        merkle.verify_inclusion(a.index, cp.size, a.leaf_hash, a.inclusion_proof, cp.root)


def test_client_refuses_ambiguous_proof_request(server: ServerProcess) -> None:
    from client.errors import InvalidInputError

    with LogClient(server.address) as c, pytest.raises(InvalidInputError):
        c.inclusion_proof(index=1, leaf_hash=b"\x00" * 32)
