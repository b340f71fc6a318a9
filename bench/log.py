"""Benchmarks of the verifiable log (issue 2), against a real server process.

Figures, all from one run on one machine (medians where repeated):

* ingest: 300-byte entries in gRPC batches of 1,000 with synced writes, over
  2,000,000 entries (quick: 50,000), 4 batches in flight; entries/s overall and per
  segment, with the server's RSS at each segment boundary (flat = no growth with the log);
* one proof per call, 64 calls in flight, against the health service's Check call
  measured the same way, alternating, three rounds each (median); the ratio;
* many proofs per call (1,000 indices a call, 4 in flight): proofs/s;
* a single add that waits for its signed checkpoint, 100 concurrent writers: p50, p99;
* disk bytes per entry after a full compaction, and the overhead above the entry.

Server-side latency of the proof RPC is read from the server's Prometheus metrics when
the server has them (``--metrics-port``), else reported as not measured.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.machine import percentile
from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client._pb.provenance.ledger.v1 import ledger_pb2_grpc as pbg

ENTRY_BYTES = 300
BATCH = 1000
REPO = Path(__file__).resolve().parents[1]
MAX_MSG = 64 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data.parent / "serve.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "serve", "--data", str(self.data), "--listen", self.address,
             "--metrics-port", str(self.metrics_port)],
            cwd=REPO, stdout=log, stderr=log,
        )
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise RuntimeError("server did not start")

    def rpc_buckets(self, method: str) -> dict[float, float]:
        """Cumulative server-side latency buckets (seconds → count) of one RPC, from /metrics."""
        from urllib.request import urlopen

        from ledger.grpc.metrics import parse_exposition

        with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            samples = parse_exposition(r.read().decode())
        out: dict[float, float] = {}
        for name, value in samples.items():
            if name.startswith("provenance_rpc_duration_seconds_bucket{") and f'method="{method}"' in name:
                le = name.split('le="', 1)[1].split('"', 1)[0]
                out[float(le)] = value
        return out

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def _channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address, options=[("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]
    )


def ingest(srv: Server, total: int, segments: int, base: int = 0) -> None:
    """Push ``total`` unique 300-byte entries, 4 batches in flight; print rate and RSS per segment."""
    in_flight = 4
    per_segment = total // segments
    done = 0
    lock = threading.Lock()
    seg_marks: list[tuple[int, float, float]] = []
    errors: list[BaseException] = []
    next_batch = 0
    n_batches = total // BATCH

    def worker() -> None:
        nonlocal done, next_batch
        with _channel(srv.address) as ch:
            stub = pbg.LogServiceStub(ch)
            while True:
                with lock:
                    if next_batch >= n_batches or errors:
                        return
                    b = next_batch
                    next_batch += 1
                prefix = (base // BATCH + b).to_bytes(8, "big")
                entries = [prefix + i.to_bytes(4, "big") + os.urandom(ENTRY_BYTES - 12) for i in range(BATCH)]
                try:
                    stub.AddEntries(pb.AddEntriesRequest(entries=entries), timeout=60)
                except grpc.RpcError as e:  # pragma: no cover - reported below
                    errors.append(e)
                    return
                with lock:
                    before = done
                    done += BATCH
                    if done // per_segment > before // per_segment:
                        seg_marks.append((done, time.perf_counter(), srv.rss_mb()))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    print(f"ingest: {done:,} entries of {ENTRY_BYTES} B in batches of {BATCH:,}, synced writes: "
          f"{done / elapsed:,.0f} entries/s overall ({elapsed:.1f} s)")
    prev_n, prev_t = 0, start
    rates = []
    for n, t, rss in seg_marks:
        rate = (n - prev_n) / (t - prev_t)
        rates.append(rate)
        print(f"  at {base + n:>9,} entries: {rate:>9,.0f} entries/s in this segment, server RSS {rss:7.1f} MiB")
        prev_n, prev_t = n, t
    if rates:
        print(f"  median segment rate {statistics.median(rates):,.0f} entries/s, slowest {min(rates):,.0f}")


async def _closed_loop(address: str, make_call, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """Run ``concurrency`` loops of calls for ``seconds``; return calls/s and client latencies (ms)."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", MAX_MSG)]
    ) as ch:
        call = make_call(ch)
        await call()  # warm the channel
        stop = time.perf_counter() + seconds
        lat: list[float] = []
        count = 0

        async def loop() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await call()
                lat.append((time.perf_counter() - t0) * 1000)
                count += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - t0), lat


