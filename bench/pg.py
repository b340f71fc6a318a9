"""Benchmarks of the ledger on PostgreSQL (issue 14), against RocksDB on the same machine in the same run.

Figures, all from one run (a throwaway PostgreSQL 15 server started here, fsync and
synchronous_commit on, as ``tests/pg.py`` starts it):

* ingest: unique 300-byte entries in gRPC batches of 1,000, 8 batches in flight in all,
  through real ``provenance serve`` processes: RocksDB (one process), PostgreSQL with one
  frontend, PostgreSQL with two frontends (4 in flight through each); entries/s and the ratio
  to RocksDB. An entry counts once its AddEntries call returned (committed, and covered by a
  signed checkpoint the frontend serves);
* one inclusion proof per call, 64 calls in flight in all (32 per frontend with two), log of
  the ingested size: calls/s, medians of alternating rounds, and the ratio to RocksDB;
* the registry's digest index (``rD`` postings in the ``aux`` table) at ``BENCH_PG_POSTINGS``
  postings (default 100,000,000 as issue 14 asks, about 25 min and 17 GB of /tmp; ``--quick`` 200,000):
  lookup latency p50/p99 of the
  real read (``PostgresStorage.scan_aux`` of one digest's list) and bytes per posting
  (``pg_total_relation_size``: heap, primary-key index, TOAST), with the extrapolation to 10^8
  stated as such when a smaller size ran. ``BENCH_PG_ONLY=postings`` runs only this part.

Every frontend and PostgreSQL share this machine's cores with the load generator: on a small
machine the figures are what the machine allows, printed with it (bench/machine.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.log import BATCH, ENTRY_BYTES, REPO, _channel, _closed_loop, _free_port, _proof_call
from bench.machine import percentile
from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client._pb.provenance.ledger.v1 import ledger_pb2_grpc as pbg
from tests.pg import PgCluster
from tests.references import require_postgres

ORIGIN = "bench.example/pg"
IN_FLIGHT = 8
PROOFS_IN_FLIGHT = 64
TARGET_INGEST = 20_000  # entries/s on PostgreSQL (issue 14)


class Frontend:
    """One ``provenance serve`` process with the given extra flags; stderr to ``DATA.serve.log``."""

    def __init__(self, data: Path, args: list[str]) -> None:
        self.data = data
        self.args = args
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data.parent / f"{self.data.name}.serve.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([sys.executable, "-m", "client.cli", "serve", "--data", str(self.data),
                                      "--listen", self.address, *self.args], cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise RuntimeError(f"server did not start; see {self.data.parent / (self.data.name + '.serve.log')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def ingest(fronts: list[Frontend], total: int, tag: int) -> float:
    """Push ``total`` unique entries through ``fronts`` (:data:`IN_FLIGHT` batches in all); entries/s."""
    lock = threading.Lock()
    next_batch = 0
    errors: list[BaseException] = []

    def worker(front: Frontend) -> None:
        nonlocal next_batch
        with _channel(front.address) as ch:
            stub = pbg.LogServiceStub(ch)
            while True:
                with lock:
                    if next_batch >= total // BATCH or errors:
                        return
                    b = next_batch
                    next_batch += 1
                prefix = tag.to_bytes(2, "big") + b.to_bytes(6, "big")
                entries = [prefix + i.to_bytes(4, "big") + os.urandom(ENTRY_BYTES - 12) for i in range(BATCH)]
                try:
                    stub.AddEntries(pb.AddEntriesRequest(entries=entries), timeout=120)
                except grpc.RpcError as e:  # reported below
                    errors.append(e)
                    return

    threads = [threading.Thread(target=worker, args=(fronts[i % len(fronts)],)) for i in range(IN_FLIGHT)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return (total // BATCH * BATCH) / elapsed


def proof_rate(fronts: list[Frontend], size: int, seconds: float) -> float:
    """Inclusion-proof calls/s with :data:`PROOFS_IN_FLIGHT` in flight, split over ``fronts``."""
    per = PROOFS_IN_FLIGHT // len(fronts)

    async def both() -> list[tuple[float, list[float]]]:
        return list(await asyncio.gather(*(_closed_loop(f.address, _proof_call(size), seconds, per) for f in fronts)))

    return sum(rate for rate, _ in asyncio.run(both()))


def _wait_size(front: Frontend, size: int) -> None:
    """Until ``front`` serves a checkpoint of at least ``size`` (the other frontend's entries too)."""
    from client.remote import LogClient

    deadline = time.monotonic() + 60
    with LogClient(front.address, timeout=10) as c:
        while int(c.checkpoint().split(b"\n")[1]) < size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{front.address} never served size {size}")
            time.sleep(0.05)


def serving(base: Path, cluster: PgCluster, quick: bool) -> None:
    """Ingest and proofs: RocksDB, PostgreSQL with one frontend, PostgreSQL with two."""
    from ledger.app.keys import load_or_create_signer

    total = 20_000 if quick else 200_000
    seconds = 2.0 if quick else 5.0
    rounds = 1 if quick else 3
    key = base / "log.key"
    load_or_create_signer(key, ORIGIN)
    common = ["--key", str(key), "--origin", ORIGIN]
    configs: dict[str, list[Frontend]] = {"RocksDB, 1 process": [Frontend(base / "rocks", common)]}
    dsns = []
    for n in (1, 2):
        dsns.append(cluster.dsn(cluster.fresh_database(migrated=False)))
        configs[f"PostgreSQL, {n} frontend{'s' if n > 1 else ''}"] = [
            Frontend(base / f"pg{n}-{i}", ["--store", dsns[-1], *common]) for i in range(n)]
    ingest_rates: dict[str, float] = {}
    proof_rates: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for tag, (name, fronts) in enumerate(configs.items()):
            for f in fronts:
                f.start()
            ingest(fronts, 10 * BATCH, 1000 + tag)  # warm-up: connections, caches, the first checkpoints
            ingest_rates[name] = ingest(fronts, total, tag)
            for f in fronts:
                _wait_size(f, total + 10 * BATCH)
        size = total + 10 * BATCH
        for _ in range(rounds):  # alternating rounds, all servers up: each sees the same machine load
            for name, fronts in configs.items():
                proof_rates[name].append(proof_rate(fronts, size, seconds))
    finally:
        for fronts in configs.values():
            for f in fronts:
                f.stop()
    rocks = "RocksDB, 1 process"
    print(f"ingest: {total:,} entries of {ENTRY_BYTES} B in batches of {BATCH:,}, {IN_FLIGHT} batches in flight, "
          "answered once committed and signed:")
    for name, rate in ingest_rates.items():
        print(f"  {name:<26} {rate:>9,.0f} entries/s  ({rate / ingest_rates[rocks]:.2f}x RocksDB)")
    best_pg = max(r for n, r in ingest_rates.items() if n.startswith("PostgreSQL"))
    print(f"  target >= {TARGET_INGEST:,} entries/s on PostgreSQL: {'met' if best_pg >= TARGET_INGEST else 'NOT met'} "
          f"(best {best_pg:,.0f})")
    print(f"one inclusion proof per call, {PROOFS_IN_FLIGHT} in flight in all, log of {size:,}, "
          f"medians of {rounds} alternating {seconds:.0f}-s rounds:")
    med = {name: statistics.median(r) for name, r in proof_rates.items()}
    for name, rates in proof_rates.items():
        print(f"  {name:<26} {med[name]:>9,.0f} calls/s  ({med[name] / med[rocks]:.2f}x RocksDB; "
              f"rounds {', '.join(f'{r:,.0f}' for r in rates)})")
    _table_sizes(dsns[0], size)


def _table_sizes(dsn: str, entries: int) -> None:
    """Bytes per entry of each table of a PostgreSQL log (heap, indexes, TOAST), after VACUUM."""
    import psycopg

    tables = ("entries", "leaf_index", "hash_groups", "aux", "checkpoints")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        sizes = {t: conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] for t in tables}  # type: ignore[index]
    total = sum(sizes.values())
    print(f"PostgreSQL disk for {entries:,} entries of {ENTRY_BYTES} B: {total / entries:.0f} bytes/entry ("
          + ", ".join(f"{t} {v / entries:.0f}" for t, v in sizes.items()) + ")")


