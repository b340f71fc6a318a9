"""Tile serving (``serve --http``: C2SP tlog-tiles) against the gRPC ``GetInclusionProof`` call, in one run.

One ``provenance serve --http`` process holds a log of ``SIZE`` entries (added over gRPC). Then,
in alternating rounds of equal length and equal concurrency (``CONCURRENCY`` requests in flight,
clients in this process):

* **gRPC**: ``GetInclusionProof`` of a random index at the signed size (grpc.aio, one channel);
* **tiles**: what a tile client fetches to prove a random index itself: the level-0 tile holding
  it and every tile above on its path (for 200,000 entries: a full level-0 tile, a level-1 tile
  and the level-2 partial tile: 3 GETs), over keep-alive HTTP/1.1 connections, one per thread.

Printed: tile GETs/s, proof sets/s (the tiles of one proof), gRPC proofs/s, the ratio of proof
sets to gRPC proofs (medians over the rounds), and the bytes each carries. A tile client caches
what it fetched (full tiles never change), so its second proof near the first costs fewer GETs;
this measures the cold case. When Debian's nginx is installed, the same tile sets are also fetched
from nginx serving the server's ``--tiles-dir`` (a static mirror). Run: ``python -m bench tiles`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import http.client
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
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client._pb.provenance.ledger.v1 import ledger_pb2_grpc as pbg
from client.core.tiles import TILE_HEIGHT, tile_in_tree

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proof_tiles(index: int, size: int) -> list[str]:
    """The tile paths a client needs to prove ``index`` in the tree of ``size``: its tile at every level."""
    paths = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        node = index >> (TILE_HEIGHT * level)
        paths.append("/" + tile_in_tree(level, node >> TILE_HEIGHT, size).path())
        level += 1
    return paths


def _start(data: Path, grpc_port: int, http_port: int) -> subprocess.Popen[bytes]:
    log = open(data.parent / "serve.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([sys.executable, "-m", "client.cli", "serve", "--data", str(data), "--origin",
                             "bench.example/tiles", "--listen", f"127.0.0.1:{grpc_port}",
                             "--http", f"127.0.0.1:{http_port}", "--tiles-dir", str(data.parent / "tiles")],
                            cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return proc
            except grpc.RpcError:
                time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def _ingest(address: str, total: int) -> int:
    with grpc.insecure_channel(address) as ch:
        stub = pbg.LogServiceStub(ch)
        for start in range(0, total, 4000):
            n = min(4000, total - start)
            stub.AddEntries(pb.AddEntriesRequest(entries=[f"bench tile entry {start + i}".encode()
                                                          for i in range(n)], wait_for_checkpoint=True), timeout=60)
        note = stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=10).checkpoint.note
        return int(note.split(b"\n")[1])


def grpc_round(address: str, size: int, seconds: float) -> tuple[float, int]:
    """GetInclusionProof calls/s with CONCURRENCY in flight, and the proof bytes of one answer."""

    async def main() -> tuple[float, int]:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = pbg.LogServiceStub(ch)
            rng = random.Random(1)
            count, nbytes = 0, 0
            end = time.perf_counter() + seconds

            async def loop() -> None:
                nonlocal count, nbytes
                while time.perf_counter() < end:
                    resp = await stub.GetInclusionProof(
                        pb.GetInclusionProofRequest(index=rng.randrange(size), tree_size=size))
                    nbytes = resp.ByteSize()
                    count += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
            return count / (time.perf_counter() - t0), nbytes

    return asyncio.run(main())


def tiles_round(port: int, size: int, seconds: float) -> tuple[float, float, int]:
    """(tile GETs/s, proof sets/s, bytes of one set) with CONCURRENCY threads on keep-alive connections."""
    counts = [0] * CONCURRENCY
    sets = [0] * CONCURRENCY
    set_bytes = [0]
    end = time.perf_counter() + seconds
    errors: list[str] = []

    def worker(k: int) -> None:
        rng = random.Random(100 + k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.perf_counter() < end:
                got = 0
                for path in proof_tiles(rng.randrange(size), size):
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        errors.append(f"{path}: {resp.status}")
                        return
                    got += len(body)
                    counts[k] += 1
                sets[k] += 1
                set_bytes[0] = got
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CONCURRENCY)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"tile GETs failed: {errors[:3]}")
    return sum(counts) / elapsed, sum(sets) / elapsed, set_bytes[0]


NGINX_CONF = """daemon off; master_process off; worker_processes 1; pid {run}/nginx.pid; error_log {run}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {run}/b; proxy_temp_path {run}/p; fastcgi_temp_path {run}/f;
  uwsgi_temp_path {run}/u; scgi_temp_path {run}/s; default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""


