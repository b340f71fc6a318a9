"""The one wrapper every service method of the server goes through, and the contract of a service.

A service names its methods as data (:class:`Unary`, :class:`ServerStream`, :class:`Upload`: the
request class and an ``async`` function of the parsed request), and :func:`generic_handler` builds
the grpc handlers for all of them the same way. Each built handler, per call:

1. spends one token of the caller's per-peer rate limit, when one is configured
   (``ledger/grpc/limits.py``; a refusal is RESOURCE_EXHAUSTED);
2. parses the request bytes itself, so malformed protobuf is INVALID_ARGUMENT rather than the
   library's INTERNAL (:func:`parse`);
3. maps any :class:`~client.errors.ProvenanceError` to its status through the one table in
   ``ledger/grpc/status.py``, and anything else to INTERNAL, logged (:func:`abort`); a storage
   error (whose text may name server paths and RocksDB internals) is logged and answered with a
   fixed message (:data:`STORAGE_MESSAGES`);
4. counts a failed call by status code and times the call into ``ledger/grpc/metrics.py``
   (one ``perf_counter`` pair and one histogram observe). Server streams are not timed (they
   last as long as the client keeps them), only their errors are counted.

Wrapping at registration rather than in a ``grpc.aio.ServerInterceptor`` keeps the per-call cost
to one ``try``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar, assert_never

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from client.errors import DataLossError, InvalidInputError, ProvenanceError
from ledger.errors import StorageError
from ledger.grpc.limits import PeerRateLimit
from ledger.grpc.metrics import CallMetrics, ServerMetrics
from ledger.grpc.status import code_for

_log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True, slots=True)
class Unary(Generic[Req, Resp]):
    """One request, one response: ``call`` gets the parsed ``request``."""

    request: type[Req]
    call: Callable[[Req], Awaitable[Resp]]


@dataclass(frozen=True, slots=True)
class ServerStream(Generic[Req, Resp]):
    """One request, a stream of responses (a watch, a download in parts)."""

    request: type[Req]
    call: Callable[[Req], AsyncIterator[Resp]]


@dataclass(frozen=True, slots=True)
class Upload(Generic[Req, Resp]):
    """A stream of request parts, one response: ``call`` gets the parts, each parsed as ``part``."""

    part: type[Req]
    call: Callable[[AsyncIterator[Req]], Awaitable[Resp]]


Method = Unary[Any, Any] | ServerStream[Any, Any] | Upload[Any, Any]


class Service(Protocol):
    """A gRPC service the server hosts: its full ``name``, its :meth:`methods`, and a drain switch."""

    @property
    def name(self) -> str: ...

    def methods(self) -> Mapping[str, Method]:
        """Method name (as in the proto) to its request type and handler."""
        ...

    def start_draining(self) -> None:
        """Refuse new writes from now on (the server is stopping)."""
        ...


def parse(cls: type[Req], raw: bytes) -> Req:
    """``raw`` decoded as a ``cls`` message; undecodable bytes raise InvalidInputError (INVALID_ARGUMENT)."""
    try:
        msg: Req = cls.FromString(raw)  # type: ignore[attr-defined]
    except DecodeError as err:
        raise InvalidInputError(f"malformed {cls.__name__}: {err}") from err
    return msg


STORAGE_MESSAGES = {
    True: "the server's store is damaged; the operator has been told (do not retry)",
    False: "the server's storage failed; retry later",
}
"""What a client is told of a :class:`StorageError`, by whether it is a :class:`DataLossError`."""


def client_message(err: ProvenanceError) -> str:
    """The text a client gets for ``err``: its own, except a storage error's (see :data:`STORAGE_MESSAGES`)."""
    if isinstance(err, StorageError):
        return STORAGE_MESSAGES[isinstance(err, DataLossError)]
    return str(err) or type(err).__name__


def status_of(err: Exception) -> grpc.StatusCode:
    """The status ``err`` ends a call with: its row of the one table, or INTERNAL for a foreign error."""
    return code_for(err) if isinstance(err, ProvenanceError) else grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: Exception, method: str = "") -> None:
    """End the call with ``err``'s status (always raises). A foreign error is logged with its traceback
    and reported as INTERNAL without its message, which may hold server internals; so is a storage
    error's text (logged here, at ERROR for damage and WARNING otherwise), under its own status."""
    if isinstance(err, ProvenanceError):
        if isinstance(err, StorageError):
            _log.log(logging.ERROR if isinstance(err, DataLossError) else logging.WARNING,
                     "storage error in %s: %s", method or "a gRPC handler", err)
        await context.abort(code_for(err), client_message(err))
    _log.exception("unexpected error in %s", method or "a gRPC handler")
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")


def method_handler(method: Method, path: str, calls: CallMetrics | None = None,
                   limit: PeerRateLimit | None = None) -> grpc.RpcMethodHandler[bytes, bytes]:
    """The grpc handler of one method (at ``path``, for logs), limited by ``limit`` and recorded in ``calls``.

    The failure path is the same for every kind: the error is counted (before the call's duration is
    observed, so a call seen in the histogram has its error counted already), then :func:`abort`.
    """
    check = limit.check if limit is not None else None
    error = calls.error if calls is not None else None
    observe = calls.seconds.observe if calls is not None else None

    async def fail(context: grpc.aio.ServicerContext[Any, Any], err: Exception, began: float | None) -> None:
        if error is not None:
            error(status_of(err).name)
        if observe is not None and began is not None:
            observe(perf_counter() - began)
        await abort(context, err, path)

    def single(prepare: Callable[[Any], Any], call: Callable[[Any], Awaitable[Any]]
               ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
        """A call with one response; a unary call and an upload differ only in how the request is parsed."""

        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            began = perf_counter()
            try:
                if check is not None:
                    check(context.peer())
                out: bytes = (await call(prepare(request))).SerializeToString()
                if observe is not None:
                    observe(perf_counter() - began)
                return out
            except Exception as err:  # the one place errors become statuses
                await fail(context, err, began)
                raise  # unreachable: abort raises

        return handler

    match method:
        case Unary(request=req_cls, call=call):
            return grpc.unary_unary_rpc_method_handler(single(partial(parse, req_cls), call))

        case Upload(part=part_cls, call=upload_call):
            return grpc.stream_unary_rpc_method_handler(single(partial(_parse_each, part_cls), upload_call))

        case ServerStream(request=req_cls, call=stream_call):

            async def stream(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
                try:
                    if check is not None:
                        check(context.peer())
                    async for msg in stream_call(parse(req_cls, raw)):
                        yield msg.SerializeToString()
                except Exception as err:  # streams are not timed: they last as long as the client wants
                    await fail(context, err, None)

            return grpc.unary_stream_rpc_method_handler(stream)

        case _:
            assert_never(method)


async def _parse_each(cls: type[Req], parts: AsyncIterator[bytes]) -> AsyncIterator[Req]:
    async for raw in parts:
        yield parse(cls, raw)


def generic_handler(service: Service, metrics: ServerMetrics | None = None,
                    limit: PeerRateLimit | None = None) -> grpc.GenericRpcHandler:
    """Every method of ``service`` built by :func:`method_handler`, timed into ``metrics`` when given."""
    name = service.name
    handlers = {
        method: method_handler(spec, f"/{name}/{method}", metrics.call(name, method) if metrics else None, limit)
        for method, spec in service.methods().items()
    }
    return grpc.method_handlers_generic_handler(name, handlers)
