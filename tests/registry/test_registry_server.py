"""The registry over gRPC against a real server process: refusals carry status, message, and leave the log alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from registry_kit import Lab
from servers import ServerProcess, running_server

from client.core.bundle import verify_bundle
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from client.core.records import Identity, IdentityEvent, Kind
from client.errors import ProvenanceError
from client.remote import LogClient
from client.remote.registry import RegistryClient
from ledger.registry.policy import format_allowlist

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("registry") / "data") as srv:
        yield srv


def _size(srv: ServerProcess) -> int:
    with LogClient(srv.address) as c:
        info = c.log_info()
        return open_checkpoint(c.checkpoint(), Verifier.from_text(info.verifier_key)).size


def _refused(srv: ServerProcess, entry: bytes, manifest: bytes | None, code: grpc.StatusCode, match: str) -> None:
    before = _size(srv)
    with RegistryClient(srv.address) as reg, pytest.raises(ProvenanceError) as info:
        reg.register([(entry, manifest)])
    assert f"({code.name})" in str(info.value), str(info.value)
    assert match in str(info.value), str(info.value)
    assert _size(srv) == before, "a refused record must not touch the log"


def test_register_query_prove(server: ServerProcess) -> None:
    a = Lab("lab-a")
    with RegistryClient(server.address) as reg:
        (r,) = reg.register([(a.register().entry, None)])
        ds_sub, ds = a.dataset("web")
        cp_sub, cp = a.checkpoint("base", 1, datasets=((ds.id, "pretraining"),))
        got = reg.register([(ds_sub.entry, ds_sub.manifest), (cp_sub.entry, cp_sub.manifest)])
        assert [g.id for g in got] == [ds.id, cp.id]
        assert reg.by_id(cp.id).signed == cp
        assert reg.at(got[0].index).id == ds.id
        assert reg.by_name(Kind.CHECKPOINT, "base", "1").id == cp.id
        assert [x.id for x in reg.by_signer(a.signer.public_key)] == [r.id, ds.id, cp.id]
        nodes, edges = reg.lineage(cp.id, 5)
        assert [e.relation for e in edges] == ["trained-on:pretraining"]
        nodes, edges = reg.lineage(ds.id, 5, descendants=True)
        assert {n.id for n in nodes} == {ds.id, cp.id}
        assert [m[1].id for m in reg.find(cp.record.statement.manifest)] == [cp.id]  # type: ignore[union-attr]
        assert reg.manifest(cp.record.statement.manifest) == cp_sub.manifest  # type: ignore[union-attr]
        ident = reg.identity(name="lab-a")
        assert ident.status == "active" and ident.key == a.signer.public_key
        bundle = reg.prove(cp.id, ds.id)
    with LogClient(server.address) as c:
        key = c.log_info().verifier_key
    report = verify_bundle(bundle, key)
    assert report.path[0].relation == "trained-on:pretraining"


def test_refusals(server: ServerProcess) -> None:
    a = Lab("lab-r")
    with RegistryClient(server.address) as reg:
        reg.register([(a.register().entry, None)])
    sub, _ = a.checkpoint("m", 1, parents=((b"\x05" * 32, "fine-tune"),))
    _refused(server, sub.entry, sub.manifest, grpc.StatusCode.NOT_FOUND, "parent checkpoint 0505")
    sub, _ = a.dataset("d")
    _refused(server, sub.entry[:-1] + bytes([sub.entry[-1] ^ 1]), sub.manifest, grpc.StatusCode.PERMISSION_DENIED,
             "signature does not verify")
    _refused(server, b"PLR\x07" + bytes(100), None, grpc.StatusCode.INVALID_ARGUMENT,
             "unsupported record format version 7")
    stranger, _ = Lab("stranger").dataset("d")
    _refused(server, stranger.entry, stranger.manifest, grpc.StatusCode.PERMISSION_DENIED,
             "is not registered under any name")
    with RegistryClient(server.address) as reg:
        reg.register([(a.sign(Identity(IdentityEvent.REVOKE, "lab-r", a.signer.public_key)).entry, None)])
    sub, _ = a.dataset("d2")
    _refused(server, sub.entry, sub.manifest, grpc.StatusCode.PERMISSION_DENIED, "of 'lab-r' was revoked at index")


def test_allowlist_refuses_unknown_key(tmp_path: Path) -> None:
    good, bad = Lab("lab-good"), Lab("lab-bad")
    allow = tmp_path / "allow.txt"
    allow.write_text(format_allowlist([("lab-good", good.signer.public_key)]))
    with running_server(tmp_path / "data", ["--allowlist", str(allow)]) as srv:
        with RegistryClient(srv.address) as reg:
            reg.register([(good.register().entry, None)])
        _refused(srv, bad.register().entry, None, grpc.StatusCode.PERMISSION_DENIED,
                 "allowlist does not list 'lab-bad'")
