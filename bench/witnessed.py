"""Waited adds through a witnessed ``serve``: the log's signature alone vs a quorum of two witnesses.

``python -m bench witnessed`` (not in the default set: it needs aics-witness, see tests/references.py).
One ``provenance serve --witness-policy`` with two local witnesses at quorum 2 (aics-witness, an
independent implementation, and ours); 100 concurrent writers on one asyncio channel (as ``bench log``)
make single-entry adds for a few seconds, alternating rounds of ``wait_for_checkpoint`` (the log's
signature) and ``wait_for_cosignatures`` (the quorum's), so both are measured in the same run. Prints p50 and p99 per
round and the ratio of the medians (docs/guarantees.md, section 8).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tests.witnessing.conftest import Witnessed, WitnessPool

WRITERS = 100


def _round(address: str, cosigned: bool, seconds: float, tag: str) -> list[float]:
    """``WRITERS`` concurrent writers on one asyncio channel (as ``bench log`` drives waited adds: the
    client's own cost stays small beside the server's) for ``seconds``; returns the latencies."""
    import asyncio
    import os

    import grpc

    from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
    from client._pb.provenance.ledger.v1 import ledger_pb2_grpc as pbg

    async def drive() -> list[float]:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = pbg.LogServiceStub(ch)
            stop = time.perf_counter() + seconds
            lat: list[float] = []

            async def writer(w: int) -> None:
                n = 0
                while time.perf_counter() < stop:
                    entry = f"{tag} {w} {n} ".encode() + os.urandom(16)
                    t0 = time.perf_counter()
                    await stub.AddEntries(pb.AddEntriesRequest(entries=[entry], wait_for_checkpoint=not cosigned,
                                                               wait_for_cosignatures=cosigned))
                    lat.append(time.perf_counter() - t0)
                    n += 1

            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            return lat

    t0 = time.perf_counter()
    lat = sorted(asyncio.run(drive()))
    wall = time.perf_counter() - t0
    print(f"  {tag}: n={len(lat)} p50={1000 * statistics.median(lat):.1f} ms "
          f"p99={1000 * lat[max(0, int(0.99 * len(lat)) - 1)]:.1f} ms, {len(lat) / wall:.0f} adds/s", flush=True)
    return lat


def run(quick: bool) -> None:
    seconds = 2.0 if quick else 6.0
    with tempfile.TemporaryDirectory(prefix="bench-witnessed-") as tmp:
        root = Path(tmp)
        pool = WitnessPool(root / "witnesses")
        (root / "serve").mkdir()
        served = Witnessed(root / "serve", pool)
        try:
            print(f"{WRITERS} concurrent writers, {seconds:.0f} s of waited adds per round; witnesses: "
                  f"{', '.join(w.name for w in pool.pair)} (quorum 2)")
            _round(served.server.address, False, seconds, "warm-up")
            signed, cosigned = [], []
            for k in (1, 2):
                signed += _round(served.server.address, False, seconds, f"log-signed {k}")
                cosigned += _round(served.server.address, True, seconds, f"cosigned {k}")
            print(f"  p50 cosigned / log-signed: {statistics.median(cosigned) / statistics.median(signed):.2f}")
        finally:
            served.server.kill()
            pool.close()
