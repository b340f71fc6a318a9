"""The real server, as a separate process: health, reflection, every RPC, limits, SIGTERM drain."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client.core import merkle
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Verifier
from client.errors import InvalidInputError, NotFoundError, OutOfRangeError
from client.remote import LogClient
from tests.servers import ServerProcess, health_status, running_server

SERVICE = "provenance.ledger.v1.LogService"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("srv") / "data", ["--origin", "test.example/log"]) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[LogClient]:
    with server.client() as c:
        yield c


def _verifier(client: LogClient) -> Verifier:
    return Verifier.from_text(client.log_info().verifier_key)


def _latest(client: LogClient) -> Checkpoint:
    return open_checkpoint(client.checkpoint(), _verifier(client))


def test_health_serving(server: ServerProcess) -> None:
    assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(server.address, service=SERVICE) == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_log_info_and_key_file(server: ServerProcess, client: LogClient) -> None:
    info = client.log_info()
    assert info.origin == "test.example/log"
    assert Verifier.from_text(info.verifier_key).name == info.origin
    assert (server.data_dir / "log.pub").read_text().strip() == info.verifier_key
    key = server.data_dir / "log.key"
    assert key.stat().st_mode & 0o077 == 0, "the signing key must be private"


def test_every_rpc(client: LogClient) -> None:
    entries = [f"every-rpc {i}".encode() for i in range(5)]
    added = client.add_entries(entries, wait_for_checkpoint=True)
    assert added.checkpoint is not None
    cp = open_checkpoint(added.checkpoint, _verifier(client))
    for entry, a in zip(entries, added.entries, strict=True):
        assert a.leaf_hash == merkle.leaf_hash(entry) and not a.duplicate
        merkle.verify_inclusion(a.index, cp.size, a.leaf_hash, a.inclusion_proof, cp.root)
    # Duplicates keep their index.
    dup = client.add_entries(entries[:1])
    assert dup.entries[0].index == added.entries[0].index and dup.entries[0].duplicate

    latest = _latest(client)
    assert latest.size >= cp.size
    got = list(client.iter_entries(added.entries[0].index, added.entries[-1].index + 1))
    assert got == entries

    by_index = client.inclusion_proof(index=added.entries[2].index, tree_size=cp.size)
    merkle.verify_inclusion(by_index.index, cp.size, merkle.leaf_hash(entries[2]), by_index.hashes, cp.root)
    by_hash = client.inclusion_proof(leaf_hash=merkle.leaf_hash(entries[3]))
    assert by_hash.index == added.entries[3].index and by_hash.tree_size == latest.size
    merkle.verify_inclusion(by_hash.index, latest.size, by_hash.leaf_hash, by_hash.hashes, latest.root)

    many = client.inclusion_proofs([a.index for a in added.entries], cp.size)
    for p, a in zip(many, added.entries, strict=True):
        merkle.verify_inclusion(p.index, cp.size, a.leaf_hash, p.hashes, cp.root)

    client.add_entries([b"one more"])
    newer = _latest(client)
    c = client.consistency_proof(cp.size, newer.size)
    merkle.verify_consistency(c.old_size, c.new_size, c.hashes, cp.root, newer.root)
    assert client.consistency_proof(cp.size).new_size >= newer.size


def test_watch_checkpoints(client: LogClient) -> None:
    verifier = _verifier(client)
    stream = client.watch_checkpoints(timeout=10)
    first = open_checkpoint(next(stream), verifier)
    client.add_entries([b"watched entry"])
    second = open_checkpoint(next(stream), verifier)
    assert second.size > first.size


def test_not_found_and_out_of_range(client: LogClient) -> None:
    client.add_entries([b"something"])
    with pytest.raises(NotFoundError):
        client.inclusion_proof(leaf_hash=merkle.leaf_hash(b"never logged"))
    size = _latest(client).size
    with pytest.raises(OutOfRangeError):
        client.inclusion_proof(index=size + 10)
    with pytest.raises(OutOfRangeError):
        client.consistency_proof(1, size + 10)
    with pytest.raises(InvalidInputError):
        client.add_entries([])


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        acked: list[tuple[int, bytes]] = []
        errors: list[Exception] = []

        def writer(n: int) -> None:
            with srv.client() as c:
                for i in range(1000):
                    entry = f"drain {n} {i}".encode()
                    try:
                        acked.append((c.add_entries([entry]).entries[0].index, entry))
                    except Exception as err:  # refused once draining starts
                        errors.append(err)
                        return

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while len(acked) < 40:
            threading.Event().wait(0.01)
        code = srv.stop(sig=signal.SIGTERM)
        for t in threads:
            t.join(10)
        assert code == 0, srv.log_text()
        assert "draining" in srv.log_text()
        srv.restart()
        with srv.client() as c:
            for index, entry in acked:
                assert c.entries(index, index + 1) == [entry]


def test_sigint_also_drains_cleanly(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        with srv.client() as c:
            index = c.add_entries([b"before ctrl-c"]).entries[0].index
        assert srv.stop(sig=signal.SIGINT) == 0, srv.log_text()
        assert "stopped serving" in srv.log_text()
        srv.restart()
        with srv.client() as c:
            assert c.entries(index, index + 1) == [b"before ctrl-c"]
