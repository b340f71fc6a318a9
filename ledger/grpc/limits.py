"""Transport limits of ``provenance serve``: per-peer token buckets and the gRPC channel options.

:class:`TokenBuckets` is pure (a clock is passed in): one bucket per peer key,
``rate`` tokens per second up to ``burst``. :func:`grpc_server_options` turns a
:class:`~ledger.app.config.ServerConfig` into the core options that cap message size
and concurrent streams and make keepalive resist ping floods: a client that pings
more often than ``min_client_ping_interval_seconds`` (or at all while it has no
call open) collects a strike per ping, and after ``max_ping_strikes`` the server
sends GOAWAY (ENHANCE_YOUR_CALM, "too_many_pings") and closes the connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from client.errors import ResourceExhaustedError

if TYPE_CHECKING:
    from ledger.app.config import ServerConfig


class RateLimitedError(ResourceExhaustedError):
    """A peer sent more requests than its token bucket allows (RESOURCE_EXHAUSTED)."""


def peer_key(peer: str) -> str:
    """The address part of a gRPC peer string: ``ipv4:1.2.3.4:567`` -> ``ipv4:1.2.3.4``.

    Ports are dropped so that a client cannot reset its bucket by reconnecting.
    """
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer


class TokenBuckets:
    """Per-key token buckets: ``rate`` tokens/s refill, at most ``burst`` stored, ``max_keys`` remembered.

    Requires ``rate > 0``, ``burst >= 1``. The least recently used key is forgotten
    (i.e. gets a full bucket again) once more than ``max_keys`` peers are tracked,
    which bounds memory against address-spraying clients.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 65536) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("need rate > 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket: 0.0 when allowed, else the seconds until it would be."""
        now = self._clock()
        buckets = self._buckets
        found = buckets.get(key)
        if found is None:
            tokens = self.burst
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
        else:
            tokens = min(self.burst, found[0] + (now - found[1]) * self.rate)
            buckets.move_to_end(key)
        if tokens >= cost:
            buckets[key] = (tokens - cost, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


class PeerRateLimit:
    """Checks one call against its peer's bucket; raises :class:`RateLimitedError` with a clear message."""

    def __init__(self, buckets: TokenBuckets, on_refuse: Callable[[], None] | None = None) -> None:
        self.buckets = buckets
        self._on_refuse = on_refuse

    def check(self, peer: str) -> None:
        key = peer_key(peer)
        wait = self.buckets.take(key)
        if wait:
            if self._on_refuse is not None:
                self._on_refuse()
            raise RateLimitedError(
                f"rate limit: {key} is over {self.buckets.rate:g} requests/s (burst {self.buckets.burst:g}); "
                f"retry in {wait:.2f} s"
            )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def grpc_server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core options for the server: message and stream caps, keepalive and ping-flood defence."""
    opts = [
        ("grpc.max_receive_message_length", config.max_receive_message_bytes),
        ("grpc.max_send_message_length", config.max_send_message_bytes),
        ("grpc.max_concurrent_streams", config.max_concurrent_streams),
        ("grpc.so_reuseport", 0),
        # The server pings a connection with calls open every keepalive_time to find dead peers.
        ("grpc.keepalive_time_ms", _ms(config.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(config.keepalive_timeout_seconds)),
        # Client pings: no more often than this, never without an open call, else a strike.
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.min_client_ping_interval_seconds)),
        ("grpc.http2.max_ping_strikes", config.max_ping_strikes),
        ("grpc.keepalive_permit_without_calls", 0),
        # The server's own keepalive pings (one per keepalive_time) continue on a quiet stream, so a
        # WatchCheckpoints reader that vanished is found; 0 = no cap on pings between data frames.
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if config.max_connection_idle_seconds > 0:
        opts.append(("grpc.max_connection_idle_ms", _ms(config.max_connection_idle_seconds)))
    if config.max_connection_age_seconds > 0:
        opts.append(("grpc.max_connection_age_ms", _ms(config.max_connection_age_seconds)))
        opts.append(("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace_seconds)))
    return opts
