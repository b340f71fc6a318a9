"""A synchronous client for ``provenance.ledger.v1.LogService``.

Thin: build the request, make the call, convert the response into plain
values. Protobuf stays inside this module, and gRPC status codes come back as
the :mod:`client.errors` classes the server mapped them from (the inverse of
``ledger/grpc/status.py``). Nothing here is trusted: callers verify notes and
proofs with :mod:`client.core.checkpoint` and :mod:`client.core.merkle`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import (
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProvenanceError,
    ResourceExhaustedError,
    SignatureError,
    UnavailableError,
    VerificationError,
)

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 30.0  # seconds per call
MAX_MESSAGE_BYTES = 64 << 20  # what the client accepts or sends in one message

_SERVICE = "/provenance.ledger.v1.LogService/"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"

ERROR_FOR_STATUS: dict[grpc.StatusCode, type[ProvenanceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    grpc.StatusCode.CANCELLED: UnavailableError,
    grpc.StatusCode.FAILED_PRECONDITION: VerificationError,
    grpc.StatusCode.PERMISSION_DENIED: SignatureError,
}


class RemoteError(ProvenanceError):
    """A status with no better mapping (INTERNAL, UNKNOWN, UNIMPLEMENTED...)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def error_for_status(code: grpc.StatusCode | int | None, details: str) -> ProvenanceError:
    """The :mod:`client.errors` instance for a status (the inverse of ``ledger.grpc.status``).

    ``code`` may be a status code number (as ``Registered.code`` carries it); the message is
    ``"DETAILS (CODE_NAME)"``, the same whether the status came as a call's or as a number.
    """
    status: grpc.StatusCode | None = code
    if isinstance(code, int):
        status = _STATUS_BY_NUMBER.get(code)
        if status is None:
            return RemoteError(f"{details} (status {code})", None)
    message = f"{details} ({status.name if status else 'no status'})"
    cls = ERROR_FOR_STATUS.get(status) if status is not None else None
    if cls is None:
        return RemoteError(message, status)
    return cls(message)


def error_from_rpc(err: grpc.RpcError) -> ProvenanceError:
    """The :mod:`client.errors` instance for a failed call (the inverse of ``ledger.grpc.status``)."""
    code: grpc.StatusCode | None = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return error_for_status(code, details)


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


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """A TLS channel: ``ca`` PEM to trust (None: the system roots); ``cert`` and ``key`` for mutual TLS.

    ``server_name`` overrides the name checked against the server's certificate.
    """

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise InvalidInputError("a client certificate needs its key, and a key its certificate")

    def __repr__(self) -> str:
        return f"TlsOptions(ca={'<set>' if self.ca else None}, cert={'<set>' if self.cert else None}, " \
               f"key={'<hidden>' if self.key else None}, server_name={self.server_name!r})"

    @classmethod
    def from_files(cls, ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                   server_name: str | None = None) -> TlsOptions:
        def read(path: Path | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as err:
                raise InvalidInputError(f"cannot read {path}: {err.strerror}") from None

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def open_channel(address: str, tls: TlsOptions | None = None) -> grpc.Channel:
    """A channel to ``address`` with the client's message limits: plaintext, or TLS per ``tls``
    (mutual TLS when it carries a client certificate). Every client class builds its channel here."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.credentials(), options=options + tls.channel_options())


Resp = TypeVar("Resp")


class GrpcClient:
    """One channel to a ledger server and the plumbing every client of its services shares: the
    context manager, a cache of unary method stubs, statuses mapped back to errors. Subclasses name
    their service's path prefix in ``_service``."""

    _service = ""

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = DEFAULT_TIMEOUT,
                 tls: TlsOptions | None = None) -> None:
        """``tls``: connect over TLS (mutual TLS when it carries a client certificate); None: plaintext."""
        self.address = address
        self.timeout = timeout
        self._channel = open_channel(address, tls)
        self._methods: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _unary(self, name: str, req: Any, resp_cls: type[Resp], timeout: float | None = None) -> Resp:
        method = self._methods.get(name)
        if method is None:
            method = self._channel.unary_unary(
                self._service + name,
                request_serializer=type(req).SerializeToString,
                response_deserializer=resp_cls.FromString,  # type: ignore[attr-defined]
            )
            self._methods[name] = method
        try:
            resp: Resp = method(req, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        return resp


class LogClient(GrpcClient):
    """One channel to a ledger server's log service. Use as a context manager, or call :meth:`close`."""

    _service = _SERVICE

    # -- the RPCs -----------------------------------------------------------------------------------

    def add_entries(self, entries: Sequence[bytes], *, wait_for_checkpoint: bool = False) -> AddResult:
        """Append ``entries`` (one batch); with ``wait_for_checkpoint`` also a checkpoint and proofs."""
        req = pb.AddEntriesRequest(entries=entries, wait_for_checkpoint=wait_for_checkpoint)
        resp = self._unary("AddEntries", req, pb.AddEntriesResponse)
        added = tuple(
            AddedEntry(e.index, e.leaf_hash, e.duplicate, tuple(e.inclusion_proof)) for e in resp.entries
        )
        return AddResult(added, resp.checkpoint.note if resp.HasField("checkpoint") else None)

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note, byte for byte (unverified)."""
        return self._unary("GetCheckpoint", pb.GetCheckpointRequest(), pb.GetCheckpointResponse).checkpoint.note

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