def _copy_rows(keys: np.ndarray) -> bytes:
    """PostgreSQL's binary COPY stream of ``aux`` rows ``(key, b"")`` for the fixed-width ``keys`` (n x w bytes)."""
    n, w = keys.shape
    rows = np.empty((n, 2 + 4 + w + 4), np.uint8)
    rows[:, :2] = np.frombuffer(struct.pack(">h", 2), np.uint8)
    rows[:, 2:6] = np.frombuffer(struct.pack(">i", w), np.uint8)
    rows[:, 6 : 6 + w] = keys
    rows[:, 6 + w :] = np.frombuffer(struct.pack(">i", 0), np.uint8)
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)


def postings(cluster: PgCluster, n: int, lookups: int = 10_000) -> None:
    """The digest index at ``n`` postings: lookup p50/p99 through PostgresStorage, bytes per posting."""
    import psycopg

    from ledger.registry import keys as K
    from ledger.storage.postgres import PostgresStorage

    dsn = cluster.dsn(cluster.fresh_database(migrated=False))
    store = PostgresStorage.open(dsn)  # migrates the fresh database
    per_digest = 2  # postings per digest (a file in two manifests)
    digests = n // per_digest
    rng = np.random.default_rng(14)
    prefix = K.DIGEST_POSTS + bytes([K.DIGEST_KINDS["file"]])
    width = len(prefix) + 32 + 8
    sample: list[bytes] = []
    t0 = time.perf_counter()
    step = 1_000_000 // per_digest
    with psycopg.connect(dsn, autocommit=True) as conn:
        for lo in range(0, digests, step):
            m = min(digests, lo + step) - lo
            # Within each chunk, key order: random digests sorted, each with its postings (ascending indices).
            d = np.sort(rng.integers(0, 2**63, size=(m, 4), dtype=np.uint64).astype(">u8").view("V32").ravel())
            keys = np.empty((m, per_digest, width), np.uint8)
            keys[:, :, : len(prefix)] = np.frombuffer(prefix, np.uint8)
            keys[:, :, len(prefix) : len(prefix) + 32] = np.frombuffer(d.tobytes(), np.uint8).reshape(m, 1, 32)
            idx = np.arange(lo * per_digest, (lo + m) * per_digest, dtype=np.uint64).astype(">u8")
            keys[:, :, len(prefix) + 32 :] = idx.view(np.uint8).reshape(m, per_digest, 8)
            with conn.cursor() as cur, cur.copy("COPY aux (key, value) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_copy_rows(keys.reshape(-1, width)))
            raw = d.tobytes()  # sample digests from every chunk, so lookups land all over the index
            picks = rng.choice(m, size=min(m, -(-lookups * step // digests)), replace=False).tolist()
            sample += [prefix + raw[k * 32 : (k + 1) * 32] for k in picks]
        conn.execute("VACUUM ANALYZE aux")
        total = conn.execute("SELECT pg_total_relation_size('aux'), pg_indexes_size('aux')").fetchone()
    load_s = time.perf_counter() - t0
    assert total is not None
    lat = []
    order = np.random.default_rng(15).permutation(len(sample))
    for j in order[:lookups].tolist():
        t = time.perf_counter()
        got = store.scan_aux(sample[j])
        lat.append((time.perf_counter() - t) * 1000)
        assert len(got) == per_digest
    store.close()
    per = total[0] / n
    print(f"digest index: {n:,} postings ({digests:,} digests x {per_digest}) loaded in {load_s:.0f} s "
          f"(COPY, key order within each million)")
    print(f"  lookup of one digest's postings (PostgresStorage.scan_aux, {len(lat):,} random digests): "
          f"p50 {percentile(lat, 50):.3f} ms, p99 {percentile(lat, 99):.3f} ms")
    print(f"  {total[0] / 1e9:,.2f} GB in all (index {total[1] / 1e9:,.2f} GB) = {per:.1f} bytes/posting "
          f"(key {len(prefix) + 40} B)")
    if n < 10**8:
        print(f"  at 10^8 postings (extrapolated, not measured): ~{per * 1e8 / 1e9:,.0f} GB at the same bytes/posting; "
              "the B-tree gains at most one level, so a lookup reads one more page -- from disk once the index "
              "no longer fits in RAM. The default run (make bench) measures 10^8")


def run(quick: bool) -> None:
    only = os.environ.get("BENCH_PG_ONLY")
    n = int(os.environ.get("BENCH_PG_POSTINGS", 200_000 if quick else 100_000_000))
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    cluster = PgCluster(require_postgres(), Path(tempfile.mkdtemp(prefix="bench-pg-server-")))
    try:
        cluster.init()
        cluster.start()
        print(f"PostgreSQL 15 at 127.0.0.1:{cluster.port} (throwaway; fsync and synchronous_commit on)")
        if only in (None, "serving"):
            serving(base, cluster, quick)
        if only in (None, "postings"):
            postings(cluster, n)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
