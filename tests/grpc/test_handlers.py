"""The one handler wrapper (ledger/grpc/handlers.py): each kind of method parses, limits, maps and counts alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import NotFoundError
from ledger.grpc.handlers import Method, ServerStream, Unary, Upload, method_handler
from ledger.grpc.limits import PeerRateLimit, TokenBuckets
from ledger.grpc.metrics import ServerMetrics

MALFORMED = b"\xff\xff\xff"  # not a protobuf message of any type


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """The part of ``grpc.aio.ServicerContext`` the wrapper uses."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


async def _fail(req: Any) -> pb.GetCheckpointResponse:
    raise NotFoundError("nothing here")


async def _crash(req: Any) -> pb.GetCheckpointResponse:
    raise KeyError("server internals")


async def _ok(req: Any) -> pb.GetCheckpointResponse:
    return pb.GetCheckpointResponse(checkpoint=pb.SignedCheckpoint(note=b"note"))


async def _ok_upload(parts: AsyncIterator[pb.GetEntriesRequest]) -> pb.GetCheckpointResponse:
    return pb.GetCheckpointResponse(checkpoint=pb.SignedCheckpoint(note=b"%d" % len([p async for p in parts])))


async def _ok_stream(req: Any) -> AsyncIterator[pb.GetCheckpointResponse]:
    for _ in range(2):
        yield pb.GetCheckpointResponse()


async def _fail_stream(req: Any) -> AsyncIterator[pb.GetCheckpointResponse]:
    yield pb.GetCheckpointResponse()
    raise NotFoundError("gone midway")


def _call(method: Method, request: Any, limit: PeerRateLimit | None = None) -> tuple[Any, ServerMetrics]:
    """Run one call of ``method`` with ``request`` bytes (a list of part bytes for an upload)."""
    metrics = ServerMetrics()
    handler = method_handler(method, "/test.T/M", metrics.call("test.T", "M"), limit)

    async def go() -> Any:
        if handler.unary_unary is not None:
            return await handler.unary_unary(request, Context())
        if handler.stream_unary is not None:
            async def parts() -> AsyncIterator[bytes]:
                for p in request:
                    yield p
            return await handler.stream_unary(parts(), Context())
        return [m async for m in handler.unary_stream(request, Context())]

    try:
        return asyncio.run(go()), metrics
    except Aborted as err:
        return err, metrics


def _errors(metrics: ServerMetrics, code: str) -> float:
    return metrics.registry.get_sample_value(
        "provenance_rpc_errors_total", {"service": "T", "method": "M", "code": code}) or 0


def _timed(metrics: ServerMetrics) -> float:
    return metrics.registry.get_sample_value(
        "provenance_rpc_duration_seconds_count", {"service": "T", "method": "M"}) or 0


KINDS: dict[str, tuple[Method, Any, Method]] = {
    "unary": (Unary(pb.GetCheckpointRequest, _ok), b"", Unary(pb.GetCheckpointRequest, _fail)),
    "upload": (Upload(pb.GetEntriesRequest, _ok_upload), [b"", b""], Upload(pb.GetEntriesRequest, _fail)),
    "stream": (ServerStream(pb.GetCheckpointRequest, _ok_stream), b"",
               ServerStream(pb.GetCheckpointRequest, _fail_stream)),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_answers(kind: str) -> None:
    ok, request, _ = KINDS[kind]
    got, metrics = _call(ok, request)
    if kind == "stream":
        assert got == [b"", b""]
    else:
        assert pb.GetCheckpointResponse.FromString(got).checkpoint.note == (b"2" if kind == "upload" else b"note")
    assert _timed(metrics) == (0 if kind == "stream" else 1), "streams are not timed, other calls are"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_maps_our_errors_through_the_table_and_counts_them(kind: str) -> None:
    _, request, failing = KINDS[kind]
    got, metrics = _call(failing, request)
    assert isinstance(got, Aborted) and got.code == grpc.StatusCode.NOT_FOUND
    assert "nothing here" in got.details or "gone midway" in got.details
    assert _errors(metrics, "NOT_FOUND") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_refuses_malformed_protobuf_as_invalid_argument(kind: str) -> None:
    ok, _, _ = KINDS[kind]
    got, metrics = _call(ok, [b"", MALFORMED] if kind == "upload" else MALFORMED)
    assert isinstance(got, Aborted) and got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.details.startswith("malformed ")
    assert _errors(metrics, "INVALID_ARGUMENT") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_spends_the_peers_tokens(kind: str) -> None:
    ok, request, _ = KINDS[kind]
    limit = PeerRateLimit(TokenBuckets(1e-9, 1.0, time.monotonic))
    limit.check(Context().peer())  # the one token is spent
    got, metrics = _call(ok, request, limit)
    assert isinstance(got, Aborted) and got.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _errors(metrics, "RESOURCE_EXHAUSTED") == 1


def test_a_foreign_error_is_internal_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    got, metrics = _call(Unary(pb.GetCheckpointRequest, _crash), b"")
    assert isinstance(got, Aborted) and got.code == grpc.StatusCode.INTERNAL
    assert got.details == "internal error: KeyError" and "internals" not in got.details
    assert _errors(metrics, "INTERNAL") == 1
    assert any("/test.T/M" in r.getMessage() for r in caplog.records), "logged with the method it failed in"
