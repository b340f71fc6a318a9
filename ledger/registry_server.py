"""The gRPC edge of the registry: ``provenance.registry.v1.RegistryService``.

Thin, like ``ledger/server.py`` (whose wrappers it reuses, so errors map through
the one table in ``ledger/status.py``): decode the request, call the
:class:`~ledger.registry.registry.Registry`, build the response. ``Register`` is the one
place a refusal can also travel inside a successful response (a batch partly logged):
its code comes from the same table.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.bundle.format import to_bytes
from client.errors import InvalidInputError, ProvenanceError, UnavailableError
from client.records import Kind, parse_entry
from client.records.model import ID_SIZE, KEY_SIZE
from ledger import registry_match
from ledger.log import Appended
from ledger.registry.matching import Matcher
from ledger.registry.prove import build_bundle
from ledger.registry.queries import MAX_RESULTS, LoggedRecord
from ledger.registry.registry import Registry, Submission
from ledger.server import _unary
from ledger.status import code_for

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name
DEFAULT_LIMIT = 1000
MAX_REGISTER = 1024  # records per Register call


def _id(raw: bytes, what: str = "id") -> bytes:
    if len(raw) != ID_SIZE:
        raise InvalidInputError(f"{what} must be {ID_SIZE} bytes, got {len(raw)}")
    return bytes(raw)


def _limit(n: int) -> int:
    return min(n or DEFAULT_LIMIT, MAX_RESULTS)


def _rec(r: LoggedRecord) -> pb.Record:
    return pb.Record(id=r.id, index=r.index, entry=r.signed.entry)


def _registered(entry: bytes, result: Appended | ProvenanceError) -> pb.Registered:
    """One record's outcome in a Register response; a refusal carries the status the call would have had."""
    if isinstance(result, ProvenanceError):
        try:
            rid = parse_entry(entry).id
        except ProvenanceError:
            rid = b""  # not a record: it has no record id
        return pb.Registered(id=rid, code=code_for(result).value[0], error=str(result) or type(result).__name__)
    return pb.Registered(id=result.leaf_hash, index=result.index, duplicate=result.duplicate)