def _health_call(ch: grpc.aio.Channel):  # type: ignore[no-untyped-def]
    stub = health_pb2_grpc.HealthStub(ch)
    req = health_pb2.HealthCheckRequest()

    async def call() -> None:
        await stub.Check(req)

    return call


def _proof_call(size: int):  # type: ignore[no-untyped-def]
    def make(ch: grpc.aio.Channel):  # type: ignore[no-untyped-def]
        stub = pbg.LogServiceStub(ch)
        rng = random.Random(1)

        async def call() -> None:
            await stub.GetInclusionProof(pb.GetInclusionProofRequest(index=rng.randrange(size), tree_size=size))

        return call

    return make


def _proofs_call(size: int, per_call: int):  # type: ignore[no-untyped-def]
    def make(ch: grpc.aio.Channel):  # type: ignore[no-untyped-def]
        stub = pbg.LogServiceStub(ch)
        rng = random.Random(2)

        async def call() -> None:
            idx = [rng.randrange(size) for _ in range(per_call)]
            await stub.GetInclusionProofs(pb.GetInclusionProofsRequest(indices=idx, tree_size=size))

        return call

    return make


def proofs(srv: Server, size: int, seconds: float, rounds: int) -> None:
    health_rates, proof_rates, proof_lat = [], [], []
    before = srv.rpc_buckets("GetInclusionProof")
    for _ in range(rounds):
        r, _lat = asyncio.run(_closed_loop(srv.address, _health_call, seconds, 64))
        health_rates.append(r)
        r, lat = asyncio.run(_closed_loop(srv.address, _proof_call(size), seconds, 64))
        proof_rates.append(r)
        proof_lat.extend(lat)
    h, p = statistics.median(health_rates), statistics.median(proof_rates)
    print(f"one proof per call, 64 in flight, log of {size:,}: {p:,.0f} calls/s vs health Check {h:,.0f} calls/s "
          f"→ {p / h:.0%} (medians of {rounds} alternating {seconds:.0f}-s rounds: proofs "
          f"{', '.join(f'{x:,.0f}' for x in proof_rates)}; health {', '.join(f'{x:,.0f}' for x in health_rates)})")
    print(f"  client-observed latency at 64 in flight: p50 {percentile(proof_lat, 50):.2f} ms, "
          f"p99 {percentile(proof_lat, 99):.2f} ms (includes queueing in both processes)")
    from ledger.grpc.metrics import histogram_quantile

    after = srv.rpc_buckets("GetInclusionProof")
    delta = [(le, after[le] - before.get(le, 0.0)) for le in sorted(after)]
    if delta and delta[-1][1] > 0:
        n = delta[-1][1]
        p99_bound = next(le for le, c in delta if c >= 0.99 * n)
        print(f"  server-side handling of those {n:,.0f} calls (Prometheus histogram): "
              f"p50 {histogram_quantile(0.5, delta) * 1e3:.3f} ms, p99 {histogram_quantile(0.99, delta) * 1e3:.3f} ms "
              f"(99% of calls took at most {p99_bound * 1e3:g} ms, the bucket bound)")
    else:
        print("  server-side latency: not measured (no metrics)")
    proofs_batched(srv, size, seconds, rounds)


def proofs_batched(srv: Server, size: int, seconds: float, rounds: int) -> None:
    per_call = 1000
    rates = []
    for _ in range(rounds):
        r, _lat = asyncio.run(_closed_loop(srv.address, _proofs_call(size, per_call), seconds, 4))
        rates.append(r * per_call)
    print(f"many proofs per call ({per_call:,} a call, 4 in flight), log of {size:,}: "
          f"{statistics.median(rates):,.0f} proofs/s (median of {', '.join(f'{x:,.0f}' for x in rates)})")


