"""The gRPC edge of the log: ``provenance.ledger.v1.LogService`` on ``grpc.aio``.

Handlers are thin: decode the request, call the log, build the response. Every
handler is wrapped once, at registration, by :func:`_unary` / :func:`_stream`,
which is the service's only error interceptor: it parses the request bytes
itself (so malformed protobuf is INVALID_ARGUMENT, not INTERNAL) and maps any
:class:`~client.errors.ProvenanceError` through the one table in
``ledger/status.py``. Wrapping at registration instead of in a
``grpc.aio.ServerInterceptor`` keeps the per-call cost to one ``try``.

Read handlers call the log directly on the event loop (its reads are short and
cached); writes await the sequencer's futures, so no thread is parked per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import InvalidInputError, NotFoundError, OutOfRangeError, ProvenanceError, UnavailableError
from ledger.config import ServerConfig
from ledger.status import code_for

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LogService"].full_name
HEALTH_POLL_SECONDS = 0.5

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


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: Exception) -> None:
    if isinstance(err, ProvenanceError):
        await context.abort(code_for(err), str(err) or type(err).__name__)
    _log.exception("unexpected error in %s", SERVICE_NAME)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")


def _unary(
    req_cls: type[Req], fn: Callable[[Req], Awaitable[Resp]]
) -> grpc.RpcMethodHandler[bytes, bytes]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            out: bytes = (await fn(_parse(req_cls, raw))).SerializeToString()  # type: ignore[attr-defined]
            return out
        except Exception as err:  # the one place errors become statuses
            await _abort(context, err)
            raise  # unreachable: abort raises

    return grpc.unary_unary_rpc_method_handler(handler)


def _stream(
    req_cls: type[Req], fn: Callable[[Req], AsyncIterator[Resp]]
) -> grpc.RpcMethodHandler[bytes, bytes]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        try:
            async for msg in fn(_parse(req_cls, raw)):
                yield msg.SerializeToString()  # type: ignore[attr-defined]
        except Exception as err:
            await _abort(context, err)

    return grpc.unary_stream_rpc_method_handler(handler)


class LogService:
    """The handlers of ``LogService``. Construct, then pass :meth:`generic_handler` to a server."""

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str) -> None:
        self._log = log
        self._config = config
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
        handlers = {
            "AddEntries": _unary(pb.AddEntriesRequest, self.add_entries),
            "GetCheckpoint": _unary(pb.GetCheckpointRequest, self.get_checkpoint),
            "GetEntries": _unary(pb.GetEntriesRequest, self.get_entries),
            "GetInclusionProof": _unary(pb.GetInclusionProofRequest, self.get_inclusion_proof),
            "GetInclusionProofs": _unary(pb.GetInclusionProofsRequest, self.get_inclusion_proofs),
            "GetConsistencyProof": _unary(pb.GetConsistencyProofRequest, self.get_consistency_proof),
            "WatchCheckpoints": _stream(pb.WatchCheckpointsRequest, self.watch_checkpoints),
            "GetLogInfo": _unary(pb.GetLogInfoRequest, self.get_log_info),
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
        results = await asyncio.wrap_future(self._log.submit(entries))
        for result in results:
            if isinstance(result, ProvenanceError):
                # Entries of the batch that did land are durable; resubmitting is safe (duplicates keep their index).
                raise result
        resp = pb.AddEntriesResponse()
        add = resp.entries.add
        for a in results:
            add(index=a.index, leaf_hash=a.leaf_hash, duplicate=a.duplicate)
        if req.wait_for_checkpoint and results:
            needed = max(a.index for a in results) + 1
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
        try:
            sent = -1
            while not self._closing.is_set():
                signed = self._log.latest()
                if signed.checkpoint.size > sent:
                    sent = signed.checkpoint.size
                    yield pb.WatchCheckpointsResponse(checkpoint=pb.SignedCheckpoint(note=signed.note))
                await wake.wait()
                wake.clear()
        finally:
            unsubscribe()
            self._watchers.discard(wake)


class LedgerServer:
    """A ``grpc.aio`` server with the log service, health and reflection; drains on :meth:`stop`."""

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str, extra: Sequence[Any] = ()) -> None:
        """``extra``: more services (the registry), each with ``name``, ``generic_handler()``, ``start_draining()``."""
        self._log = log
        self._config = config
        self.service = LogService(log, config, verifier_key)
        self._extra = list(extra)
        self.health = health_aio.HealthServicer()
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_receive_message_bytes),
                ("grpc.max_send_message_length", config.max_send_message_bytes),
                ("grpc.max_concurrent_streams", config.max_concurrent_streams),
                ("grpc.so_reuseport", 0),
            ]
        )
        self._server.add_generic_rpc_handlers(
            (self.service.generic_handler(), *(x.generic_handler() for x in self._extra))
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, *(x.name for x in self._extra),
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server,
        )
        self._health_task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        try:
            self.port = self._server.add_insecure_port(self._config.listen)
        except RuntimeError as err:  # grpc's way of saying the address is taken or invalid
            raise UnavailableError(f"cannot listen on {self._config.listen}: {err}") from err
        if self.port == 0:
            raise UnavailableError(f"cannot listen on {self._config.listen}")
        await self._set_health(self._log.health())
        await self._server.start()
        self._health_task = asyncio.create_task(self._watch_health())
        return self.port

    async def _set_health(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        last = True
        while True:
            await asyncio.sleep(HEALTH_POLL_SECONDS)
            ok = self._log.health()
            if ok != last:
                _log.warning("log health changed", extra={"healthy": ok})
                await self._set_health(ok)
                last = ok

    async def stop(self) -> None:
        """Drain: health NOT_SERVING, refuse new calls, let in-flight calls finish (up to drain_seconds)."""
        if self._health_task is not None:
            self._health_task.cancel()
        await self.health.enter_graceful_shutdown()
        self.service.start_draining()
        for x in self._extra:
            x.start_draining()
        await self._server.stop(self._config.drain_seconds)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
