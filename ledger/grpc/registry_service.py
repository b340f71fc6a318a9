"""The gRPC edge of the registry: ``provenance.registry.v1.RegistryService``.

Thin, like ``ledger/grpc/log_service.py``: its methods are built by the one wrapper of
``ledger/grpc/handlers.py`` (requests parsed there, errors mapped through the one table in
``ledger/grpc/status.py``); a handler calls the :class:`~ledger.registry.registry.Registry` and
builds the response. ``Register`` is the one
place a refusal can also travel inside a successful response (a batch partly logged):
its code comes from the same table.

Manifests too large for one message travel in parts: ``UploadManifest`` stages one
(:class:`~ledger.grpc.manifest_staging.ManifestStaging`: spooled to disk, bounded in bytes and age) until a ``Register``
that names its digest without sending it; ``GetManifestParts`` streams one back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.core.bundle.format import to_bytes
from client.core.records import Dataset, Kind, ModelCheckpoint, parse_entry
from client.core.records.model import ID_SIZE, KEY_SIZE
from client.errors import InvalidInputError, ProvenanceError, ResourceExhaustedError, UnavailableError
from ledger.grpc import match_service
from ledger.grpc.handlers import Method, ServerStream, Unary, Upload, client_message
from ledger.grpc.manifest_staging import MESSAGE_OVERHEAD, ManifestLimits, ManifestStaging, Spool
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
COSIGNED_WAIT_SECONDS = 5.0  # Prove waits this long for the witnesses' quorum to cover a bundle's records
SEND_PART_BYTES = 1 << 20  # GetManifestParts: bytes of manifest per part (less when the send limit is lower)

_log = logging.getLogger(__name__)


def _id(raw: bytes, what: str = "id") -> bytes:
    if len(raw) != ID_SIZE:
        raise InvalidInputError(f"{what} must be {ID_SIZE} bytes, got {len(raw)}")
    return bytes(raw)


def _digest_of_spooled(spool: Spool) -> bytes:
    """Parse the manifest in ``spool`` strictly (on a worker thread); its digest. Nothing else is kept."""
    return read_manifest(spool.read()).digest


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
        return pb.Registered(id=rid, code=code_for(result).value[0], error=client_message(result))
    return pb.Registered(id=result.leaf_hash, index=result.index, duplicate=result.duplicate)


class RegistryService:
    """Handlers of ``RegistryService``: host it next to the log on a :class:`~ledger.grpc.server.LedgerServer`."""

    name = SERVICE_NAME

    def __init__(self, registry: Registry, log: Any, log_key: str, limits: ManifestLimits | None = None,
                 clock: Callable[[], float] = time.monotonic, witnessing: Any = None) -> None:
        """``witnessing`` (serve --witness-policy): bundles are proved against its quorum-cosigned checkpoint
        once that covers every record of the bundle (see :meth:`_cosigned_bundle`), else against the latest."""
        self._witnessing = witnessing
        self._registry = registry
        self._log = log
        self._log_key = log_key
        self._draining = False
        self._matcher: Matcher | None = None
        self._limits = limits if limits is not None else ManifestLimits()
        self.staging = ManifestStaging(self._limits.staging_bytes, self._limits.staging_seconds, clock)
        self._parsing = asyncio.Semaphore(1)

    def methods(self) -> Mapping[str, Method]:
        return {
            "Register": Unary(pb.RegisterRequest, self.register),
            "GetRecord": Unary(pb.GetRecordRequest, self.get_record),
            "ListBySigner": Unary(pb.ListBySignerRequest, self.list_by_signer),
            "ListAbout": Unary(pb.ListAboutRequest, self.list_about),
            "GetLineage": Unary(pb.GetLineageRequest, self.get_lineage),
            "FindDigest": Unary(pb.FindDigestRequest, self.find_digest),
            "GetManifest": Unary(pb.GetManifestRequest, self.get_manifest),
            "GetManifestParts": ServerStream(pb.GetManifestRequest, self.get_manifest_parts),
            "UploadManifest": Upload(pb.ManifestPart, self.upload_manifest),
            "GetIdentity": Unary(pb.GetIdentityRequest, self.get_identity),
            "Prove": Unary(pb.ProveRequest, self.prove),
            "Match": Unary(pb.MatchRequest, self.match),
            "GetFingerprint": Unary(pb.GetFingerprintRequest, self.get_fingerprint),
        }

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
        """Assemble, bound, parse and stage one manifest (see ``UploadManifest`` in the proto).

        Parts go to a spool file as they arrive (``ledger/grpc/manifest_staging.py``), so an upload
        holds one part in memory until it is complete; then one upload at a time reads and parses it."""
        if self._draining:
            raise UnavailableError("the server is draining; retry against another instance")
        limit = self._limits.max_manifest_bytes
        spool = self.staging.spool()
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
                data = part.data
                n = len(data)
                if size + n > limit:
                    raise ResourceExhaustedError(f"manifest is over this server's limit of {limit} bytes")
                if want_size and size + n > want_size:
                    raise InvalidInputError(f"parts carry more than the {want_size} bytes announced")
                self.staging.reserve(n)
                reserved += n
                # On the loop, not a worker thread: a part is one message (a page-cache write), and
                # parts freed on worker threads stayed in their malloc arenas (measured 208 vs 65 MiB
                # of RSS for three unfinished 256 MiB uploads).
                spool.write(data)
                del data, part
                size += n
            if first:
                raise InvalidInputError("UploadManifest received no parts")
            if want_size and size != want_size:
                raise InvalidInputError(f"parts carry {size} bytes, the first part announced {want_size}")
            async with self._parsing:  # one whole manifest in memory at a time, however many uploads finish
                digest = await asyncio.to_thread(_digest_of_spooled, spool)  # FormatError: INVALID_ARGUMENT
            if want_digest and digest != want_digest:
                raise InvalidInputError(
                    f"the manifest uploaded has digest {digest.hex()}, the first part named "
                    f"{want_digest.hex()}")
        except BaseException:
            spool.close()
            raise
        finally:
            self.staging.release(reserved)
        self.staging.put_spool(digest, spool)
        _log.debug("manifest staged", extra={"manifest": digest.hex(), "bytes": size})
        return pb.UploadManifestResponse(digest=digest, size=size)

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
        if self._witnessing is not None:
            bundle = self._cosigned_bundle(bundle, _id(req.id), lineage_to)
        return pb.ProveResponse(bundle=to_bytes(bundle))

    def _cosigned_bundle(self, latest: Any, subject: bytes, lineage_to: bytes | None) -> Any:
        """The bundle proved against the witnesses' quorum checkpoint once it covers every record (waiting up to
        :data:`COSIGNED_WAIT_SECONDS` for it), else ``latest`` (proved against the log's latest checkpoint)."""
        need = max(r.index for r in latest.records) + 1
        fut = self._witnessing.wait_for_cosigned(need)
        try:
            cosigned = fut.result(COSIGNED_WAIT_SECONDS)
        except (FutureTimeout, ProvenanceError):
            fut.cancel()
            _log.warning("bundle proved against the latest checkpoint: no checkpoint covering index %d met the "
                         "witness quorum within %.0f s", need - 1, COSIGNED_WAIT_SECONDS)
            return latest
        return build_bundle(self._registry.reader, self._log, self._log_key, subject, lineage_to, at=cosigned)

    def matcher(self) -> Matcher:
        """The registry's matcher, created on first use (its fingerprint index loads on the first match)."""
        if self._matcher is None:
            self._matcher = Matcher(self._registry.log, self._registry.reader)
        return self._matcher

    async def match(self, req: pb.MatchRequest) -> pb.MatchResponse:
        return await asyncio.to_thread(match_service.match, self.matcher(), req)

    async def get_fingerprint(self, req: pb.GetFingerprintRequest) -> pb.GetFingerprintResponse:
        return await asyncio.to_thread(match_service.get_fingerprint, self.matcher(), req)
