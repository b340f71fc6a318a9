"""A synchronous client for ``provenance.registry.v1.RegistryService``. Thin; nothing it returns is trusted.

Records come back as their exact entry bytes and are parsed here (format only);
callers verify signatures, or better, ask for a proof bundle and verify it with
:mod:`client.core.bundle`. Status codes map back to :mod:`client.errors` classes via
:func:`client.remote.base.error_from_rpc` (a failed call) and :func:`client.remote.base.error_for_status`
(a refused record inside a partly logged ``Register`` batch); :meth:`RegistryClient.register` raises
a partly logged batch as :class:`PartlyRefusedError`, which carries every record's result.

Manifests of any size: :meth:`RegistryClient.upload_manifest` stages one in parts (then register its
record without the bytes), :meth:`RegistryClient.manifest` falls back to fetching one in parts when it
is too large for one message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.core.records import Kind, SignedRecord, parse_entry, record_id
from client.errors import FormatError, InvalidInputError, ProvenanceError, ResourceExhaustedError
from client.remote.base import GrpcClient, error_for_status, error_from_rpc

_SERVICE = "/provenance.registry.v1.RegistryService/"
Resp = TypeVar("Resp")

UPLOAD_PART_BYTES = 512 << 10
"""Manifest bytes per ``UploadManifest`` part: below any server receive limit of 1 MiB or more."""
TRANSFER_BYTES_PER_SECOND = 2 << 20
"""The slowest transfer (and server-side parse) a manifest upload or download is given time for."""
LARGEST_DOWNLOAD = 2 << 30
"""Manifest size a ``GetManifestParts`` deadline allows for (the server's default upload limit)."""


def transfer_timeout(base: float, size: int) -> float:
    """A deadline for moving ``size`` manifest bytes: ``base`` plus time at :data:`TRANSFER_BYTES_PER_SECOND`."""
    return base + size / TRANSFER_BYTES_PER_SECOND


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    index: int
    signed: SignedRecord

    @property
    def id(self) -> bytes:
        return self.signed.id


@dataclass(frozen=True, slots=True)
class Registered:
    """A logged record: its id and index; ``duplicate`` when it was logged before this call."""

    id: bytes
    index: int
    duplicate: bool


RegisterResult = Registered | ProvenanceError
"""One record's outcome in :meth:`RegistryClient.register_many`: logged, or the error that refused it."""


class PartlyRefusedError(ProvenanceError):
    """A ``Register`` batch of which some records were logged and some refused (the call itself succeeded).

    ``results`` holds every record's outcome, in the order sent: its :class:`Registered` (in the log)
    or the :class:`~client.errors.ProvenanceError` that refused it (not in the log). ``first`` is the
    first refusal (also the ``__cause__``) and ``position`` its place in the batch, from 0. Its family
    is the base one: the refusals of one batch may be of different families (NOT_FOUND for an unknown
    parent, PERMISSION_DENIED for a signer, INVALID_ARGUMENT for a malformed record); ``first`` tells
    which. Resubmitting the whole batch is safe: logged records come back as duplicates.
    """

    def __init__(self, results: Sequence[RegisterResult]) -> None:
        refused = [(i, r) for i, r in enumerate(results) if isinstance(r, ProvenanceError)]
        logged = len(results) - len(refused)
        if not refused or not logged:
            raise InvalidInputError("a partly refused batch has at least one logged and one refused record")
        self.results: tuple[RegisterResult, ...] = tuple(results)
        self.position, self.first = refused[0]
        total = len(results)
        super().__init__(f"{self.first} [record {self.position + 1} of {total} refused; {logged} of the {total} "
                         "records were logged: see the error's results]")

    @property
    def logged(self) -> tuple[Registered, ...]:
        """The records of the batch that are in the log, in the order sent."""
        return tuple(r for r in self.results if isinstance(r, Registered))


@dataclass(frozen=True, slots=True)
class RemoteEdge:
    child: bytes
    parent: bytes
    relation: str
    depth: int


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    key: bytes
    status: str
    events: tuple[RemoteRecord, ...]


@dataclass(frozen=True, slots=True)
class ExactCandidate:
    """A checkpoint the server says holds the suspect digests at these positions of the request."""

    record: RemoteRecord
    tensors: tuple[int, ...]
    chunks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RelatedCandidate:
    """A checkpoint whose published fingerprint the server compared with the suspect's."""

    record: RemoteRecord
    fingerprint_digest: bytes
    screen_score: float
    verdict: str
    log10_p: float
    adjusted_log10_p: float
    significant: bool
    comparison_json: str


def _record(r: Any) -> RemoteRecord:
    signed = parse_entry(bytes(r.entry))
    if signed.id != bytes(r.id) or record_id(bytes(r.entry)) != signed.id:
        raise FormatError("server returned a record whose id does not match its bytes")
    return RemoteRecord(int(r.index), signed)


def _result(entry: bytes, r: Any) -> RegisterResult:
    """One ``Registered`` message: a logged record (checked to be the one sent) or a refusal's error."""
    if r.code:
        return error_for_status(int(r.code), r.error or "refused without a message")
    if bytes(r.id) != record_id(entry):
        raise FormatError("server returned another id than the record's")
    return Registered(bytes(r.id), int(r.index), bool(r.duplicate))


class RegistryClient(GrpcClient):
    """One channel to a ledger's registry service. Use as a context manager, or call :meth:`close`."""

    _service = _SERVICE

    def register_many(self, records: Sequence[tuple[bytes, bytes | None]],
                      fingerprints: Sequence[bytes | None] | None = None, *,
                      timeout: float | None = None) -> list[RegisterResult]:
        """Register ``(entry, manifest or None)`` pairs in order, in one call; per record, in order, its
        :class:`Registered` or the :class:`~client.errors.ProvenanceError` that refused it (a refused
        record is not in the log; the others are).

        ``fingerprints`` (one per record, or None) carries the canonical bytes of published fingerprints.
        Raises when the call fails as a whole: the first refusal's error when every record was refused
        (nothing was logged), or a transport or overload error (resubmitting is safe: a logged record
        comes back as a duplicate). ``timeout``: this call's deadline (default: the client's).

        A record whose manifest was staged with :meth:`upload_manifest` is sent with None for it.
        """
        fps = list(fingerprints) if fingerprints is not None else [None] * len(records)
        if len(fps) != len(records):
            raise InvalidInputError("one fingerprint (or None) per record")
        req = pb.RegisterRequest(records=[pb.Submission(entry=e, manifest=m or b"", fingerprint=f or b"")
                                          for (e, m), f in zip(records, fps, strict=True)])
        resp = self._unary("Register", req, pb.RegisterResponse, timeout)
        if len(resp.records) != len(records):
            raise FormatError(f"server answered {len(resp.records)} results for {len(records)} records")
        return [_result(entry, r) for (entry, _), r in zip(records, resp.records, strict=True)]

    def register(self, records: Sequence[tuple[bytes, bytes | None]],
                 fingerprints: Sequence[bytes | None] | None = None, *,
                 timeout: float | None = None) -> list[Registered]:
        """:meth:`register_many`, raising on any refusal: every record refused raises the first refusal's
        error (nothing was logged); some logged and some refused raises :class:`PartlyRefusedError`,
        which carries every record's result.
        """
        results = self.register_many(records, fingerprints, timeout=timeout)
        logged = [r for r in results if isinstance(r, Registered)]
        if len(logged) == len(results):
            return logged
        if not logged:
            raise next(r for r in results if isinstance(r, ProvenanceError))
        partly = PartlyRefusedError(results)
        raise partly from partly.first

    def by_id(self, rid: bytes) -> RemoteRecord:
        return _record(self._unary("GetRecord", pb.GetRecordRequest(id=rid), pb.GetRecordResponse).record)

    def at(self, index: int) -> RemoteRecord:
        return _record(self._unary("GetRecord", pb.GetRecordRequest(index=index), pb.GetRecordResponse).record)

    def by_name(self, kind: Kind, name: str, version: str) -> RemoteRecord:
        nv = pb.NameVersion(kind=kind.value, name=name, version=version)  # type: ignore[arg-type]
        req = pb.GetRecordRequest(name=nv)
        return _record(self._unary("GetRecord", req, pb.GetRecordResponse).record)

    def by_signer(self, key: bytes, limit: int = 0) -> list[RemoteRecord]:
        resp = self._unary("ListBySigner", pb.ListBySignerRequest(key=key, limit=limit), pb.ListRecordsResponse)
        return [_record(r) for r in resp.records]

    def about(self, rid: bytes, limit: int = 0) -> list[RemoteRecord]:
        resp = self._unary("ListAbout", pb.ListAboutRequest(id=rid, limit=limit), pb.ListRecordsResponse)
        return [_record(r) for r in resp.records]

    def lineage(self, rid: bytes, depth: int, descendants: bool = False) -> tuple[list[RemoteRecord], list[RemoteEdge]]:
        req = pb.GetLineageRequest(id=rid, depth=depth, descendants=descendants)
        resp = self._unary("GetLineage", req, pb.GetLineageResponse)
        edges = [RemoteEdge(bytes(e.child), bytes(e.parent), e.relation, e.depth) for e in resp.edges]
        return [_record(r) for r in resp.records], edges

    def find(self, digest: bytes, kinds: Sequence[str] = (), limit: int = 0) -> list[tuple[str, RemoteRecord]]:
        req = pb.FindDigestRequest(digest=digest, kinds=list(kinds), limit=limit)
        resp = self._unary("FindDigest", req, pb.FindDigestResponse)
        return [(m.kind, _record(m.record)) for m in resp.matches]

    def upload_manifest(self, data: bytes, digest: bytes | None = None, *, part_bytes: int = UPLOAD_PART_BYTES
                        ) -> bytes:
        """Stage canonical manifest bytes on the server, in parts; returns the manifest digest.

        Then register the record naming it with None for its manifest: the server uses the staged
        bytes (and drops them once the record is logged). Staging is bounded in time and bytes
        (docs/registry.md), so register soon after. ``digest``, when given, is checked by the server.
        Raises InvalidInputError (malformed manifest, digest mismatch) or ResourceExhaustedError (over
        the server's manifest limit, or its staging area is full).
        """
        if part_bytes <= 0:
            raise InvalidInputError("part_bytes must be positive")

        def parts() -> Iterator[pb.ManifestPart]:
            view = memoryview(data)
            yield pb.ManifestPart(data=bytes(view[:part_bytes]), digest=digest or b"", total_size=len(data))
            for at in range(part_bytes, len(data), part_bytes):
                yield pb.ManifestPart(data=bytes(view[at : at + part_bytes]))

        method = self._channel.stream_unary(
            self._service + "UploadManifest",
            request_serializer=pb.ManifestPart.SerializeToString,
            response_deserializer=pb.UploadManifestResponse.FromString,
        )
        try:
            resp = method(parts(), timeout=transfer_timeout(self.timeout, len(data)))
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        got = bytes(resp.digest)
        if resp.size != len(data) or (digest is not None and got != digest):
            raise FormatError("server staged another manifest than the one uploaded")
        return got

    def manifest(self, digest: bytes) -> bytes:
        """A stored manifest's bytes (unverified): in one message, or in parts when it is too large for one."""
        try:
            req = pb.GetManifestRequest(digest=digest)
            return bytes(self._unary("GetManifest", req, pb.GetManifestResponse).manifest)
        except ResourceExhaustedError:
            return self.manifest_parts(digest)

    def manifest_parts(self, digest: bytes) -> bytes:
        """A stored manifest's bytes, fetched in parts (any size); checked to be complete, not verified."""
        method = self._channel.unary_stream(
            _SERVICE + "GetManifestParts",
            request_serializer=pb.GetManifestRequest.SerializeToString,
            response_deserializer=pb.ManifestPart.FromString,
        )
        pieces: list[bytes] = []
        total = -1
        try:
            for part in method(pb.GetManifestRequest(digest=digest),
                               timeout=transfer_timeout(self.timeout, LARGEST_DOWNLOAD)):
                if total < 0:
                    if bytes(part.digest) != digest:
                        raise FormatError("server streamed another manifest than the one asked for")
                    total = int(part.total_size)
                pieces.append(bytes(part.data))
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        data = b"".join(pieces)
        if total < 0 or len(data) != total:
            raise FormatError(f"server streamed {len(data)} manifest bytes, announced {max(total, 0)}")
        return data

    def identity(self, *, key: bytes | None = None, name: str | None = None) -> Identity:
        req = pb.GetIdentityRequest(key=key) if key is not None else pb.GetIdentityRequest(name=name or "")
        resp = self._unary("GetIdentity", req, pb.GetIdentityResponse)
        return Identity(resp.name, bytes(resp.key), resp.status, tuple(_record(r) for r in resp.events))

    def match(self, tensors: Sequence[bytes], chunks: Sequence[bytes], fingerprint: bytes = b"", *,
              alpha: float = 0.0, limit: int = 0) -> tuple[list[ExactCandidate], list[RelatedCandidate], int]:
        """Ask which registered checkpoints share these digests or are related to this fingerprint.

        Returns (exact candidates earliest first, related candidates most significant first, number of
        published fingerprints searched). Nothing here is trusted: re-check with the records' bytes.
        """
        req = pb.MatchRequest(tensor_digests=list(tensors), chunk_digests=list(chunks), fingerprint=fingerprint,
                              alpha=alpha, limit=limit)
        resp = self._unary("Match", req, pb.MatchResponse)
        exact = [ExactCandidate(_record(m.record), tuple(m.tensors), tuple(m.chunks)) for m in resp.exact]
        related = [
            RelatedCandidate(_record(m.record), bytes(m.fingerprint_digest), m.screen_score, m.verdict, m.log10_p,
                             m.adjusted_log10_p, m.significant, m.comparison_json)
            for m in resp.related
        ]
        return exact, related, int(resp.fingerprints)

    def fingerprint(self, digest: bytes) -> bytes:
        """A published fingerprint's bytes (unverified: check their BLAKE3 against the record's digest)."""
        req = pb.GetFingerprintRequest(digest=digest)
        return bytes(self._unary("GetFingerprint", req, pb.GetFingerprintResponse).fingerprint)

    def prove(self, rid: bytes, lineage_to: bytes | None = None) -> bytes:
        """The bundle bytes (unverified: check them with :func:`client.core.bundle.verify_bundle`)."""
        req = pb.ProveRequest(id=rid, lineage_to=lineage_to or b"")
        return bytes(self._unary("Prove", req, pb.ProveResponse).bundle)
