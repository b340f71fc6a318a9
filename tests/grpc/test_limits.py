"""Transport limits: per-peer rate limit, message size, concurrent streams, deadlines, ping floods."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import grpc
import pytest

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.core import merkle
from client.core.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from client.errors import NotFoundError, ResourceExhaustedError, UnavailableError
from client.remote import LogClient
from ledger.app.config import ServerConfig
from ledger.errors import WaitTimeoutError
from ledger.grpc.handlers import Method, ServerStream, Unary, Upload
from ledger.grpc.limits import PeerRateLimit, RateLimitedError, TokenBuckets, grpc_server_options, peer_key
from tests.fake_log import FakeLog
from tests.inproc import serving
from tests.servers import health_status

WATCH = "/provenance.ledger.v1.LogService/WatchCheckpoints"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now



# -- token buckets (pure) --------------------------------------------------------------------------


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # one token refills in 1/rate s
    assert b.take("b") == 0.0, "buckets are per key"
    clock.now += 0.5
    assert b.take("a") == 0.0
    assert b.take("a") > 0
    clock.now += 100
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0], "refill is capped at the burst"
    assert b.take("a") > 0


def test_refused_calls_do_not_spend_tokens() -> None:
    clock = Clock()
    b = TokenBuckets(rate=1.0, burst=1, clock=clock)
    assert b.take("a") == 0.0
    for _ in range(10):
        assert b.take("a") > 0
    clock.now += 1.0
    assert b.take("a") == 0.0, "hammering while refused does not push the refill further away"


def test_bucket_memory_is_bounded() -> None:
    b = TokenBuckets(rate=1.0, burst=1, clock=Clock(), max_keys=100)
    for i in range(1000):
        b.take(f"ipv4:10.0.{i // 256}.{i % 256}")
    assert len(b) == 100


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1, clock=Clock())
    with pytest.raises(ValueError):
        TokenBuckets(rate=1, burst=0.5, clock=Clock())


@pytest.mark.parametrize(
    "peer, key",
    [
        ("ipv4:127.0.0.1:54321", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:443", "ipv6:[::1]"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_peer_key_drops_the_port(peer: str, key: str) -> None:
    assert peer_key(peer) == key


def test_refusal_message_is_clear_and_counted() -> None:
    refused: list[int] = []
    limit = PeerRateLimit(TokenBuckets(1.0, 1, Clock()), lambda: refused.append(1))
    limit.check("ipv4:10.1.2.3:1000")
    with pytest.raises(RateLimitedError, match=r"rate limit: ipv4:10.1.2.3 is over 1 requests/s .*retry in"):
        limit.check("ipv4:10.1.2.3:2000")  # another port, same peer
    assert refused == [1]
    assert issubclass(RateLimitedError, ResourceExhaustedError)


# -- the options handed to gRPC --------------------------------------------------------------------


def test_server_options_resist_ping_floods() -> None:
    opts = dict(grpc_server_options(ServerConfig(min_client_ping_interval_seconds=10, max_ping_strikes=2,
                                                 max_connection_age_seconds=600)))
    assert opts["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert opts["grpc.http2.max_ping_strikes"] == 2
    assert opts["grpc.keepalive_permit_without_calls"] == 0
    assert opts["grpc.max_connection_idle_ms"] == 900_000
    assert opts["grpc.max_connection_age_ms"] == 600_000
    assert opts["grpc.max_concurrent_streams"] == ServerConfig().max_concurrent_streams
    assert opts["grpc.max_receive_message_length"] == 64 << 20
    assert "grpc.max_connection_age_ms" not in dict(grpc_server_options(ServerConfig()))


def test_config_refuses_bad_limits() -> None:
    from client.errors import InvalidInputError

    for bad in ({"rate_limit_per_second": -1}, {"max_stream_seconds": 0}, {"max_ping_strikes": -1},
                {"stuck_seconds": 0}):
        with pytest.raises(InvalidInputError):
            ServerConfig(**bad)  # type: ignore[arg-type]
    assert ServerConfig(rate_limit_per_second=50).rate_burst == 100
    assert ServerConfig(rate_limit_per_second=0.1).rate_burst == 1


# -- against a served log --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[tuple[FakeLog, str, object]]:
    log = FakeLog()
    with serving(log, rate_limit_per_second=2.0, rate_limit_burst=4) as (address, server):
        yield log, address, server


def test_rate_limit_refuses_with_resource_exhausted(limited: tuple[FakeLog, str, object]) -> None:
    _, address, server = limited
    with LogClient(address, timeout=5) as c:
        with pytest.raises(ResourceExhaustedError, match="rate limit: ipv4:127.0.0.1 is over 2 requests/s"):
            for _ in range(10):
                c.checkpoint()
        # Health checks are never limited (probes must see the truth while a client misbehaves).
        assert all(health_status(address) == 1 for _ in range(10))
        time.sleep(0.6)  # refills one token
        c.checkpoint()
    registry = server.metrics.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value("provenance_rate_limited_total") >= 1
    assert registry.get_sample_value(
        "provenance_rpc_errors_total",
        {"service": "LogService", "method": "GetCheckpoint", "code": "RESOURCE_EXHAUSTED"}) >= 1


def test_no_rate_limit_by_default() -> None:
    log = FakeLog()
    with serving(log) as (address, server), LogClient(address, timeout=5) as c:
        assert server.limit is None
        for _ in range(200):
            c.checkpoint()


def test_oversized_request_is_resource_exhausted() -> None:
    log = FakeLog(max_entry_bytes=1 << 20)
    with serving(log, max_receive_message_bytes=4096, max_entry_bytes=1024) as (address, _):
        with LogClient(address, timeout=5) as c, pytest.raises(ResourceExhaustedError):
            c.add_entries([b"x" * 8192])
        with LogClient(address, timeout=5) as c:
            assert c.add_entries([b"small"]).entries[0].index == 0, "the server survives it"


def test_watch_stream_is_capped_in_time() -> None:
    log = FakeLog()
    with serving(log, max_stream_seconds=0.3) as (address, _), LogClient(address) as c:
        began = time.monotonic()
        notes = list(c.watch_checkpoints(timeout=10))  # ends by itself, with OK
        assert len(notes) == 1
        assert 0.25 < time.monotonic() - began < 5


def test_concurrent_streams_per_connection_are_capped() -> None:
    log = FakeLog()
    with serving(log, max_concurrent_streams=1) as (address, _):
        with grpc.insecure_channel(address) as channel:
            watch = channel.unary_stream(WATCH, request_serializer=pb.WatchCheckpointsRequest.SerializeToString,
                                         response_deserializer=pb.WatchCheckpointsResponse.FromString)
            stream = watch(pb.WatchCheckpointsRequest(), timeout=10)
            next(stream)  # the one stream the connection may have is open
            get = channel.unary_unary("/provenance.ledger.v1.LogService/GetCheckpoint",
                                      request_serializer=pb.GetCheckpointRequest.SerializeToString,
                                      response_deserializer=pb.GetCheckpointResponse.FromString)
            with pytest.raises(grpc.RpcError) as info:
                get(pb.GetCheckpointRequest(), timeout=0.5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # queued behind the open stream
            stream.cancel()
        with LogClient(address, timeout=5) as c:  # other connections are not affected
            c.checkpoint()


class SlowCheckpointLog(FakeLog):
    """A log whose checkpoints never catch up: wait_for_size times out after the timeout it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def latest(self):  # type: ignore[no-untyped-def]
        """The empty tree's checkpoint: it never catches up with the entries added."""
        cp = Checkpoint(self.origin, 0, merkle.EMPTY_ROOT)
        return SignedCheckpoint(cp, sign_checkpoint(cp, self.signer))

    def wait_for_size(self, size: int, timeout: float | None):  # type: ignore[no-untyped-def]
        self.timeouts.append(timeout)
        fut: Future[object] = Future()
        threading.Timer(timeout or 0, lambda: fut.set_exception(WaitTimeoutError("no checkpoint in time"))).start()
        return fut


