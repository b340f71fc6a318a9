"""The gRPC edge of the log: ``provenance.ledger.v1.LogService`` on ``grpc.aio``.

Handlers are thin: decode the request, call the log, build the response. Every
handler is wrapped once, at registration, by :func:`_unary` / :func:`_stream`,
which is the service's only error interceptor: it parses the request bytes
itself (so malformed protobuf is INVALID_ARGUMENT, not INTERNAL) and maps any
:class:`~client.errors.ProvenanceError` through the one table in
``ledger/grpc/status.py``. Wrapping at registration instead of in a
``grpc.aio.ServerInterceptor`` keeps the per-call cost to one ``try``.

Read handlers call the log directly on the event loop (its reads are short and
cached); writes await the sequencer's futures, so no thread is parked per call.

The same wrapper times each call into ``ledger/grpc/metrics.py`` (one ``perf_counter``
pair and one histogram observe) and, when a per-peer rate limit is configured,
checks the caller's token bucket (``ledger/grpc/limits.py``). Services registered next
to the log (the registry) get the same treatment from :class:`_Instrumented`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from time import perf_counter
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import InvalidInputError, NotFoundError, OutOfRangeError, ProvenanceError, UnavailableError
from ledger.app.config import ServerConfig
from ledger.grpc.limits import PeerRateLimit, TokenBuckets, grpc_server_options
from ledger.grpc.metrics import CallMetrics, MetricsEndpoint, ServerMetrics
from ledger.grpc.status import code_for
from ledger.grpc.tls import TlsMaterial, load_tls
from ledger.log.progress import ProgressWatch, WatchedLog, track

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LogService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
STATUS_LOG_SECONDS = 60.0  # an INFO line with the tree size this often (never per call)

_log = logging.getLogger(__name__)


class CheckpointBody(Protocol):
    @property
    def size(self) -> int: ...


class SignedCheckpointLike(Protocol):
    """What the server reads from a signed checkpoint: the note bytes and the tree size."""

    @property
    def checkpoint(self) -> CheckpointBody: ...

    @property
    def note(self) -> bytes: ...


class AppendedLike(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def leaf_hash(self) -> bytes: ...

    @property
    def duplicate(self) -> bool: ...


class LogLike(Protocol):
    """The part of ``ledger.log.Log`` the server uses (a fake in tests, the real log in production)."""

    def submit(self, entries: Sequence[bytes]) -> Future[Any]: ...
    def latest(self) -> SignedCheckpointLike: ...
    def wait_for_size(self, size: int, timeout: float) -> Future[Any]: ...
    def add_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]: ...
    def entries(self, start: int, end: int) -> Sequence[bytes]: ...
    def index_of(self, leaf_hash: bytes) -> int | None: ...
    def inclusion_proof(self, index: int, tree_size: int) -> Sequence[bytes]: ...
    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> Sequence[Sequence[bytes]]: ...
    def consistency_proof(self, size1: int, size2: int) -> Sequence[bytes]: ...
    def health(self) -> bool: ...

    @property
    def size(self) -> int: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _parse(cls: type[Req], raw: bytes) -> Req:
    try:
        msg: Req = cls.FromString(raw)  # type: ignore[attr-defined]
    except DecodeError as err:
        raise InvalidInputError(f"malformed {cls.__name__}: {err}") from err
    return msg


_STATUS_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def _code(err: Exception) -> grpc.StatusCode:
    return code_for(err) if isinstance(err, ProvenanceError) else grpc.StatusCode.INTERNAL


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: Exception) -> None:
    if isinstance(err, ProvenanceError):
        await context.abort(code_for(err), str(err) or type(err).__name__)
    _log.exception("unexpected error in %s", SERVICE_NAME)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")


def _unary(
    req_cls: type[Req],
    fn: Callable[[Req], Awaitable[Resp]],
    calls: CallMetrics | None = None,
    limit: PeerRateLimit | None = None,
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A unary handler: parse, call ``fn``, serialize; errors through the one table; timed into ``calls``."""
    if calls is None:

        async def plain(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                out: bytes = (await fn(_parse(req_cls, raw))).SerializeToString()  # type: ignore[attr-defined]
                return out
            except Exception as err:  # the one place errors become statuses
                await _abort(context, err)
                raise  # unreachable: abort raises

        return grpc.unary_unary_rpc_method_handler(plain)

    observe, error = calls.seconds.observe, calls.error
    check = limit.check if limit is not None else None

    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        began = perf_counter()
        try:
            if check is not None:
                check(context.peer())
            out: bytes = (await fn(_parse(req_cls, raw))).SerializeToString()  # type: ignore[attr-defined]
            observe(perf_counter() - began)
            return out
        except Exception as err:  # the one place errors become statuses
            observe(perf_counter() - began)
            error(_code(err).name)
            await _abort(context, err)
            raise  # unreachable: abort raises

    return grpc.unary_unary_rpc_method_handler(handler)


def _health_handler(servicer: health_aio.HealthServicer, names: Sequence[str]) -> grpc.GenericRpcHandler:
    """grpcio's health servicer behind our own request parsing.

    Registered as grpcio ships it, an undecodable request fails inside the library's
    deserializer and the caller gets UNKNOWN, and Check of a service it does not know a
    bare NOT_FOUND; here they get INVALID_ARGUMENT and NOT_FOUND with messages, like every
    other call. Answers are otherwise the servicer's own.
    """
    out = health_pb2.HealthCheckResponse.SerializeToString
    known = ", ".join(repr(n) for n in names)

    async def check(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            req = _parse(health_pb2.HealthCheckRequest, raw)
            if req.service not in names:
                raise NotFoundError(f"no health status for service {req.service!r}; known: {known}")
        except ProvenanceError as err:
            await _abort(context, err)
        return await servicer.Check(req, context)

    async def list_(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            _parse(health_pb2.HealthListRequest, raw)
        except InvalidInputError as err:
            await _abort(context, err)
        # grpcio's aio servicer does not implement List; every name here is one it holds a status for.
        statuses = {n: await servicer.Check(health_pb2.HealthCheckRequest(service=n), context) for n in names}
        return health_pb2.HealthListResponse(statuses=statuses)

    async def watch(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            req = _parse(health_pb2.HealthCheckRequest, raw)
        except InvalidInputError as err:
            await _abort(context, err)
        await servicer.Watch(req, context)

    return grpc.method_handlers_generic_handler(HEALTH_SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(check, response_serializer=out),
        "List": grpc.unary_unary_rpc_method_handler(
            list_, response_serializer=health_pb2.HealthListResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, response_serializer=out),
    })


def _stream(
    req_cls: type[Req],
    fn: Callable[[Req], AsyncIterator[Resp]],
    calls: CallMetrics | None = None,
    limit: PeerRateLimit | None = None,
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A server-streaming handler; like :func:`_unary`, but only errors are counted (streams are long)."""
    check = limit.check if limit is not None else None

    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        try:
            if check is not None:
                check(context.peer())
            async for msg in fn(_parse(req_cls, raw)):
                yield msg.SerializeToString()  # type: ignore[attr-defined]
        except Exception as err:
            if calls is not None:
                calls.error(_code(err).name)
            await _abort(context, err)

    return grpc.unary_stream_rpc_method_handler(handler)


async def _admit_peer(limit: PeerRateLimit | None, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Spend one of the caller's tokens, or end the call with the rate limit's status."""
    if limit is not None:
        try:
            limit.check(context.peer())
        except ProvenanceError as err:
            await _abort(context, err)


def _count_error(error: Callable[[str], None], context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = _STATUS_BY_NUMBER.get(context.code(), context.code())
    if isinstance(code, grpc.StatusCode) and code != grpc.StatusCode.OK:
        error(code.name)


class _Instrumented(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped here
    """Another service's handlers, timed and rate limited like the log's (wrapped once per method)."""

    def __init__(self, inner: grpc.GenericRpcHandler, metrics: ServerMetrics, limit: PeerRateLimit | None) -> None:
        self._inner = inner
        self._metrics = metrics
        self._limit = limit
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        try:
            return self._wrapped[method]
        except KeyError:
            pass
        found = self._inner.service(details)
        if found is None:
            return None  # not ours; never cached, so made-up method names cannot grow the cache
        service, _, name = method.strip("/").partition("/")
        if found.unary_unary is not None:
            found = found._replace(  # a namedtuple
                unary_unary=self._wrap(found.unary_unary, self._metrics.call(service, name)))
        elif found.stream_unary is not None:  # an upload: limited and timed like a unary call
            found = found._replace(stream_unary=self._wrap(found.stream_unary, self._metrics.call(service, name)))
        elif found.unary_stream is not None:  # a download: limited; only errors counted (streams are long)
            found = found._replace(unary_stream=self._wrap_stream(found.unary_stream,
                                                                  self._metrics.call(service, name)))
        self._wrapped[method] = found
        return found

    def _wrap_stream(self, behavior: Callable[..., AsyncIterator[Any]],
                     calls: CallMetrics) -> Callable[..., AsyncIterator[Any]]:
        error, limit = calls.error, self._limit

        async def handler(raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                await _admit_peer(limit, context)
                async for msg in behavior(raw, context):
                    yield msg
            finally:
                _count_error(error, context)

        return handler

    def _wrap(self, behavior: Callable[..., Awaitable[Any]], calls: CallMetrics) -> Callable[..., Awaitable[Any]]:
        observe, error, limit = calls.seconds.observe, calls.error, self._limit

        async def handler(raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            began = perf_counter()
            try:
                await _admit_peer(limit, context)
                return await behavior(raw, context)
            finally:
                elapsed = perf_counter() - began
                _count_error(error, context)
                observe(elapsed)  # last: once a call is counted, its error is too

        return handler


class LogService:
    """The handlers of ``LogService``. Construct, then pass :meth:`generic_handler` to a server."""

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str,
                 metrics: ServerMetrics | None = None, limit: PeerRateLimit | None = None,
                 watch: ProgressWatch | None = None) -> None:
        self._log = log
        self._watch = watch if watch is not None else ProgressWatch()
        self._config = config
        self._metrics = metrics
        self._limit = limit
        self._info = pb.GetLogInfoResponse(
            origin=config.origin,
            verifier_key=verifier_key,
            max_entry_bytes=config.max_entry_bytes,
            max_batch_entries=config.max_batch_entries,
            max_range=config.max_range,
            max_proofs_per_call=config.max_proofs_per_call,
        )
        self._draining = False
        self._closing = asyncio.Event()
        self._watchers: set[asyncio.Event] = set()

    def generic_handler(self) -> grpc.GenericRpcHandler:
        metrics, limit = self._metrics, self._limit

        def unary(name: str, req_cls: type[Req], fn: Callable[[Req], Awaitable[Resp]]) -> Any:
            return _unary(req_cls, fn, metrics.call(SERVICE_NAME, name) if metrics else None, limit)

        handlers = {
            "AddEntries": unary("AddEntries", pb.AddEntriesRequest, self.add_entries),
            "GetCheckpoint": unary("GetCheckpoint", pb.GetCheckpointRequest, self.get_checkpoint),
            "GetEntries": unary("GetEntries", pb.GetEntriesRequest, self.get_entries),
            "GetInclusionProof": unary("GetInclusionProof", pb.GetInclusionProofRequest, self.get_inclusion_proof),
            "GetInclusionProofs": unary("GetInclusionProofs", pb.GetInclusionProofsRequest,
                                        self.get_inclusion_proofs),
            "GetConsistencyProof": unary("GetConsistencyProof", pb.GetConsistencyProofRequest,
                                         self.get_consistency_proof),
            "WatchCheckpoints": _stream(pb.WatchCheckpointsRequest, self.watch_checkpoints,
                                        metrics.call(SERVICE_NAME, "WatchCheckpoints") if metrics else None, limit),
            "GetLogInfo": unary("GetLogInfo", pb.GetLogInfoRequest, self.get_log_info),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def start_draining(self) -> None:
        """Refuse new writes (UNAVAILABLE) and end every watch stream."""
        self._draining = True
        self._closing.set()
        for event in self._watchers:
            event.set()

    # -- handlers -----------------------------------------------------------------------------------

    async def add_entries(self, req: pb.AddEntriesRequest) -> pb.AddEntriesResponse:
        if self._draining:
            raise UnavailableError("the server is draining; retry against another instance")
        entries = list(req.entries)
        results = await asyncio.wrap_future(track(self._watch, self._log.submit, entries))
        for result in results:
            if isinstance(result, ProvenanceError):
                # Entries of the batch that did land are durable; resubmitting is safe (duplicates keep their index).
                raise result
        resp = pb.AddEntriesResponse()
        add = resp.entries.add
        for a in results:
            add(index=a.index, leaf_hash=a.leaf_hash, duplicate=a.duplicate)
        if _log.isEnabledFor(logging.DEBUG):
            for a in results:
                _log.debug("entry added", extra={"index": a.index, "record_id": a.leaf_hash.hex(),
                                                 "duplicate": a.duplicate})
        if req.wait_for_checkpoint and results:
            needed = max(a.index for a in results) + 1
            signed = self._log.latest()  # the sequencer signs before it answers: usually covers already
            if signed.checkpoint.size < needed:
                signed = await asyncio.wrap_future(
                    self._log.wait_for_size(needed, self._config.checkpoint_wait_seconds)
                )
            proofs = self._log.inclusion_proofs([a.index for a in results], signed.checkpoint.size)
            for added, proof in zip(resp.entries, proofs, strict=True):
                added.inclusion_proof.extend(proof)
            resp.checkpoint.note = signed.note
        return resp

    async def get_checkpoint(self, req: pb.GetCheckpointRequest) -> pb.GetCheckpointResponse:
        return pb.GetCheckpointResponse(checkpoint=pb.SignedCheckpoint(note=self._log.latest().note))

    async def get_log_info(self, req: pb.GetLogInfoRequest) -> pb.GetLogInfoResponse:
        return self._info

    async def get_entries(self, req: pb.GetEntriesRequest) -> pb.GetEntriesResponse:
        start, end = req.start, req.end
        if end <= start:
            raise InvalidInputError(f"empty or reversed range [{start}, {end})")
        size = self._log.size
        if start >= size:
            raise OutOfRangeError(f"start {start} is beyond the tree size {size}")
        entries = self._log.entries(start, min(end, start + self._config.max_range, size))
        # Stay under the send limit: cut the response short; the caller asks again.
        budget = self._config.max_send_message_bytes - 1024
        total = 0
        for n, entry in enumerate(entries):
            total += len(entry) + 8
            if total > budget and n:
                entries = entries[:n]
                break
        return pb.GetEntriesResponse(entries=entries)

    async def get_inclusion_proof(self, req: pb.GetInclusionProofRequest) -> pb.GetInclusionProofResponse:
        log = self._log
        which = req.WhichOneof("leaf")
        if which == "leaf_hash":
            leaf = req.leaf_hash
            if len(leaf) != 32:
                raise InvalidInputError(f"leaf_hash is {len(leaf)} bytes, want 32")
            found = log.index_of(leaf)
            if found is None:
                raise NotFoundError(f"no entry with leaf hash {leaf.hex()}")
            index = found
        elif which == "index":
            index, leaf = req.index, b""
        else:
            raise InvalidInputError("give index or leaf_hash")
        size = req.tree_size or log.size
        resp = pb.GetInclusionProofResponse()
        out = resp.proof  # filled in place: constructing nested messages by keyword copies them
        out.hashes.extend(log.inclusion_proof(index, size))
        out.index, out.tree_size, out.leaf_hash = index, size, leaf
        return resp

    async def get_inclusion_proofs(self, req: pb.GetInclusionProofsRequest) -> pb.GetInclusionProofsResponse:
        indices = req.indices
        if not indices:
            raise InvalidInputError("no indices given")
        if len(indices) > self._config.max_proofs_per_call:
            raise InvalidInputError(f"{len(indices)} indices, more than the limit {self._config.max_proofs_per_call}")
        size = req.tree_size or self._log.size
        proofs = self._log.inclusion_proofs(indices, size)
        resp = pb.GetInclusionProofsResponse()
        add = resp.proofs.add  # several times faster than building each message and copying it in
        for i, p in zip(indices, proofs, strict=True):
            add(index=i, tree_size=size, hashes=p)
        return resp

    async def get_consistency_proof(self, req: pb.GetConsistencyProofRequest) -> pb.GetConsistencyProofResponse:
        size = self._log.size
        new = req.new_size or size
        if req.old_size > size:
            raise OutOfRangeError(f"old size {req.old_size} is beyond the tree size {size}")
        proof = self._log.consistency_proof(req.old_size, new)
        return pb.GetConsistencyProofResponse(old_size=req.old_size, new_size=new, hashes=proof)

    async def watch_checkpoints(self, req: pb.WatchCheckpointsRequest) -> AsyncIterator[pb.WatchCheckpointsResponse]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_checkpoint(_: object) -> None:  # called from the sequencer's thread
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)

        self._watchers.add(wake)
        unsubscribe = self._log.add_listener(on_checkpoint)
        # Server-side cap on how long one stream holds a slot; the client reopens it (docs/operations.md).
        ends = loop.time() + self._config.max_stream_seconds
        try:
            sent = -1
            while not self._closing.is_set():
                signed = self._log.latest()
                if signed.checkpoint.size > sent:
                    sent = signed.checkpoint.size
                    yield pb.WatchCheckpointsResponse(checkpoint=pb.SignedCheckpoint(note=signed.note))
                left = ends - loop.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
                wake.clear()
        finally:
            unsubscribe()
            self._watchers.discard(wake)


class LedgerServer:
    """A ``grpc.aio`` server with the log service, health and reflection; drains on :meth:`stop`.

    Also owns the metrics (exposed on ``config.metrics_listen`` when set), the per-peer
    rate limit (when ``config.rate_limit_per_second`` > 0), TLS (when ``config.tls_cert``
    is set; ``tls`` may pass already-read material instead) and the health watch:
    NOT_SERVING while ``log.health()`` is false or writes have waited ``stuck_seconds``
    without progress.
    """

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str, extra: Sequence[Any] = (),
                 metrics: ServerMetrics | None = None, tls: TlsMaterial | None = None) -> None:
        """``extra``: more services (the registry), each with ``name``, ``generic_handler()``, ``start_draining()``.

        ``log`` may already be a :class:`~ledger.log.progress.WatchedLog` (the entry point wraps it
        so that the registry's writes are watched too); otherwise a fresh watch counts this server's writes.
        ``tls``: TLS files already read by the entry point; None reads ``config.tls_*`` at :meth:`start`.
        """
        watched: object = log
        self._unsubscribe: list[Callable[[], None]] = []
        if isinstance(watched, WatchedLog):
            log, self._watch = watched.inner, watched.watch
        else:
            self._watch = ProgressWatch()
            self._unsubscribe.append(log.add_listener(self._watch.progressed))
        self._log = log
        self._config = config
        self.metrics = metrics if metrics is not None else ServerMetrics()
        self._unsubscribe.append(self.metrics.watch_log(log.size, log.add_listener))
        self.metrics.writes_in_flight.set_function(lambda: self._watch.outstanding)
        self.limit: PeerRateLimit | None = None
        if config.rate_limit_per_second > 0:
            buckets = TokenBuckets(config.rate_limit_per_second, config.rate_burst, time.monotonic)
            self.limit = PeerRateLimit(buckets, self.metrics.rate_limited.inc)
        self.service = LogService(log, config, verifier_key, self.metrics, self.limit, self._watch)
        self._extra = list(extra)
        self._tls = tls
        self.health = health_aio.HealthServicer()
        self._health_names = ("", SERVICE_NAME, *(x.name for x in self._extra))
        self._server = grpc.aio.server(options=grpc_server_options(config))
        self._server.add_generic_rpc_handlers(
            (self.service.generic_handler(),
             *(_Instrumented(x.generic_handler(), self.metrics, self.limit) for x in self._extra))
        )
        self._server.add_generic_rpc_handlers((_health_handler(self.health, self._health_names),))
        reflection.enable_server_reflection(
            (SERVICE_NAME, *(x.name for x in self._extra), HEALTH_SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
        )
        self._health_task: asyncio.Task[None] | None = None
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.port = 0

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_endpoint.port if self._metrics_endpoint is not None else None

    def _credentials(self) -> grpc.ServerCredentials | None:
        tls = self._tls
        if tls is None and self._config.tls_cert is not None and self._config.tls_key is not None:
            tls = load_tls(self._config.tls_cert, self._config.tls_key, self._config.client_ca)
        if tls is None:
            return None
        creds: grpc.ServerCredentials = tls.server_credentials()
        return creds

    async def start(self) -> int:
        """Bind and start serving (and the metrics endpoint, if configured); returns the bound port."""
        listen = self._config.listen
        creds = self._credentials()
        try:
            if creds is None:
                self.port = self._server.add_insecure_port(listen)
            else:
                self.port = self._server.add_secure_port(listen, creds)
        except RuntimeError as err:  # grpc's way of saying the address is taken or invalid
            raise UnavailableError(f"cannot listen on {listen}: {err}") from err
        if self.port == 0:
            raise UnavailableError(f"cannot listen on {listen}")
        if self._config.metrics_listen is not None:
            self._metrics_endpoint = self.metrics.serve(self._config.metrics_listen)
        self._healthy = self._check_health()
        await self._set_health(self._healthy)
        await self._server.start()
        self._health_task = asyncio.create_task(self._watch_health())
        return self.port

    def _check_health(self) -> bool:
        if not self._log.health():
            return False
        return bool(self._watch.stalled_for() < self._config.stuck_seconds)

    async def _set_health(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        self.metrics.healthy.set(1 if ok else 0)
        for name in self._health_names:
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        last_status_log = time.monotonic()
        while True:
            await asyncio.sleep(self._config.health_poll_seconds)
            ok = self._check_health()
            if ok != self._healthy:
                stalled = self._watch.stalled_for()
                fields = {"healthy": ok, "tree_size": self._log.size, "log_health": self._log.health(),
                          "writes_waiting": self._watch.outstanding, "stalled_seconds": round(stalled, 3)}
                if ok:
                    _log.warning("health: SERVING again", extra=fields)
                else:
                    _log.error("health: NOT_SERVING (sequencer stopped, failing or stuck)", extra=fields)
                await self._set_health(ok)
                self._healthy = ok
            now = time.monotonic()
            if now - last_status_log >= STATUS_LOG_SECONDS:
                last_status_log = now
                _log.info("log status", extra={"tree_size": self._log.size, "healthy": ok,
                                               "writes_waiting": self._watch.outstanding})

    async def stop(self) -> None:
        """Drain: health NOT_SERVING, refuse new calls, let in-flight calls finish (up to drain_seconds)."""
        if self._health_task is not None:
            self._health_task.cancel()
        self.metrics.healthy.set(0)
        await self.health.enter_graceful_shutdown()
        self.service.start_draining()
        for x in self._extra:
            x.start_draining()
        await self._server.stop(self._config.drain_seconds)
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
            self._metrics_endpoint = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

