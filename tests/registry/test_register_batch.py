"""A Register batch partly refused: the call succeeds with one result per record, refusals carry their status.

Against a real server process. Semantics (proto/provenance/registry/v1/registry.proto): if any record of
the call is logged (a duplicate counts), the call is OK and each record has its result in order; if every
record is refused, the call fails with the first refusal's status and nothing is logged.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from client.errors import InvalidInputError, NotFoundError, ProvenanceError
from client.remote import LogClient, PartlyRefusedError, Registered, RegistryClient, RemoteError, error_for_status
from ledger.grpc.status import code_for
from ledger.registry.errors import UnknownReferenceError
from tests.registry_kit import Lab
from tests.servers import ServerProcess, running_server

pytestmark = pytest.mark.slow

NOT_A_RECORD = b"PLR\x07" + bytes(100)  # unsupported record format version: refused, and has no record id
NOT_FOUND = code_for(UnknownReferenceError("x")).value[0]  # what the one table says for an unknown parent
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("batch") / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def lab(server: ServerProcess) -> Lab:
    lab = Lab("batch-lab")
    with RegistryClient(server.address) as reg:
        reg.register([(lab.register().entry, None)])
    return lab


def _size(srv: ServerProcess) -> int:
    with LogClient(srv.address) as c:
        return open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key)).size


def _raw_register(srv: ServerProcess, subs: list[tuple[bytes, bytes | None]]) -> pb.RegisterResponse:
    """The call on the wire, without the client library's mapping."""
    with grpc.insecure_channel(srv.address) as channel:
        call = channel.unary_unary("/provenance.registry.v1.RegistryService/Register",
                                   request_serializer=pb.RegisterRequest.SerializeToString,
                                   response_deserializer=pb.RegisterResponse.FromString)
        req = pb.RegisterRequest(records=[pb.Submission(entry=e, manifest=m or b"") for e, m in subs])
        resp: pb.RegisterResponse = call(req, timeout=30)
        return resp


def test_not_found_is_what_the_table_says() -> None:
    assert grpc.StatusCode.NOT_FOUND.value[0] == NOT_FOUND


def test_partly_refused_batch_returns_per_record_results(server: ServerProcess, lab: Lab) -> None:
    d1, s1 = lab.dataset("partial-1")
    orphan, so = lab.checkpoint("orphan", 1, parents=((b"\x05" * 32, "fine-tune"),))
    d2, s2 = lab.dataset("partial-2")
    before = _size(server)
    resp = _raw_register(server, [(d1.entry, d1.manifest), (orphan.entry, orphan.manifest),
                                  (d2.entry, d2.manifest), (NOT_A_RECORD, None)])
    assert [r.code for r in resp.records] == [0, NOT_FOUND, 0, INVALID]
    assert [bytes(r.id) for r in resp.records] == [s1.id, so.id, s2.id, b""]
    assert resp.records[0].error == resp.records[2].error == ""
    assert "parent checkpoint 0505" in resp.records[1].error
    assert "unsupported record format version 7" in resp.records[3].error
    assert not resp.records[1].index and not resp.records[1].duplicate
    assert _size(server) == before + 2, "exactly the two admitted records were logged"
    with RegistryClient(server.address) as reg:
        assert reg.at(resp.records[0].index).id == s1.id
        assert reg.at(resp.records[2].index).id == s2.id
        with pytest.raises(NotFoundError):
            reg.by_id(so.id)  # the refused one never touched the log
        assert {resp.records[0].index, resp.records[2].index} == {before, before + 1}


