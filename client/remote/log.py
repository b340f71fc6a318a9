"""A synchronous client for ``provenance.ledger.v1.LogService`` (RFC 9162 section 4 over gRPC).

Thin: build the request, make the call, convert the response into plain values. Protobuf stays
inside this module, and gRPC status codes come back as :mod:`client.errors` classes
(``client/remote/base.py``). Nothing here is trusted: callers verify notes and proofs with
:mod:`client.core.checkpoint` and :mod:`client.core.merkle`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import InvalidInputError, OutOfRangeError, UnavailableError
from client.remote.base import GrpcClient, error_from_rpc

_SERVICE = "/provenance.ledger.v1.LogService/"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True, slots=True)
class AddedEntry:
    index: int
    leaf_hash: bytes
    duplicate: bool
    inclusion_proof: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class AddResult:
    entries: tuple[AddedEntry, ...]
    checkpoint: bytes | None  # signed note, only when waited for


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LogInfo:
    origin: str
    verifier_key: str
    max_entry_bytes: int
    max_batch_entries: int
    max_range: int
    max_proofs_per_call: int


class LogClient(GrpcClient):
    """One channel to a ledger server's log service. Use as a context manager, or call :meth:`close`."""

    _service = _SERVICE

    # -- the RPCs -----------------------------------------------------------------------------------

    def add_entries(self, entries: Sequence[bytes], *, wait_for_checkpoint: bool = False,
                    wait_for_cosignatures: bool = False) -> AddResult:
        """Append ``entries`` (one batch); with ``wait_for_checkpoint`` also a checkpoint and proofs.

        ``wait_for_cosignatures``: the checkpoint is the first covering the entries that the server's
        witness policy quorum cosigned (its note carries the cosignature lines); the server must have one.
        """
        req = pb.AddEntriesRequest(entries=entries, wait_for_checkpoint=wait_for_checkpoint,
                                   wait_for_cosignatures=wait_for_cosignatures)
        resp = self._unary("AddEntries", req, pb.AddEntriesResponse)
        added = tuple(
            AddedEntry(e.index, e.leaf_hash, e.duplicate, tuple(e.inclusion_proof)) for e in resp.entries
        )
        return AddResult(added, resp.checkpoint.note if resp.HasField("checkpoint") else None)

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note, byte for byte (unverified)."""
        return self._unary("GetCheckpoint", pb.GetCheckpointRequest(), pb.GetCheckpointResponse).checkpoint.note

    def checkpoints(self) -> tuple[bytes, bytes | None]:
        """The latest signed checkpoint note and the server's cosigned one (None: no witness policy or no
        cosignature yet), byte for byte (unverified). The cosigned note may be of a smaller tree."""
        r = self._unary("GetCheckpoint", pb.GetCheckpointRequest(), pb.GetCheckpointResponse)
        return r.checkpoint.note, (r.cosigned.note if r.HasField("cosigned") else None)

    def log_info(self) -> LogInfo:
        r = self._unary("GetLogInfo", pb.GetLogInfoRequest(), pb.GetLogInfoResponse)
        return LogInfo(r.origin, r.verifier_key, r.max_entry_bytes, r.max_batch_entries, r.max_range,
                       r.max_proofs_per_call)

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries from ``start``: one call, possibly fewer than ``end - start`` (never zero if any exist)."""
        req = pb.GetEntriesRequest(start=start, end=end)
        return list(self._unary("GetEntries", req, pb.GetEntriesResponse).entries)

    def iter_entries(self, start: int, end: int) -> Iterator[bytes]:
        """Entries ``[start, min(end, tree size))``, paging as the server limits each response.

        Raises :class:`OutOfRangeError` only when ``start`` itself is beyond the tree.
        """
        first = True
        while start < end:
            try:
                page = self.entries(start, end)
            except OutOfRangeError:
                if first:
                    raise
                return  # the tree ends here
            if not page:
                raise UnavailableError(f"server returned no entries at {start}")
            first = False
            yield from page
            start += len(page)

    def inclusion_proof(
        self, *, index: int | None = None, leaf_hash: bytes | None = None, tree_size: int = 0
    ) -> InclusionProof:
        """Inclusion proof for a leaf given by ``index`` or ``leaf_hash``; ``tree_size`` 0 = latest."""
        if (index is None) == (leaf_hash is None):
            raise InvalidInputError("give exactly one of index and leaf_hash")
        if index is not None:
            req = pb.GetInclusionProofRequest(index=index, tree_size=tree_size)
        else:
            req = pb.GetInclusionProofRequest(leaf_hash=leaf_hash, tree_size=tree_size)
        p = self._unary("GetInclusionProof", req, pb.GetInclusionProofResponse).proof
        return InclusionProof(p.index, p.tree_size, p.leaf_hash, tuple(p.hashes))

    def inclusion_proofs(self, indices: Sequence[int], tree_size: int = 0) -> list[InclusionProof]:
        req = pb.GetInclusionProofsRequest(indices=indices, tree_size=tree_size)
        resp = self._unary("GetInclusionProofs", req, pb.GetInclusionProofsResponse)
        return [InclusionProof(p.index, p.tree_size, p.leaf_hash, tuple(p.hashes)) for p in resp.proofs]

    def consistency_proof(self, old_size: int, new_size: int = 0) -> ConsistencyProof:
        req = pb.GetConsistencyProofRequest(old_size=old_size, new_size=new_size)
        r = self._unary("GetConsistencyProof", req, pb.GetConsistencyProofResponse)
        return ConsistencyProof(r.old_size, r.new_size, tuple(r.hashes))

    def watch_checkpoints(self, timeout: float | None = None) -> Iterator[bytes]:
        """Signed checkpoint notes: the current one, then each new one.

        Ends when the server drains or after the server's ``--max-stream-seconds``; reopen it to go on.
        """
        method = self._channel.unary_stream(
            _SERVICE + "WatchCheckpoints",
            request_serializer=pb.WatchCheckpointsRequest.SerializeToString,
            response_deserializer=pb.WatchCheckpointsResponse.FromString,
        )
        try:
            for resp in method(pb.WatchCheckpointsRequest(), timeout=timeout):
                yield resp.checkpoint.note
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err

    def serving(self, service: str = "") -> bool:
        """Whether the server's standard health service reports SERVING for ``service``."""
        from grpc_health.v1 import health_pb2

        check = self._channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            resp = check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