def waited_latencies(address: str, writers: int, seconds: float, entry: Callable[[int, int], bytes], *,
                     cosigned: bool = False) -> list[float]:
    """Milliseconds of each single-entry add by ``writers`` concurrent writers on one asyncio channel for
    ``seconds``, each waiting for its log-signed checkpoint (or, ``cosigned``, its quorum-cosigned one).
    ``entry(writer, n)`` is the n-th entry of a writer. Also used by ``bench witnessed``."""
    async def run() -> list[float]:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = pbg.LogServiceStub(ch)
            stop = time.perf_counter() + seconds
            lat: list[float] = []

            async def writer(w: int) -> None:
                n = 0
                while time.perf_counter() < stop:
                    req = pb.AddEntriesRequest(entries=[entry(w, n)], wait_for_checkpoint=not cosigned,
                                               wait_for_cosignatures=cosigned)
                    t0 = time.perf_counter()
                    resp = await stub.AddEntries(req)
                    lat.append((time.perf_counter() - t0) * 1000)
                    assert resp.checkpoint.note and len(resp.entries) == 1
                    n += 1

            await asyncio.gather(*(writer(w) for w in range(writers)))
            return lat

    return asyncio.run(run())


def waited_adds(srv: Server, writers: int, seconds: float, rounds: int = 1) -> None:
    """``rounds`` runs of ``writers`` concurrent waited adds; each run's figures, then the medians."""
    def entry(w: int, n: int) -> bytes:
        return b"wait" + w.to_bytes(4, "big") + n.to_bytes(8, "big") + os.urandom(ENTRY_BYTES - 16)

    p50s, p99s = [], []
    for _ in range(rounds):
        lat = waited_latencies(srv.address, writers, seconds, entry)
        p50s.append(percentile(lat, 50))
        p99s.append(percentile(lat, 99))
        print(f"add waiting for its signed checkpoint, {writers} concurrent writers, {seconds:.0f} s: "
              f"{len(lat):,} adds, p50 {p50s[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms, max {max(lat):.1f} ms")
    if rounds > 1:
        print(f"  median of {rounds} runs: p50 {statistics.median(p50s):.1f} ms, p99 {statistics.median(p99s):.1f} ms")


def disk(srv: Server, entries: int) -> None:
    from ledger.storage.rocks import RocksStorage

    srv.stop()
    store_dirs = [p for p in srv.data.iterdir() if p.is_dir()]
    if len(store_dirs) != 1:
        print(f"disk: cannot find the store under {srv.data}")
        return
    store = RocksStorage.open(store_dirs[0])
    try:
        size = store.read_head()
        store.compact()
        total = store.disk_bytes()
    finally:
        store.close()
    n = size.size if size is not None else entries
    per = total / n
    print(f"disk after full compaction: {total / 1e6:,.1f} MB for {n:,} entries = {per:.1f} bytes/entry, "
          f"overhead {per - ENTRY_BYTES:.1f} bytes above the {ENTRY_BYTES}-byte entry")


def run(quick: bool) -> None:
    total = 50_000 if quick else 2_000_000  # 2M: the RSS series must show the plateau, not just the climb
    seconds = 2.0 if quick else 8.0
    rounds = 1 if quick else 3
    base = Path(tempfile.mkdtemp(prefix="bench-log-"))
    srv = Server(base / "data")
    try:
        srv.start()
        # Proofs are measured at 1,000,000 entries (the size); then the log grows to
        # 2,000,000 so the RSS series shows whether memory keeps climbing or levels off.
        first = total // 2
        ingest(srv, first, segments=5)
        proofs(srv, first, seconds, rounds)
        print(f"growing the log to {total:,} entries (server RSS should level off):")
        ingest(srv, total - first, segments=5, base=first)
        proofs_batched(srv, total, seconds, rounds)
        waited_adds(srv, 100, seconds, rounds=2 * rounds - 1)  # 5 runs in the full benchmark
        disk(srv, total)
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)
