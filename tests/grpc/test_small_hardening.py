"""Issue 15 point 7, the server's side: reflection, raw entries under an allowlist, upload memory, empty entries.

Each test reproduces what the outside attack did and fails on the code before its fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from registry_kit import Lab, open_env
from servers import ServerProcess, running_server

from client._pb.provenance.registry.v1 import registry_pb2 as rpb
from client.core import merkle
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from client.core.records.identity import NotAllowedError
from client.errors import InvalidInputError, ProvenanceError
from client.remote import LogClient
from client.remote.registry import RegistryClient
from ledger.grpc.manifest_staging import ManifestLimits
from ledger.grpc.registry_service import RegistryService
from ledger.log import Appended
from ledger.registry.policy import Policy, format_allowlist, parse_allowlist
from tests.cli_kit import cli
from tests.fake_log import FakeLog
from tests.inproc import serving

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


# -- (a) reflection: a garbled request is INVALID_ARGUMENT, with no traceback in the server's log ----


def _reflect(address: str, payloads: list[bytes]) -> list[bytes] | grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(REFLECTION)(iter(payloads), timeout=5)
        try:
            return list(call)
        except grpc.RpcError as err:
            return err


@pytest.mark.parametrize("payloads", [
    [b"\xff\xff\xff"],
    [b"\x0a\xff"],  # a truncated field
    [reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString(), b"\xff"],  # after a good one
], ids=["garbage", "truncated", "after-a-good-request"])
def test_garbled_reflection_request_is_invalid_argument_without_a_traceback(
        payloads: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serving(FakeLog()) as (address, _):
        got = _reflect(address, payloads)
    assert isinstance(got, grpc.RpcError), got
    assert got.code() is grpc.StatusCode.INVALID_ARGUMENT, (got.code(), got.details())  # was UNKNOWN
    assert "malformed ServerReflectionRequest" in got.details()
    assert "class" not in got.details() and "DecodeError" not in got.details()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_reflection_still_lists_the_services() -> None:
    with serving(FakeLog()) as (address, _):
        got = _reflect(address, [reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString(),
                                 reflection_pb2.ServerReflectionRequest(
                                     file_containing_symbol="provenance.ledger.v1.LogService").SerializeToString()])
    assert isinstance(got, list) and len(got) == 2
    listed = reflection_pb2.ServerReflectionResponse.FromString(got[0]).list_services_response.service
    names = {s.name for s in listed}
    assert {"provenance.ledger.v1.LogService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert reflection_pb2.ServerReflectionResponse.FromString(got[1]).file_descriptor_response.file_descriptor_proto


# -- (b) an allowlist governs raw AddEntries too ----------------------------------------------------


def test_allowlist_refuses_opaque_entries_unless_allowed() -> None:
    a = Lab("lab-a")
    for allow_raw in (False, True):
        env = open_env(parse_allowlist(format_allowlist([("lab-a", a.signer.public_key)]), allow_raw))
        try:
            (r,) = env.log.add([b"anyone's opaque entry"])
            if allow_raw:
                assert isinstance(r, Appended)
            else:
                assert isinstance(r, NotAllowedError) and "--allow-raw-entries" in str(r)
                assert env.log.size == 0
            # Records still go through admission, allowlisted or not.
            (r,) = env.log.add([a.register().entry])
            assert isinstance(r, Appended)
            (r,) = env.log.add([Lab("lab-b").register().entry])
            assert isinstance(r, NotAllowedError)
        finally:
            env.close()
    open_ = open_env(Policy())
    try:
        (r,) = open_.log.add([b"an opaque entry"])  # open registration: the log stays a general log
        assert isinstance(r, Appended)
    finally:
        open_.close()


def _cp_size(address: str) -> int:
    with LogClient(address) as c:
        return open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key)).size


@pytest.mark.slow
def test_served_allowlist_refuses_raw_add_entries(tmp_path: Path) -> None:
    good = Lab("lab-good")
    allow = tmp_path / "allow.txt"
    allow.write_text(format_allowlist([("lab-good", good.signer.public_key)]))
    with running_server(tmp_path / "data", ["--allowlist", str(allow)]) as srv:
        with LogClient(srv.address) as c, pytest.raises(ProvenanceError) as info:
            c.add_entries([b"raw bytes from anyone"])
        assert "(PERMISSION_DENIED)" in str(info.value) and "allowlist" in str(info.value)
        assert _cp_size(srv.address) == 0
        with RegistryClient(srv.address) as reg:
            reg.register([(good.register().entry, None)])
        assert _cp_size(srv.address) == 1
    with running_server(tmp_path / "data2", ["--allowlist", str(allow), "--allow-raw-entries"]) as srv, \
            LogClient(srv.address) as c:
        assert c.add_entries([b"raw bytes, allowed by the operator"]).entries[0].index == 0


# -- (f) unfinished uploads hold disk, not memory -------------------------------------------------


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("uploads") / "data") as srv:
        yield srv


def test_an_unfinished_upload_holds_its_parts_on_disk_not_in_memory() -> None:
    """32 MiB of parts of an upload that never finishes: the Python memory the server holds for it stays
    under a few parts (tracemalloc, deterministic); the parts were all kept in a list before the fix
    (three unfinished 400 MB uploads took 4 GB of RSS)."""
    env = open_env()
    service = RegistryService(env.registry, env.log, env.log_key,
                              ManifestLimits(max_manifest_bytes=64 << 20, max_send_message_bytes=4096,
                                             staging_bytes=128 << 20))
    part, count = 1 << 20, 32

    async def go() -> int:
        received, release = asyncio.Event(), asyncio.Event()

        async def parts() -> AsyncIterator[rpb.ManifestPart]:
            yield rpb.ManifestPart(data=bytes(part), total_size=part * count + 1)  # one byte more: never complete
            for _ in range(count - 1):
                yield rpb.ManifestPart(data=bytes(part))
            received.set()  # runs once the handler asks for the part after the last: all are written
            await release.wait()

        tracemalloc.start()
        try:
            task = asyncio.create_task(service.upload_manifest(parts()))
            await received.wait()
            held = tracemalloc.get_traced_memory()[0]
            assert service.staging.reserved_bytes == part * count  # the budget still counts them (on disk)
        finally:
            tracemalloc.stop()
            release.set()
        with pytest.raises(InvalidInputError, match="announced"):
            await task
        assert service.staging.reserved_bytes == 0 and service.staging.held_bytes == 0
        return held

    try:
        held = asyncio.run(go())
    finally:
        env.close()
    assert held < 4 * part, f"{held >> 20} MiB of Python memory held for an unfinished upload"


# -- (g) zero-byte entries (RFC 9162 allows them) -------------------------------------------------


def test_a_zero_byte_entry_is_logged_and_proved() -> None:
    env = open_env()
    try:
        (r,) = env.log.add([b""])
        assert isinstance(r, Appended) and r.index == 0 and r.leaf_hash == merkle.leaf_hash(b"")
        (again,) = env.log.add([b""])
        assert isinstance(again, Appended) and again.duplicate and again.index == 0
        env.log.add([b"x"])
        size = env.log.size
        cp = open_checkpoint(env.log.latest().note, Verifier.from_text(env.log_key))
        merkle.verify_inclusion(0, size, merkle.leaf_hash(b""), env.log.inclusion_proof(0, size), cp.root)
        assert env.log.entries(0, 1) == [b""]
    finally:
        env.close()


@pytest.mark.slow
def test_a_zero_byte_entry_over_grpc_and_through_provenance_append(
        upload_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LogClient(upload_server.address) as c:
        added = c.add_entries([b""], wait_for_checkpoint=True)
        (e,) = added.entries
        assert e.leaf_hash == merkle.leaf_hash(b"")
        assert added.checkpoint is not None
        cp = open_checkpoint(added.checkpoint, Verifier.from_text(c.log_info().verifier_key))
        merkle.verify_inclusion(e.index, cp.size, e.leaf_hash, e.inclusion_proof, cp.root)
        assert c.entries(e.index, e.index + 1) == [b""]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    out = json.loads(cli(capsys, "log", "append", "--server", upload_server.address, "--wait", str(empty)))
    assert out["index"] == e.index and out["duplicate"] is True and out["inclusion_proof"] is not None
