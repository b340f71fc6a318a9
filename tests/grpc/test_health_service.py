"""The gRPC health service answers bad requests like every other call: a status that names the problem."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.servers import ServerProcess, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    with running_server(tmp_path_factory.mktemp("health") / "data") as srv:
        yield srv


def _raw(address: str, method: str, payload: bytes) -> grpc.RpcError | list[bytes]:
    with grpc.insecure_channel(address) as channel:
        if method == "Watch":
            call = channel.unary_stream("/grpc.health.v1.Health/Watch")(payload, timeout=1.0)
            try:
                return [next(call)]
            except grpc.RpcError as err:
                return err
        try:
            return [channel.unary_unary(f"/grpc.health.v1.Health/{method}")(payload, timeout=5.0)]
        except grpc.RpcError as err:
            return err


@pytest.mark.parametrize("method", ["Check", "Watch", "List"])
def test_an_undecodable_request_is_invalid_argument(server: ServerProcess, method: str) -> None:
    got = _raw(server.address, method, b"\xff\xff\xff")
    assert isinstance(got, grpc.RpcError), got
    assert got.code() is grpc.StatusCode.INVALID_ARGUMENT  # grpcio's own registration answers UNKNOWN
    assert "malformed" in got.details() and "Health" in got.details()


def test_an_unknown_service_is_not_found_with_its_name(server: ServerProcess) -> None:
    got = _raw(server.address, "Check", health_pb2.HealthCheckRequest(service="no.such.Service").SerializeToString())
    assert isinstance(got, grpc.RpcError), got
    assert got.code() is grpc.StatusCode.NOT_FOUND
    assert "'no.such.Service'" in got.details() and "provenance.ledger.v1.LogService" in got.details()


def test_check_watch_and_list_still_answer(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", "provenance.ledger.v1.LogService", "provenance.registry.v1.RegistryService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == serving
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert next(watch).status == serving
        watch.cancel()
        listed = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
        assert listed["provenance.ledger.v1.LogService"].status == serving


def test_the_server_still_serves_after_bad_health_calls(server: ServerProcess, tmp_path: Path) -> None:
    for _ in range(20):
        _raw(server.address, "Check", b"\x0a\xff")
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
