"""Waited adds through a witnessed ``serve``: the log's signature alone vs a quorum of two witnesses.

``python -m bench witnessed`` (not in the default set: it needs aics-witness, see tests/references.py).
One ``provenance serve --witness-policy`` with two local witnesses at quorum 2 (aics-witness, an
independent implementation, and ours); 100 concurrent writers on one asyncio channel (as ``bench log``)
make single-entry adds for a few seconds, alternating rounds of ``wait_for_checkpoint`` (the log's
signature) and ``wait_for_cosignatures`` (the quorum's), so both are measured in the same run. Prints p50 and p99 per
round and the ratio of the medians (docs/guarantees.md, section 8).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.log import waited_latencies
from tests.witnessing.conftest import Witnessed, WitnessPool

WRITERS = 100


def _round(address: str, cosigned: bool, seconds: float, tag: str) -> list[float]:
    """``WRITERS`` concurrent writers for ``seconds`` (``bench log``'s driver, one asyncio channel, so the
    client's own cost stays small beside the server's); prints and returns the latencies in ms."""
    def entry(w: int, n: int) -> bytes:
        return f"{tag} {w} {n} ".encode() + os.urandom(16)

    t0 = time.perf_counter()
    lat = sorted(waited_latencies(address, WRITERS, seconds, entry, cosigned=cosigned))
    wall = time.perf_counter() - t0
    print(f"  {tag}: n={len(lat)} p50={statistics.median(lat):.1f} ms "
          f"p99={lat[max(0, int(0.99 * len(lat)) - 1)]:.1f} ms, {len(lat) / wall:.0f} adds/s", flush=True)
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
