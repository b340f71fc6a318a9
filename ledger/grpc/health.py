"""The standard ``grpc.health.v1.Health`` service of the server, and the watch that keeps it true.

grpcio's servicer holds the statuses; :func:`health_handler` puts our own request parsing in
front of it (``ledger/grpc/handlers.py``), so a malformed request is INVALID_ARGUMENT and an
unknown service NOT_FOUND with a message, like every other call. :class:`HealthReporter` sets
every hosted service's status to SERVING or NOT_SERVING: NOT_SERVING while ``log.health()`` is
false or writes have waited ``config.stuck_seconds`` without progress; NOT_SERVING for good once
the server drains.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from client.errors import InvalidInputError, NotFoundError, ProvenanceError
from ledger.app.config import ServerConfig
from ledger.grpc.handlers import abort, parse
from ledger.grpc.metrics import ServerMetrics
from ledger.log.progress import ProgressWatch

HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
STATUS_LOG_SECONDS = 60.0  # an INFO line with the tree size this often (never per call)

_log = logging.getLogger(__name__)


class ProbedLog(Protocol):
    """What the health watch reads of the log."""

    @property
    def size(self) -> int: ...

    def health(self) -> bool: ...


def health_handler(servicer: health_aio.HealthServicer, names: Sequence[str]) -> grpc.GenericRpcHandler:
    """grpcio's health servicer behind our own request parsing.

    Registered as grpcio ships it, an undecodable request fails inside the library's
    deserializer and the caller gets UNKNOWN, and Check of a service it does not know a
    bare NOT_FOUND; here they get INVALID_ARGUMENT and NOT_FOUND with messages, like every
    other call. Answers are otherwise the servicer's own. Not rate limited and not timed:
    a load balancer's probes must get through.
    """
    out = health_pb2.HealthCheckResponse.SerializeToString
    known = ", ".join(repr(n) for n in names)
    path = f"/{HEALTH_SERVICE_NAME}/"

    async def check(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            req = parse(health_pb2.HealthCheckRequest, raw)
            if req.service not in names:
                raise NotFoundError(f"no health status for service {req.service!r}; known: {known}")
        except ProvenanceError as err:
            await abort(context, err, path + "Check")
        return await servicer.Check(req, context)

    async def list_(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            parse(health_pb2.HealthListRequest, raw)
        except InvalidInputError as err:
            await abort(context, err, path + "List")
        # grpcio's aio servicer does not implement List; every name here is one it holds a status for.
        statuses = {n: await servicer.Check(health_pb2.HealthCheckRequest(service=n), context) for n in names}
        return health_pb2.HealthListResponse(statuses=statuses)

    async def watch(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            req = parse(health_pb2.HealthCheckRequest, raw)
        except InvalidInputError as err:
            await abort(context, err, path + "Watch")
        await servicer.Watch(req, context)

    return grpc.method_handlers_generic_handler(HEALTH_SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(check, response_serializer=out),
        "List": grpc.unary_unary_rpc_method_handler(
            list_, response_serializer=health_pb2.HealthListResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, response_serializer=out),
    })


class HealthReporter:
    """The health statuses of ``names`` (``""`` for the server as a whole, and each service), kept true.

    Polls every ``config.health_poll_seconds`` (no I/O: the log's flag and the progress watch),
    logs each change with the tree size and the writes waiting, mirrors the status into the
    ``provenance_healthy`` gauge, and logs the tree size at INFO every :data:`STATUS_LOG_SECONDS`.
    """

    def __init__(self, log: ProbedLog, watch: ProgressWatch, names: Sequence[str], config: ServerConfig,
                 metrics: ServerMetrics) -> None:
        self._log = log
        self._watch = watch
        self.names = tuple(names)
        self._config = config
        self._metrics = metrics
        self.servicer = health_aio.HealthServicer()
        self._healthy = False
        self._task: asyncio.Task[None] | None = None

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return health_handler(self.servicer, self.names)

    def healthy_now(self) -> bool:
        """The log says it is healthy, and no write has waited ``stuck_seconds`` without progress."""
        if not self._log.health():
            return False
        return bool(self._watch.stalled_for() < self._config.stuck_seconds)

    async def start(self) -> None:
        """Set the statuses as they are now, then keep them true until :meth:`stop`."""
        self._healthy = self.healthy_now()
        await self._set(self._healthy)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop polling and report NOT_SERVING for every name from now on (the server drains)."""
        if self._task is not None:
            self._task.cancel()
        self._metrics.healthy.set(0)
        await self.servicer.enter_graceful_shutdown()

    async def _set(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        self._metrics.healthy.set(1 if ok else 0)
        for name in self.names:
            await self.servicer.set(name, status)

    async def _run(self) -> None:
        last_status_log = time.monotonic()
        while True:
            await asyncio.sleep(self._config.health_poll_seconds)
            ok = self.healthy_now()
            if ok != self._healthy:
                stalled = self._watch.stalled_for()
                fields = {"healthy": ok, "tree_size": self._log.size, "log_health": self._log.health(),
                          "writes_waiting": self._watch.outstanding, "stalled_seconds": round(stalled, 3)}
                if ok:
                    _log.warning("health: SERVING again", extra=fields)
                else:
                    _log.error("health: NOT_SERVING (sequencer stopped, failing or stuck)", extra=fields)
                await self._set(ok)
                self._healthy = ok
            now = time.monotonic()
            if now - last_status_log >= STATUS_LOG_SECONDS:
                last_status_log = now
                _log.info("log status", extra={"tree_size": self._log.size, "healthy": ok,
                                               "writes_waiting": self._watch.outstanding})
