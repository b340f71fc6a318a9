"""The gRPC edge of the registry: ``provenance.registry.v1.RegistryService``.

Thin, like ``ledger/grpc/server.py`` (whose wrappers it reuses, so errors map through
the one table in ``ledger/grpc/status.py``): decode the request, call the
:class:`~ledger.registry.registry.Registry`, build the response. ``Register`` is the one
place a refusal can also travel inside a successful response (a batch partly logged):
its code comes from the same table.

Manifests too large for one message travel in parts: ``UploadManifest`` stages one
(:class:`ManifestStaging`: in memory, bounded in bytes and age) until a ``Register``
that names its digest without sending it; ``GetManifestParts`` streams one back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.core.bundle.format import to_bytes
from client.core.records import Dataset, Kind, ModelCheckpoint, parse_entry
from client.core.records.model import ID_SIZE, KEY_SIZE
from client.errors import InvalidInputError, ProvenanceError, ResourceExhaustedError, UnavailableError
from ledger.app.config import ServerConfig
from ledger.grpc import match_service as registry_match
from ledger.grpc.server import _abort, _parse, _stream, _unary
from ledger.grpc.status import code_for
from ledger.log import Appended
from ledger.registry import keys as K
from ledger.registry.manifests import read_manifest
from ledger.registry.matching import Matcher
from ledger.registry.prove import build_bundle
from ledger.registry.queries import MAX_RESULTS, LoggedRecord
from ledger.registry.registry import Registry, Submission

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name
DEFAULT_LIMIT = 1000
MAX_REGISTER = 1024  # records per Register call
SEND_PART_BYTES = 1 << 20  # GetManifestParts: bytes of manifest per part (less when the send limit is lower)
MESSAGE_OVERHEAD = 64  # bytes a GetManifestResponse / ManifestPart adds around its manifest bytes, rounded up
STAGING_FACTOR = 2  # staged and arriving manifests together: at most this many times max_manifest_bytes
STAGING_SECONDS = 3600.0  # a staged manifest not registered within this is dropped

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """Bounds on manifests in parts. ``staging_bytes`` caps staged plus still-arriving uploads together."""

    max_manifest_bytes: int = 2 << 30
    max_send_message_bytes: int = 64 << 20
    staging_bytes: int = STAGING_FACTOR * (2 << 30)
    staging_seconds: float = STAGING_SECONDS

    def __post_init__(self) -> None:
        if self.max_manifest_bytes <= 0 or self.max_send_message_bytes <= MESSAGE_OVERHEAD:
            raise InvalidInputError("manifest and send limits must be positive")
        if self.staging_bytes < self.max_manifest_bytes or not self.staging_seconds > 0:
            raise InvalidInputError("staging must hold at least one largest manifest, for a positive time")

    @classmethod
    def from_config(cls, config: ServerConfig) -> ManifestLimits:
        return cls(config.max_manifest_bytes, config.max_send_message_bytes,
                   STAGING_FACTOR * config.max_manifest_bytes, STAGING_SECONDS)


class ManifestStaging:
    """Uploaded manifests waiting for their ``Register``, in memory, keyed by manifest digest.

    Bounded: staged manifests plus the bytes of uploads still arriving (reserved part by part
    with :meth:`reserve`) never exceed ``max_bytes``; to make room the oldest staged manifest
    is evicted first, and a manifest staged more than ``max_age`` seconds ago is dropped. When
    uploads in progress alone fill the budget, :meth:`reserve` refuses (RESOURCE_EXHAUSTED).
    No I/O and no locking: use it from one thread (the server's event loop).
    """

    def __init__(self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._clock = clock
        self._staged: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()  # oldest first
        self._held = 0  # bytes of staged manifests
        self._reserved = 0  # bytes of uploads still arriving

    def __len__(self) -> int:
        return len(self._staged)

    def __contains__(self, digest: object) -> bool:
        self._expire()
        return digest in self._staged

    @property
    def held_bytes(self) -> int:
        return self._held

    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    def _expire(self) -> None:
        cutoff = self._clock() - self._max_age
        while self._staged:
            digest, (_, at) = next(iter(self._staged.items()))
            if at > cutoff:
                break
            self._evict(digest, "expired")

    def _evict(self, digest: bytes, why: str) -> None:
        data, _ = self._staged.pop(digest)
        self._held -= len(data)
        _log.info("staged manifest dropped (%s)", why, extra={"manifest": digest.hex(), "bytes": len(data)})

    def reserve(self, n: int) -> None:
        """Count ``n`` more bytes of an upload in progress, evicting the oldest staged manifests to make room."""
        self._expire()
        while self._staged and self._held + self._reserved + n > self._max_bytes:
            self._evict(next(iter(self._staged)), "evicted to make room")
        if self._reserved + n > self._max_bytes:
            raise ResourceExhaustedError(
                f"manifest staging is full ({self._reserved} bytes of uploads in progress, limit {self._max_bytes}); "
                "retry later")
        self._reserved += n

    def release(self, n: int) -> None:
        """Forget ``n`` reserved bytes (an upload that failed, or that was staged)."""
        self._reserved -= n

    def put(self, digest: bytes, data: bytes) -> None:
        """Stage ``data`` (its reservation already released); a manifest staged again counts as new."""
        if digest in self._staged:
            self._evict(digest, "staged again")
        self.reserve(len(data))
        self._reserved -= len(data)
        self._staged[digest] = (data, self._clock())
        self._held += len(data)

    def get(self, digest: bytes) -> bytes | None:
        self._expire()
        got = self._staged.get(digest)
        return None if got is None else got[0]

    def drop(self, digest: bytes) -> None:
        if digest in self._staged:
            self._evict(digest, "registered")


def _upload_handler(
    fn: Callable[[AsyncIterator[pb.ManifestPart]], Awaitable[pb.UploadManifestResponse]],
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A client-streaming handler: parses each part itself, errors through the one table (like ``_unary``)."""

    async def handler(parts: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async def parsed() -> AsyncIterator[pb.ManifestPart]:
            async for raw in parts:
                yield _parse(pb.ManifestPart, raw)

        try:
            out: bytes = (await fn(parsed())).SerializeToString()
            return out
        except Exception as err:  # the one place errors become statuses
            await _abort(context, err)
            raise  # unreachable: abort raises

    return grpc.stream_unary_rpc_method_handler(handler)


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

    def __init__(self, registry: Registry, log: Any, log_key: str, limits: ManifestLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._log = log
        self._log_key = log_key
        self._draining = False
        self._matcher: Matcher | None = None
        self._limits = limits if limits is not None else ManifestLimits()
        self.staging = ManifestStaging(self._limits.staging_bytes, self._limits.staging_seconds, clock)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            "Register": _unary(pb.RegisterRequest, self.register),
            "GetRecord": _unary(pb.GetRecordRequest, self.get_record),
            "ListBySigner": _unary(pb.ListBySignerRequest, self.list_by_signer),
            "ListAbout": _unary(pb.ListAboutRequest, self.list_about),
            "GetLineage": _unary(pb.GetLineageRequest, self.get_lineage),
            "FindDigest": _unary(pb.FindDigestRequest, self.find_digest),
            "GetManifest": _unary(pb.GetManifestRequest, self.get_manifest),
            "GetManifestParts": _stream(pb.GetManifestRequest, self.get_manifest_parts),
            "UploadManifest": _upload_handler(self.upload_manifest),
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
        staged = self._use_staged(subs) if len(self.staging) else {}
        results: list[Appended | ProvenanceError] = await asyncio.wrap_future(self._registry.submit(subs))
        for i, digest in staged.items():
            if not isinstance(results[i], ProvenanceError):
                self.staging.drop(digest)
        refused = [r for r in results if isinstance(r, ProvenanceError)]
        if len(refused) == len(results):  # nothing logged: the call fails, as a one-record call would
            raise refused[0]
        return pb.RegisterResponse(records=[_registered(s.entry, r) for s, r in zip(subs, results, strict=True)])

    def _use_staged(self, subs: list[Submission]) -> dict[int, bytes]:
        """Put staged manifest bytes into the dataset and checkpoint records that send none and whose
        manifest the registry does not hold (in place); returns {position: manifest digest} of those."""
        used: dict[int, bytes] = {}
        for i, sub in enumerate(subs):
            if sub.manifest is not None:
                continue
            try:
                statement = parse_entry(sub.entry).record.statement
            except ProvenanceError:
                continue  # the registry refuses it with the reason
            if not isinstance(statement, Dataset | ModelCheckpoint):
                continue
            digest = statement.manifest
            data = self.staging.get(digest)
            if data is None:
                continue
            if self._registry.log.get_aux_many([K.MANIFEST_HELD + digest])[0] is not None:
                self.staging.drop(digest)  # held already: the staged copy is not needed
                continue
            subs[i] = Submission(sub.entry, data, sub.fingerprint)
            used[i] = digest
        return used

    async def upload_manifest(self, parts: AsyncIterator[pb.ManifestPart]) -> pb.UploadManifestResponse:
        """Assemble, bound, parse and stage one manifest (see ``UploadManifest`` in the proto)."""
        if self._draining:
            raise UnavailableError("the server is draining; retry against another instance")
        limit = self._limits.max_manifest_bytes
        pieces: list[bytes] = []
        size = reserved = 0
        want_digest, want_size, first = b"", 0, True
        try:
            async for part in parts:
                if first:
                    first = False
                    want_digest = _id(part.digest, "digest") if part.digest else b""
                    want_size = part.total_size
                    if want_size > limit:
                        raise ResourceExhaustedError(
                            f"manifest of {want_size} bytes is over this server's limit of {limit} bytes")
                elif part.digest or part.total_size:
                    raise InvalidInputError("only the first part may carry the digest and total size")
                n = len(part.data)
                if size + n > limit:
                    raise ResourceExhaustedError(f"manifest is over this server's limit of {limit} bytes")
                if want_size and size + n > want_size:
                    raise InvalidInputError(f"parts carry more than the {want_size} bytes announced")
                self.staging.reserve(n)
                reserved += n
                pieces.append(part.data)
                size += n
            if first:
                raise InvalidInputError("UploadManifest received no parts")
            if want_size and size != want_size:
                raise InvalidInputError(f"parts carry {size} bytes, the first part announced {want_size}")
            data = b"".join(pieces)
            pieces.clear()
            summary = await asyncio.to_thread(read_manifest, data)  # FormatError: INVALID_ARGUMENT
            if want_digest and summary.digest != want_digest:
                raise InvalidInputError(
                    f"the manifest uploaded has digest {summary.digest.hex()}, the first part named "
                    f"{want_digest.hex()}")
        finally:
            self.staging.release(reserved)
        self.staging.put(summary.digest, data)
        _log.debug("manifest staged", extra={"manifest": summary.digest.hex(), "bytes": size})
        return pb.UploadManifestResponse(digest=summary.digest, size=size)

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
        digest = _id(req.digest, "digest")
        data = await asyncio.to_thread(self._registry.reader.manifest, digest)
        room = self._limits.max_send_message_bytes - MESSAGE_OVERHEAD
        if len(data) > room:
            raise ResourceExhaustedError(
                f"manifest {digest.hex()} is {len(data)} bytes, more than one message may carry ({room}); "
                "fetch it with GetManifestParts")
        return pb.GetManifestResponse(manifest=data)

    async def get_manifest_parts(self, req: pb.GetManifestRequest) -> AsyncIterator[pb.ManifestPart]:
        digest = _id(req.digest, "digest")
        data = memoryview(await asyncio.to_thread(self._registry.reader.manifest, digest))
        step = min(SEND_PART_BYTES, self._limits.max_send_message_bytes - MESSAGE_OVERHEAD)
        yield pb.ManifestPart(data=bytes(data[:step]), digest=digest, total_size=len(data))
        for at in range(step, len(data), step):
            yield pb.ManifestPart(data=bytes(data[at : at + step]))

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