def _nginx(root: Path, run: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """Debian's nginx (one process) serving the tiles directory, or None when there is no nginx."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if exe is None:
        return None
    run.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    (run / "nginx.conf").write_text(NGINX_CONF.format(run=run, port=port, root=root))
    proc = subprocess.Popen([exe, "-c", str(run / "nginx.conf"), "-p", str(run), "-e", str(run / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def _dir_size(root: Path) -> int:
    try:
        return int((root / "checkpoint").read_bytes().split(b"\n")[1])
    except (OSError, IndexError, ValueError):
        return -1


def run(quick: bool) -> None:
    total = 20_000 if quick else 200_000
    seconds = 2.0 if quick else 6.0
    rounds = 1 if quick else 3
    base = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    grpc_port, http_port = _free_port(), _free_port()
    proc = _start(base / "data", grpc_port, http_port)
    try:
        address = f"127.0.0.1:{grpc_port}"
        t0 = time.perf_counter()
        size = _ingest(address, total)
        print(f"log of {size:,} entries (added in {time.perf_counter() - t0:.1f} s); {CONCURRENCY} requests in "
              f"flight, {rounds} alternating {seconds:.0f}-s rounds; a proof's tiles: "
              f"{', '.join(proof_tiles(size // 3, size))}")
        g_rates, t_rates, s_rates = [], [], []
        g_bytes = s_bytes = 0
        for _ in range(rounds):
            r, g_bytes = grpc_round(address, size, seconds)
            g_rates.append(r)
            tr, sr, s_bytes = tiles_round(http_port, size, seconds)
            t_rates.append(tr)
            s_rates.append(sr)
        n_rates: list[float] = []
        deadline = time.monotonic() + 60
        while _dir_size(base / "tiles") < size and time.monotonic() < deadline:
            time.sleep(0.1)
        nginx = _nginx(base / "tiles", base / "nginx") if _dir_size(base / "tiles") == size else None
        if nginx is not None:
            try:
                for _ in range(rounds):
                    n_rates.append(tiles_round(nginx[1], size, seconds)[1])
            finally:
                nginx[0].terminate()
                nginx[0].wait(10)
        g, t, s = statistics.median(g_rates), statistics.median(t_rates), statistics.median(s_rates)
        print(f"gRPC GetInclusionProof: {g:,.0f} proofs/s ({g_bytes} bytes each; rounds "
              f"{', '.join(f'{x:,.0f}' for x in g_rates)})")
        print(f"HTTP tiles: {t:,.0f} tile GETs/s = {s:,.0f} proofs' tiles/s ({s_bytes:,} bytes each; rounds "
              f"{', '.join(f'{x:,.0f}' for x in t_rates)} GETs/s)")
        print(f"ratio: one proof's tiles over HTTP vs one gRPC proof: {s / g:.2f}x the rate "
              f"(tile GETs vs gRPC calls: {t / g:.2f}x); both served by the one Python process")
        if n_rates:
            n = statistics.median(n_rates)
            print(f"the same tiles from nginx serving --tiles-dir (one nginx process): {n:,.0f} proofs' tiles/s "
                  f"= {n / g:.2f}x the gRPC proof rate (rounds {', '.join(f'{x:,.0f}' for x in n_rates)}; "
                  "the clients in this process are the limit as much as nginx)")
        else:
            print("nginx: not measured (not installed, or the tiles dir did not catch up)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(base, ignore_errors=True)
