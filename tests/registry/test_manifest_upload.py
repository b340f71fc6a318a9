"""Manifests larger than one gRPC message: staged with UploadManifest, registered without their bytes,
fetched back with GetManifestParts. Against a real server whose receive limit (1 MiB) is far below the
manifests used here (a few MiB), plus unit tests of the staging bounds and the unary size refusal."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from registry_kit import Lab, make_manifest, open_env
from servers import ServerProcess, running_server

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.api import Registrar
from client.cli import main
from client.core.checkpoint import open_checkpoint
from client.core.manifest.codec import encode
from client.core.manifest.model import FileEntry, Manifest
from client.core.note import Verifier
from client.core.records import Dataset
from client.errors import ProvenanceError, ResourceExhaustedError
from client.remote import LogClient
from client.remote.registry import RegistryClient
from ledger.grpc.manifest_staging import ManifestLimits, ManifestStaging
from ledger.grpc.registry_service import RegistryService
from ledger.registry.manifests import read_manifest

MAX_RECEIVE = 1 << 20
MAX_MANIFEST = 4 << 20
SERVER_ARGS = ["--max-receive-bytes", str(MAX_RECEIVE), "--max-entry-bytes", str(64 << 10),
               "--max-manifest-bytes", str(MAX_MANIFEST)]
CHUNK = 1024


def big_manifest(seed: str, files: int = 30_000) -> tuple[bytes, bytes, list[bytes]]:
    """A manifest of ``files`` one-chunk files (about 93 bytes each). Returns (encoded, digest, file digests)."""
    ds = [hashlib.blake2s(f"{seed}/{i}".encode()).digest() for i in range(files)]
    m = Manifest(CHUNK, tuple(FileEntry(f"d/f{i:06d}.bin", CHUNK, d, (d,)) for i, d in enumerate(ds)))
    encoded = encode(m)
    return encoded, read_manifest(encoded).digest, ds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("upload") / "data", SERVER_ARGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def lab(server: ServerProcess) -> Lab:
    a = Lab("lab-upload")
    with RegistryClient(server.address) as reg:
        reg.register([(a.register().entry, None)])
    return a


def _size(srv: ServerProcess) -> int:
    with LogClient(srv.address) as c:
        return open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key)).size


def _dataset(lab: Lab, name: str, digest: bytes, size: int) -> Any:
    return lab.sign(Dataset(name, "1", digest, size, "CC-BY-4.0", ("test",), ()))


def _refused(err: BaseException, code: grpc.StatusCode, match: str) -> None:
    assert f"({code.name})" in str(err), str(err)
    assert match in str(err), str(err)


@pytest.mark.slow
def test_large_manifest_registers_via_registrar_and_reads_back(server: ServerProcess, lab: Lab) -> None:
    encoded, digest, files = big_manifest("registrar")
    assert MAX_RECEIVE < len(encoded) < MAX_MANIFEST
    signed = _dataset(lab, "big", digest, CHUNK * len(files))
    before = _size(server)
    with RegistryClient(server.address) as reg:
        with pytest.raises(ResourceExhaustedError):  # the single-call path cannot carry it
            reg.register([(signed.entry, encoded)])
        with Registrar(lab.signer, client=RegistryClient(server.address)) as r:
            got = r.submit(signed, encoded)  # refused as too large, so uploaded in parts, then registered
        assert got.id == signed.id and not got.duplicate
        assert _size(server) == before + 1
        assert reg.manifest(digest) == encoded  # fits the server's 64 MiB send limit: one message
        assert reg.manifest_parts(digest) == encoded  # 1 MiB parts
        assert [(k, m.id) for k, m in reg.find(digest, ["manifest"])] == [("manifest", signed.id)]
        for d in (files[0], files[12_345], files[-1]):
            assert [(k, m.id) for k, m in reg.find(d, ["file"])] == [("file", signed.id)]


@pytest.mark.slow
def test_upload_then_register_without_bytes(server: ServerProcess, lab: Lab) -> None:
    encoded, digest, files = big_manifest("explicit", 20_000)
    signed = _dataset(lab, "explicit", digest, CHUNK * len(files))
    with RegistryClient(server.address) as reg:
        assert reg.upload_manifest(encoded) == digest  # no digest announced
        assert reg.upload_manifest(encoded, digest, part_bytes=100_000) == digest  # staged again: fine
        (got,) = reg.register([(signed.entry, None)])
        assert got.id == signed.id
        assert reg.manifest_parts(digest) == encoded
        # The same manifest again, under another record: the registry holds it now.
        (again,) = reg.register([(_dataset(lab, "explicit-2", digest, CHUNK * len(files)).entry, None)])
        assert not again.duplicate


@pytest.mark.slow
def test_client_falls_back_to_parts_when_one_message_is_refused(server: ServerProcess, lab: Lab,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    encoded, digest = make_manifest("fallback", chunks=5)
    with RegistryClient(server.address) as reg:
        reg.register([(_dataset(lab, "fallback", digest, 5 * CHUNK).entry, encoded)])
        real = reg._unary

        def refuse_get_manifest(name: str, *args: Any, **kw: Any) -> Any:
            if name == "GetManifest":
                raise ResourceExhaustedError("too large for one message (test)")
            return real(name, *args, **kw)

        monkeypatch.setattr(reg, "_unary", refuse_get_manifest)
        assert reg.manifest(digest) == encoded


def _raw_upload(srv: ServerProcess, parts: list[pb.ManifestPart]) -> pb.UploadManifestResponse:
    with grpc.insecure_channel(srv.address) as ch:
        call = ch.stream_unary("/provenance.registry.v1.RegistryService/UploadManifest",
                               request_serializer=pb.ManifestPart.SerializeToString,
                               response_deserializer=pb.UploadManifestResponse.FromString)
        resp: pb.UploadManifestResponse = call(iter(parts), timeout=30)
        return resp


@pytest.mark.slow
def test_upload_refusals_leave_the_log_alone(server: ServerProcess, lab: Lab) -> None:
    encoded, digest, files = big_manifest("refusals", 15_000)
    signed = _dataset(lab, "refused", digest, CHUNK * len(files))
    before = _size(server)
    with RegistryClient(server.address) as reg:
        # Malformed: the strict parser refuses it.
        with pytest.raises(ProvenanceError) as info:
            reg.upload_manifest(b"not a manifest" * 50_000)
        _refused(info.value, grpc.StatusCode.INVALID_ARGUMENT, "not a canonical manifest")
        with pytest.raises(ProvenanceError) as info:
            reg.upload_manifest(encoded[:-1])  # truncated
        _refused(info.value, grpc.StatusCode.INVALID_ARGUMENT, "manifest truncated")
        # Digest mismatch.
        with pytest.raises(ProvenanceError) as info:
            reg.upload_manifest(encoded, bytes(32))
        _refused(info.value, grpc.StatusCode.INVALID_ARGUMENT, f"has digest {digest.hex()}, the first part named")
        # Over the server's manifest limit: announced up front, or found out part by part.
        over = b"\0" * (MAX_MANIFEST + 1)
        with pytest.raises(ProvenanceError) as info:
            reg.upload_manifest(over)
        _refused(info.value, grpc.StatusCode.RESOURCE_EXHAUSTED, f"over this server's limit of {MAX_MANIFEST}")
        parts = [pb.ManifestPart(data=over[i : i + (512 << 10)]) for i in range(0, len(over), 512 << 10)]
        with pytest.raises(grpc.RpcError) as rpc:
            _raw_upload(server, parts)
        assert rpc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"over this server's limit of {MAX_MANIFEST}" in (rpc.value.details() or "")
        # Announced size that the parts do not add up to; no parts at all.
        with pytest.raises(grpc.RpcError) as rpc:
            _raw_upload(server, [pb.ManifestPart(data=encoded[:1000], total_size=len(encoded))])
        assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "announced" in (rpc.value.details() or "")
        with pytest.raises(grpc.RpcError) as rpc:
            _raw_upload(server, [])
        assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no parts" in (rpc.value.details() or "")
        # Nothing was staged under the record's digest, so a Register without the bytes is refused.
        with pytest.raises(ProvenanceError) as info:
            reg.register([(signed.entry, None)])
        _refused(info.value, grpc.StatusCode.INVALID_ARGUMENT, "was not sent with the record and is not stored")
    assert _size(server) == before


@pytest.mark.slow
def test_cli_registers_a_dataset_whose_manifest_exceeds_the_receive_limit(
        server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    data = tmp_path / "many"
    for d in range(12):
        sub = data / f"part-{d:02d}"
        sub.mkdir(parents=True)
        for i in range(1000):
            (sub / f"{i:04d}.txt").write_bytes(f"{d}/{i}".encode())
    key = tmp_path / "key"
    s = ["--server", server.address]
    assert main(["keygen", "--out", str(key)]) == 0
    assert main(["identity", "register", "cli-lab", "--key", str(key), *s]) == 0
    capsys.readouterr()
    assert main(["register", "dataset", str(data), "--name", "many", "--key", str(key), "--json", *s]) == 0
    got = json.loads(capsys.readouterr().out)
    with RegistryClient(server.address) as reg:
        rec = reg.by_id(bytes.fromhex(got["id"])).signed.record.statement
        assert isinstance(rec, Dataset)
        manifest = reg.manifest(rec.manifest)
        assert len(manifest) > MAX_RECEIVE and read_manifest(manifest).digest == rec.manifest


# --- unit level: the staging bounds and the unary refusal ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_staging_evicts_oldest_first_within_its_byte_bound() -> None:
    staging = ManifestStaging(max_bytes=100, max_age=60, clock=Clock())
    staging.put(b"a", b"x" * 40)
    staging.put(b"b", b"x" * 40)
    staging.put(b"c", b"x" * 40)  # over 100: "a", the oldest, goes
    assert b"a" not in staging and b"b" in staging and b"c" in staging
    assert staging.held_bytes == 80
    staging.reserve(30)  # an upload arriving: "b" goes to make room
    assert b"b" not in staging and staging.held_bytes == 40 and staging.reserved_bytes == 30
    with pytest.raises(ResourceExhaustedError, match="staging is full"):
        staging.reserve(71)  # more than the budget even with nothing staged
    staging.release(30)
    staging.drop(b"c")
    assert len(staging) == 0 and staging.held_bytes == 0 and staging.reserved_bytes == 0


def test_staging_expires_after_max_age() -> None:
    clock = Clock()
    staging = ManifestStaging(max_bytes=100, max_age=60, clock=clock)
    staging.put(b"a", b"x" * 10)
    clock.now += 30
    staging.put(b"b", b"x" * 10)
    clock.now += 31  # "a" is 61 s old, "b" 31 s
    assert staging.get(b"a") is None and staging.get(b"b") == b"x" * 10
    staging.put(b"b", b"y" * 10)  # staged again: its age starts over
    clock.now += 59
    assert staging.get(b"b") == b"y" * 10
    clock.now += 2
    assert staging.get(b"b") is None and staging.held_bytes == 0


async def _parts(data: bytes, step: int) -> AsyncIterator[pb.ManifestPart]:
    yield pb.ManifestPart(data=data[:step], total_size=len(data))
    for at in range(step, len(data), step):
        yield pb.ManifestPart(data=data[at : at + step])


def test_service_stages_registers_drops_and_refuses_unary_over_the_send_limit() -> None:
    env = open_env()
    try:
        lab = Lab("unit")
        assert not isinstance(env.registry.register([lab.register()])[0], Exception)
        service = RegistryService(env.registry, env.log, env.log_key,
                                  ManifestLimits(max_manifest_bytes=1 << 20, max_send_message_bytes=4096,
                                                 staging_bytes=2 << 20))
        encoded, digest, files = big_manifest("unit", 200)
        assert len(encoded) > 4096

        async def go() -> None:
            resp = await service.upload_manifest(_parts(encoded, 1000))
            assert bytes(resp.digest) == digest and resp.size == len(encoded)
            assert digest in service.staging
            signed = _dataset(lab, "unit", digest, CHUNK * len(files))
            out = await service.register(pb.RegisterRequest(records=[pb.Submission(entry=signed.entry)]))
            assert out.records[0].code == 0
            assert digest not in service.staging and service.staging.held_bytes == 0  # dropped once logged
            with pytest.raises(ResourceExhaustedError, match="fetch it with GetManifestParts"):
                await service.get_manifest(pb.GetManifestRequest(digest=digest))
            parts = [p async for p in service.get_manifest_parts(pb.GetManifestRequest(digest=digest))]
            assert len(parts) > 1 and all(len(p.data) <= 4096 for p in parts)
            assert b"".join(p.data for p in parts) == encoded and parts[0].total_size == len(encoded)
            assert service.staging.reserved_bytes == 0

        asyncio.run(go())
    finally:
        env.close()