def test_register_many_maps_each_refusal_back(server: ServerProcess, lab: Lab) -> None:
    d1, s1 = lab.dataset("many-1")
    orphan, _ = lab.checkpoint("orphan-many", 1, parents=((b"\x06" * 32, "fine-tune"),))
    before = _size(server)
    with RegistryClient(server.address) as reg:
        got = reg.register_many([(d1.entry, d1.manifest), (orphan.entry, orphan.manifest), (NOT_A_RECORD, None)])
        assert isinstance(got[0], Registered) and got[0].id == s1.id and not got[0].duplicate
        assert isinstance(got[1], NotFoundError) and "(NOT_FOUND)" in str(got[1])
        assert "parent checkpoint 0606" in str(got[1])
        assert isinstance(got[2], InvalidInputError) and "(INVALID_ARGUMENT)" in str(got[2])
        assert _size(server) == before + 1
        # A duplicate counts as logged: the call succeeds, and the log does not grow.
        again = reg.register_many([(orphan.entry, orphan.manifest), (d1.entry, d1.manifest)])
        assert isinstance(again[0], NotFoundError)
        assert again[1] == Registered(s1.id, got[0].index, True)
    assert _size(server) == before + 1


def test_every_record_refused_fails_the_call_with_the_first_refusal(server: ServerProcess, lab: Lab) -> None:
    orphan, _ = lab.checkpoint("orphan-all", 1, parents=((b"\x07" * 32, "fine-tune"),))
    before = _size(server)
    with pytest.raises(grpc.RpcError) as info:
        _raw_register(server, [(orphan.entry, orphan.manifest), (NOT_A_RECORD, None)])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert "parent checkpoint 0707" in info.value.details()  # type: ignore[attr-defined]
    with RegistryClient(server.address) as reg, pytest.raises(InvalidInputError) as err:
        reg.register_many([(NOT_A_RECORD, None), (orphan.entry, orphan.manifest)])
    assert "unsupported record format version 7" in str(err.value) and "(INVALID_ARGUMENT)" in str(err.value)
    assert not isinstance(err.value, PartlyRefusedError), "nothing was logged: no per-record results to carry"
    assert _size(server) == before


def test_register_raises_the_first_refusal_saying_the_rest_was_logged(server: ServerProcess, lab: Lab) -> None:
    d1, s1 = lab.dataset("raise-1")
    orphan, _ = lab.checkpoint("orphan-raise", 1, parents=((b"\x08" * 32, "fine-tune"),))
    d2, s2 = lab.dataset("raise-2")
    before = _size(server)
    with RegistryClient(server.address) as reg, pytest.raises(PartlyRefusedError) as info:
        reg.register([(d1.entry, d1.manifest), (orphan.entry, orphan.manifest), (d2.entry, d2.manifest),
                      (NOT_A_RECORD, None)])
    err = info.value
    assert isinstance(err.first, NotFoundError) and err.__cause__ is err.first and err.position == 1
    assert "parent checkpoint 0808" in str(err) and "(NOT_FOUND)" in str(err)
    assert "record 2 of 4 refused; 2 of the 4 records were logged" in str(err)
    results = err.results
    assert [type(r) for r in results] == [Registered, NotFoundError, Registered, InvalidInputError]
    logged = [r for r in results if isinstance(r, Registered)]
    assert list(err.logged) == logged
    assert [r.id for r in logged] == [s1.id, s2.id]
    assert [r.index for r in logged] == [before, before + 1]
    assert _size(server) == before + 2


def test_single_refusal_unchanged(server: ServerProcess, lab: Lab) -> None:
    orphan, _ = lab.checkpoint("orphan-one", 1, parents=((b"\x09" * 32, "fine-tune"),))
    with RegistryClient(server.address) as reg, pytest.raises(NotFoundError) as info:
        reg.register([(orphan.entry, orphan.manifest)])
    assert "were logged" not in str(info.value) and not isinstance(info.value, PartlyRefusedError)


def test_error_for_status_numbers() -> None:
    err = error_for_status(5, "gone")
    assert isinstance(err, NotFoundError) and str(err) == "gone (NOT_FOUND)"
    odd = error_for_status(99, "what")
    assert isinstance(odd, RemoteError) and isinstance(odd, ProvenanceError) and "status 99" in str(odd)