def test_wait_for_checkpoint_is_capped_by_the_server() -> None:
    log = SlowCheckpointLog()
    with serving(log, checkpoint_wait_seconds=0.2) as (address, _), LogClient(address, timeout=10) as c:
        began = time.monotonic()
        with pytest.raises(UnavailableError, match="no checkpoint in time"):
            c.add_entries([b"waits"], wait_for_checkpoint=True)
        assert time.monotonic() - began < 5
    assert log.timeouts == [0.2]


def test_ping_flood_gets_goaway() -> None:
    """A client pinging every 10 ms is cut off (GOAWAY too_many_pings); well-behaved clients are not."""
    log = FakeLog()
    with serving(log, min_client_ping_interval_seconds=5, max_ping_strikes=2) as (address, _):
        flood = [
            ("grpc.keepalive_time_ms", 10),
            ("grpc.keepalive_timeout_ms", 1000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        with grpc.insecure_channel(address, options=flood) as channel:
            watch = channel.unary_stream(WATCH, request_serializer=pb.WatchCheckpointsRequest.SerializeToString,
                                         response_deserializer=pb.WatchCheckpointsResponse.FromString)
            stream = watch(pb.WatchCheckpointsRequest(), timeout=10)
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                for _ in stream:
                    pass
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "ping" in (info.value.details() or "").lower()  # GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
            assert time.monotonic() - began < 8
        with LogClient(address, timeout=5) as c:
            c.checkpoint()


class Raw(bytes):
    """A message type whose wire form is its own bytes (the test service echoes what it gets)."""

    @classmethod
    def FromString(cls, raw: bytes) -> Raw:
        return cls(raw)

    def SerializeToString(self) -> bytes:
        return bytes(self)


class EchoService:
    """A second service registered next to the log, the way the registry is."""

    name = "test.Echo"

    def methods(self) -> Mapping[str, Method]:
        async def ping(raw: Raw) -> Raw:
            if raw == b"fail":
                raise NotFoundError("no such thing")
            return raw

        async def upload(parts: AsyncIterator[Raw]) -> Raw:
            return Raw(b"".join([p async for p in parts]))

        async def parts(raw: Raw) -> AsyncIterator[Raw]:
            for b in raw:
                yield Raw(bytes([b]))

        return {"Ping": Unary(Raw, ping), "Upload": Upload(Raw, upload), "Parts": ServerStream(Raw, parts)}

    def start_draining(self) -> None:
        pass


def test_services_next_to_the_log_are_limited_and_measured_too() -> None:
    log = FakeLog()
    with serving(log, extra=[EchoService()],
                 rate_limit_per_second=1.0, rate_limit_burst=3) as (address, server):
        with grpc.insecure_channel(address) as channel:
            ping = channel.unary_unary("/test.Echo/Ping")
            assert ping(b"hello", timeout=5) == b"hello"
            with pytest.raises(grpc.RpcError) as info:
                ping(b"fail", timeout=5)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as info:
                for _ in range(5):
                    ping(b"again", timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rate limit" in (info.value.details() or "")
        registry = server.metrics.registry
        labels = {"service": "Echo", "method": "Ping"}
        deadline = time.monotonic() + 5  # the server counts after the client has its answer
        while (registry.get_sample_value("provenance_rpc_duration_seconds_count", labels) or 0) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert registry.get_sample_value("provenance_rpc_duration_seconds_count", labels) >= 3
        assert registry.get_sample_value("provenance_rpc_errors_total", {**labels, "code": "NOT_FOUND"}) == 1
        assert registry.get_sample_value("provenance_rpc_errors_total", {**labels, "code": "RESOURCE_EXHAUSTED"}) == 1


@pytest.mark.parametrize("kind", ["upload", "download"])
def test_streaming_calls_next_to_the_log_are_limited_too(kind: str) -> None:
    """A manifest upload (client stream) or download (server stream) spends the peer's tokens like a unary call."""
    log = FakeLog()
    with serving(log, extra=[EchoService()],
                 rate_limit_per_second=0.5, rate_limit_burst=2) as (address, server):
        with grpc.insecure_channel(address) as channel:
            upload = channel.stream_unary("/test.Echo/Upload")
            parts = channel.unary_stream("/test.Echo/Parts")

            def call() -> Any:
                if kind == "upload":
                    return upload(iter([b"ab", b"cd"]), timeout=5)
                return list(parts(b"xyz", timeout=5))

            assert call() == (b"abcd" if kind == "upload" else [b"x", b"y", b"z"])
            with pytest.raises(grpc.RpcError) as info:
                for _ in range(4):
                    call()
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rate limit" in (info.value.details() or "")
        method = "Upload" if kind == "upload" else "Parts"
        errors = {"service": "Echo", "method": method, "code": "RESOURCE_EXHAUSTED"}
        deadline = time.monotonic() + 5
        while (server.metrics.registry.get_sample_value("provenance_rpc_errors_total", errors) or 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
