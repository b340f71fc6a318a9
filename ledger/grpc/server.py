"""The ledger's gRPC server: the services it hosts, TLS, reflection and the server's lifecycle.

:class:`LedgerServer` hosts the log's service (``ledger/grpc/log_service.py``) and any others next
to it (the registry), every method built by the one wrapper of ``ledger/grpc/handlers.py`` (rate
limit, request parsing, the one status table, metrics), plus the standard health service
(``ledger/grpc/health.py``) and server reflection (``ledger/grpc/reflection.py``). :meth:`LedgerServer.stop` drains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc

from client.errors import UnavailableError
from ledger.app.config import ServerConfig
from ledger.grpc.handlers import Service, generic_handler
from ledger.grpc.health import HEALTH_SERVICE_NAME, HealthReporter
from ledger.grpc.limits import PeerRateLimit, TokenBuckets, grpc_server_options
from ledger.grpc.log_service import CosignedSource, LogLike, LogService
from ledger.grpc.metrics import MetricsEndpoint, ServerMetrics
from ledger.grpc.reflection import reflection_handler
from ledger.grpc.tls import TlsMaterial, load_tls
from ledger.log.progress import ProgressWatch, WatchedLog


class LedgerServer:
    """A ``grpc.aio`` server with the log service, health and reflection; drains on :meth:`stop`.

    Also owns the metrics (exposed on ``config.metrics_listen`` when set), the per-peer
    rate limit (when ``config.rate_limit_per_second`` > 0), TLS (when ``config.tls_cert``
    is set; ``tls`` may pass already-read material instead) and the health watch:
    NOT_SERVING while ``log.health()`` is false or writes have waited ``stuck_seconds``
    without progress.
    """

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str, extra: Sequence[Service] = (),
                 metrics: ServerMetrics | None = None, tls: TlsMaterial | None = None,
                 witnessing: CosignedSource | None = None) -> None:
        """``extra``: more services to host (the registry), built by the same wrapper as the log's.
        ``witnessing``: the witness cosigning beside the log (serve --witness-policy), or None.

        ``log`` may already be a :class:`~ledger.log.progress.WatchedLog` (the entry point wraps it
        so that the registry's writes are watched too); otherwise a fresh watch counts this server's writes.
        ``tls``: TLS files already read by the entry point; None reads ``config.tls_*`` at :meth:`start`.
        """
        watched: object = log
        self._unsubscribe: list[Callable[[], None]] = []
        if isinstance(watched, WatchedLog):
            log, watch = watched.inner, watched.watch
        else:
            watch = ProgressWatch()
            self._unsubscribe.append(log.add_listener(watch.progressed))
        self._config = config
        self.metrics = metrics if metrics is not None else ServerMetrics()
        self._unsubscribe.append(self.metrics.watch_log(log.size, log.add_listener))
        self.metrics.writes_in_flight.set_function(lambda: watch.outstanding)
        self.limit: PeerRateLimit | None = None
        if config.rate_limit_per_second > 0:
            buckets = TokenBuckets(config.rate_limit_per_second, config.rate_burst, time.monotonic)
            self.limit = PeerRateLimit(buckets, self.metrics.rate_limited.inc)
        self.service = LogService(log, config, verifier_key, watch, witnessing)
        self._services: tuple[Service, ...] = (self.service, *extra)
        names = tuple(s.name for s in self._services)
        self.health = HealthReporter(log, watch, ("", *names), config, self.metrics)
        self._tls = tls
        self._server = grpc.aio.server(options=grpc_server_options(config))
        self._server.add_generic_rpc_handlers(
            tuple(generic_handler(s, self.metrics, self.limit) for s in self._services))
        self._server.add_generic_rpc_handlers((self.health.generic_handler(),))
        self._server.add_generic_rpc_handlers((reflection_handler((*names, HEALTH_SERVICE_NAME)),))
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
        """Bind and start serving (and the metrics endpoint, if configured); returns the bound port.

        Raises UnavailableError when the address cannot be bound."""
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
        await self.health.start()
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        """Drain: health NOT_SERVING, refuse new calls, let in-flight calls finish (up to drain_seconds)."""
        await self.health.stop()
        for service in self._services:
            service.start_draining()
        await self._server.stop(self._config.drain_seconds)
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
            self._metrics_endpoint = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