class RegistryService:
    """Handlers of ``RegistryService``. Pass :meth:`generic_handler` to the ledger's gRPC server."""

    name = SERVICE_NAME

    def __init__(self, registry: Registry, log: Any, log_key: str) -> None:
        self._registry = registry
        self._log = log
        self._log_key = log_key
        self._draining = False
        self._matcher: Matcher | None = None

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            "Register": _unary(pb.RegisterRequest, self.register),
            "GetRecord": _unary(pb.GetRecordRequest, self.get_record),
            "ListBySigner": _unary(pb.ListBySignerRequest, self.list_by_signer),
            "ListAbout": _unary(pb.ListAboutRequest, self.list_about),
            "GetLineage": _unary(pb.GetLineageRequest, self.get_lineage),
            "FindDigest": _unary(pb.FindDigestRequest, self.find_digest),
            "GetManifest": _unary(pb.GetManifestRequest, self.get_manifest),
            "GetIdentity": _unary(pb.GetIdentityRequest, self.get_identity),
            "Prove": _unary(pb.ProveRequest, self.prove),
            "Match": _unary(pb.MatchRequest, self.match),
            "GetFingerprint": _unary(pb.GetFingerprintRequest, self.get_fingerprint),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def start_draining(self) -> None:
        self._draining = True

    async def register(self, req: pb.RegisterRequest) -> pb.RegisterResponse:
        if self._draining:
            raise UnavailableError("the server is draining; retry against another instance")
        if not 1 <= len(req.records) <= MAX_REGISTER:
            raise InvalidInputError(f"a Register call carries 1 to {MAX_REGISTER} records, got {len(req.records)}")
        subs = [Submission(s.entry, s.manifest or None, s.fingerprint or None) for s in req.records]
        results: list[Appended | ProvenanceError] = await asyncio.wrap_future(self._registry.submit(subs))
        refused = [r for r in results if isinstance(r, ProvenanceError)]
        if len(refused) == len(results):  # nothing logged: the call fails, as a one-record call would
            raise refused[0]
        return pb.RegisterResponse(records=[_registered(s.entry, r) for s, r in zip(subs, results, strict=True)])

    async def get_record(self, req: pb.GetRecordRequest) -> pb.GetRecordResponse:
        reader = self._registry.reader
        which = req.WhichOneof("ref")
        if which == "id":
            rec = reader.by_id(_id(req.id))
        elif which == "index":
            rec = reader.at(req.index)
        elif which == "name":
            try:
                kind = Kind(req.name.kind)
            except ValueError:
                raise InvalidInputError(f"unknown record kind {req.name.kind}") from None
            rec = reader.by_name(kind, req.name.name, req.name.version)
        else:
            raise InvalidInputError("GetRecord needs an id, an index or a name")
        return pb.GetRecordResponse(record=_rec(rec))

    # Queries that may touch up to MAX_RESULTS records (milliseconds to a second of Python) run on a
    # worker thread, so the event loop keeps serving other calls meanwhile.

    async def list_by_signer(self, req: pb.ListBySignerRequest) -> pb.ListRecordsResponse:
        return await asyncio.to_thread(self._list_by_signer, req)

    def _list_by_signer(self, req: pb.ListBySignerRequest) -> pb.ListRecordsResponse:
        if len(req.key) != KEY_SIZE:
            raise InvalidInputError(f"key must be {KEY_SIZE} bytes")
        recs = self._registry.reader.by_signer(bytes(req.key), _limit(req.limit))
        return pb.ListRecordsResponse(records=[_rec(r) for r in recs])

    async def list_about(self, req: pb.ListAboutRequest) -> pb.ListRecordsResponse:
        return await asyncio.to_thread(self._list_about, req)

    def _list_about(self, req: pb.ListAboutRequest) -> pb.ListRecordsResponse:
        recs = self._registry.reader.about(_id(req.id), _limit(req.limit))
        return pb.ListRecordsResponse(records=[_rec(r) for r in recs])

    async def get_lineage(self, req: pb.GetLineageRequest) -> pb.GetLineageResponse:
        return await asyncio.to_thread(self._lineage, req)

    def _lineage(self, req: pb.GetLineageRequest) -> pb.GetLineageResponse:
        reader = self._registry.reader
        walk = reader.descendants if req.descendants else reader.ancestors
        nodes, edges = walk(_id(req.id), req.depth)
        return pb.GetLineageResponse(
            records=[_rec(n) for n in nodes],
            edges=[pb.Edge(child=e.child, parent=e.parent, relation=e.relation, depth=e.depth) for e in edges],
        )

    async def find_digest(self, req: pb.FindDigestRequest) -> pb.FindDigestResponse:
        return await asyncio.to_thread(self._find_digest, req)

    def _find_digest(self, req: pb.FindDigestRequest) -> pb.FindDigestResponse:
        kinds = list(req.kinds) or ["manifest", "file", "tensor", "chunk"]
        matches = self._registry.reader.find(_id(req.digest, "digest"), kinds, _limit(req.limit))
        return pb.FindDigestResponse(matches=[pb.DigestMatch(kind=m.kind, record=_rec(m.record)) for m in matches])

    async def get_manifest(self, req: pb.GetManifestRequest) -> pb.GetManifestResponse:
        return pb.GetManifestResponse(manifest=self._registry.reader.manifest(_id(req.digest, "digest")))

    async def get_identity(self, req: pb.GetIdentityRequest) -> pb.GetIdentityResponse:
        reader = self._registry.reader
        which = req.WhichOneof("ref")
        if which == "key":
            if len(req.key) != KEY_SIZE:
                raise InvalidInputError(f"key must be {KEY_SIZE} bytes")
            key = bytes(req.key)
        elif which == "name":
            current = reader.current_key(req.name)
            if current is None:
                raise InvalidInputError(f"identity {req.name!r} has no current key (it was revoked)")
            key = current
        else:
            raise InvalidInputError("GetIdentity needs a key or a name")
        info = reader.key_info(key)
        events = reader.identity_chain(key)
        return pb.GetIdentityResponse(name=info.name, key=key, status=info.status, events=[_rec(e) for e in events])

    async def prove(self, req: pb.ProveRequest) -> pb.ProveResponse:
        return await asyncio.to_thread(self._prove, req)

    def _prove(self, req: pb.ProveRequest) -> pb.ProveResponse:
        lineage_to = _id(req.lineage_to, "lineage_to") if req.lineage_to else None
        bundle = build_bundle(self._registry.reader, self._log, self._log_key, _id(req.id), lineage_to)
        return pb.ProveResponse(bundle=to_bytes(bundle))

    def matcher(self) -> Matcher:
        """The registry's matcher, created on first use (its fingerprint index loads on the first match)."""
        if self._matcher is None:
            self._matcher = Matcher(self._registry.log, self._registry.reader)
        return self._matcher

    async def match(self, req: pb.MatchRequest) -> pb.MatchResponse:
        return await asyncio.to_thread(registry_match.match, self.matcher(), req)

    async def get_fingerprint(self, req: pb.GetFingerprintRequest) -> pb.GetFingerprintResponse:
        return await asyncio.to_thread(registry_match.get_fingerprint, self.matcher(), req)
