"""Prometheus metrics: the histogram the hot path uses, what a scrape shows, and what timing costs per call."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from client.core.note import Signer
from client.errors import NotFoundError
from client.remote import LogClient
from ledger.grpc.metrics import (
    RPC_BUCKETS,
    FastHistogram,
    ServerMetrics,
    TimedStorage,
    histogram_quantile,
    parse_exposition,
)
from ledger.log import Log, LogConfig
from ledger.storage.memory import MemoryStorage
from tests.fake_log import FakeLog
from tests.inproc import serving
from tests.servers import free_port, running_server

LOG = 'service="LogService"'


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse_exposition(resp.read().decode())


def test_fast_histogram_matches_prometheus_client() -> None:
    """Same buckets, same values: same exposition as the library's own (lock-taking) histogram."""
    values = [0.0, 0.00005, 0.0001, 0.00011, 0.002, 0.002, 0.0049, 0.5, 31.0, 1e-9]
    ours = FastHistogram(RPC_BUCKETS)
    reg = CollectorRegistry()
    theirs = Histogram("h", "h", buckets=RPC_BUCKETS, registry=reg)
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    got, total = ours.snapshot()
    want = parse_exposition(generate_latest(reg).decode())
    for le, count in got:
        assert want[f'h_bucket{{le="{le}"}}'] == count, le
    assert total == pytest.approx(want["h_sum"]) and ours.count == want["h_count"]


def test_histogram_refuses_bad_buckets() -> None:
    with pytest.raises(ValueError):
        FastHistogram((2.0, 1.0))


def test_histogram_quantile() -> None:
    h = FastHistogram((0.001, 0.002, 0.004))
    for _ in range(90):
        h.observe(0.0005)
    for _ in range(10):
        h.observe(0.003)
    buckets = [(float(le), c) for le, c in h.snapshot()[0]]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001 * 50 / 90)
    assert 0.002 < histogram_quantile(0.99, buckets) <= 0.004


def test_timing_overhead_per_call_is_small() -> None:
    """What the hot path adds per call: one perf_counter pair and one observe (printed for the report)."""
    h = ServerMetrics().call("provenance.ledger.v1.LogService", "GetInclusionProof").seconds
    pc = time.perf_counter
    n = 100_000
    best = float("inf")
    for _ in range(3):
        began = pc()
        for _ in range(n):
            t0 = pc()
            h.observe(pc() - t0)
        best = min(best, (pc() - began) / n)
    print(f"metrics overhead per call: {best * 1e6:.2f} us")
    assert best < 5e-6, f"{best * 1e6:.2f} us per call"


def test_scrape_shows_rpcs_errors_tree_and_checkpoint_age() -> None:
    log = FakeLog()
    with serving(log, metrics_listen="127.0.0.1:0") as (
        address, server,
    ):
        port = server.metrics_port
        assert port
        with LogClient(address, timeout=5) as c:
            for i in range(3):
                c.add_entries([f"m{i}".encode()])
            for _ in range(5):
                c.inclusion_proof(index=0)
            with pytest.raises(NotFoundError):
                c.inclusion_proof(leaf_hash=b"\x01" * 32)
        m = _scrape(port)
        assert m[f'provenance_rpc_duration_seconds_count{{method="AddEntries",{LOG}}}'] == 3
        assert m[f'provenance_rpc_duration_seconds_count{{method="GetInclusionProof",{LOG}}}'] == 6
        assert m[f'provenance_rpc_errors_total{{code="NOT_FOUND",method="GetInclusionProof",{LOG}}}'] == 1
        assert m["provenance_tree_size"] == 3
        assert m["provenance_entries_ingested_total"] == 3
        assert m["provenance_checkpoints_signed_total"] >= 3
        assert 0 <= m["provenance_seconds_since_last_checkpoint"] < 5
        assert m["provenance_healthy"] == 1
        # Fine buckets: every sub-millisecond bucket is exposed.
        assert f'provenance_rpc_duration_seconds_bucket{{le="0.0001",method="GetInclusionProof",{LOG}}}' in m
    with pytest.raises(OSError):
        _scrape(port)  # the endpoint stops with the server


def test_batch_commit_histogram_and_ingest_counter() -> None:
    metrics = ServerMetrics()
    signer = Signer.generate("test.example/m")
    log = Log.open(TimedStorage(MemoryStorage(), metrics), signer, LogConfig(origin="test.example/m"))
    try:
        metrics.watch_log(log.size, log.add_listener)
        log.add([b"a", b"b", b"c"], timeout=5)
        log.add([b"d"], timeout=5)
        log.add([b"a"], timeout=5)  # a duplicate: no new entry
    finally:
        log.close()
    reg = metrics.registry
    assert reg.get_sample_value("provenance_entries_ingested_total") == 4
    assert reg.get_sample_value("provenance_tree_size") == 4
    assert reg.get_sample_value("provenance_batch_commit_seconds_count") == 2
    assert reg.get_sample_value("provenance_batch_entries_bucket", {"le": "1.0"}) == 1
    assert reg.get_sample_value("provenance_batch_entries_sum") == 4


def test_metrics_endpoint_of_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "data", ["--metrics-port", str(port)]) as srv:
        with srv.client() as c:
            c.add_entries([b"one", b"two"], wait_for_checkpoint=True)
        m = _scrape(port)
        assert m["provenance_tree_size"] == 2
        assert m["provenance_entries_ingested_total"] == 2
        assert m["provenance_batch_commit_seconds_count"] >= 1
        assert m[f'provenance_rpc_duration_seconds_count{{method="AddEntries",{LOG}}}'] == 1
        # The registry's RPCs are timed and their errors counted too (registered next to the log).
        import grpc

        from client._pb.provenance.registry.v1 import registry_pb2 as rpb

        with grpc.insecure_channel(srv.address) as channel:
            get = channel.unary_unary("/provenance.registry.v1.RegistryService/GetRecord",
                                      request_serializer=rpb.GetRecordRequest.SerializeToString,
                                      response_deserializer=rpb.GetRecordResponse.FromString)
            with pytest.raises(grpc.RpcError) as info:
                get(rpb.GetRecordRequest(id=b"\x07" * 32), timeout=5)
        reg = 'method="GetRecord",service="RegistryService"'
        deadline = time.monotonic() + 5  # another service's errors are counted just after the client has them
        while _scrape(port).get(f"provenance_rpc_duration_seconds_count{{{reg}}}", 0.0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        m = _scrape(port)
        assert m[f"provenance_rpc_duration_seconds_count{{{reg}}}"] == 1
        assert m[f'provenance_rpc_errors_total{{code="{info.value.code().name}",{reg}}}'] == 1
        assert srv.stop() == 0
