"""What every client of a ledger server's gRPC services shares: the channel, TLS, statuses as errors.

:func:`open_channel` builds the one kind of channel (the client's message limits; plaintext,
TLS or mutual TLS per :class:`TlsOptions`); :class:`GrpcClient` holds one with a context manager
and a cache of unary stubs; :func:`error_from_rpc` and :func:`error_for_status` turn a gRPC
status back into the :mod:`client.errors` class the server mapped it from (the inverse of the one
table in ``ledger/grpc/status.py``). The service clients are ``client/remote/log.py`` and
``client/remote/registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from client.errors import (
    DataLossError,
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
    grpc.StatusCode.DATA_LOSS: DataLossError,  # the server's store is damaged: not worth a retry
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
