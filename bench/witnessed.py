"""Waited adds through a witnessed ``serve``: the log's signature alone vs a quorum of two witnesses.

``python -m bench witnessed`` (not in the default set: it needs aics-witness, see tests/references.py).
One ``provenance serve --witness-policy`` with two local witnesses at quorum 2 (aics-witness, an
independent implementation, and ours); 100 concurrent writers each make ``PER`` single-entry adds
waiting for their checkpoint, alternating rounds of ``wait_for_checkpoint`` (the log's signature) and
``wait_for_cosignatures`` (the quorum's), so both are measured in the same run. Prints p50 and p99 per
round and the ratio of the medians (docs/guarantees.md, section 8).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from client.remote import LogClient
from tests.witnessing.conftest import Witnessed, WitnessPool

WRITERS = 100


def _round(address: str, cosigned: bool, per: int, tag: str) -> list[float]:
    lat: list[float] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        with LogClient(address) as c:
            for j in range(per):
                t0 = time.perf_counter()
                c.add_entries([f"{tag} {i} {j} {time.time_ns()}".encode()], wait_for_checkpoint=not cosigned,
                              wait_for_cosignatures=cosigned)
                with lock:
                    lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    print(f"  {tag}: n={len(lat)} p50={1000 * statistics.median(lat):.1f} ms "
          f"p99={1000 * lat[max(0, int(0.99 * len(lat)) - 1)]:.1f} ms, {len(lat) / wall:.0f} adds/s", flush=True)
    return lat


def run(quick: bool) -> None:
    per = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="bench-witnessed-") as tmp:
        root = Path(tmp)
        pool = WitnessPool(root / "witnesses")
        (root / "serve").mkdir()
        served = Witnessed(root / "serve", pool)
        try:
            print(f"{WRITERS} writers x {per} waited adds per round; witnesses: "
                  f"{', '.join(w.name for w in pool.pair)} (quorum 2)")
            _round(served.server.address, False, per, "warm-up")
            signed, cosigned = [], []
            for k in (1, 2):
                signed += _round(served.server.address, False, per, f"log-signed {k}")
                cosigned += _round(served.server.address, True, per, f"cosigned {k}")
            print(f"  p50 cosigned / log-signed: {statistics.median(cosigned) / statistics.median(signed):.2f}")
        finally:
            served.server.kill()
            pool.close()
