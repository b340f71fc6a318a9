"""The explorer's pages on a registry of 100,000 records: ``python -m bench explorer`` (not in ``make bench``).

Builds the lineage graph of ``bench registry`` (RocksDB, the real admission hook; each checkpoint has
a parent among the 30 before it, one in ten two) plus a base model with 5,000 direct fine-tunes, then
renders each page kind through the router (no sockets) for random records and prints wall-clock
medians and p99s, with the ratio to a bare ``RegistryReader.by_id`` point read measured in the same
run. Every page must stay bounded: no page's cost may grow with the log.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from unittest import mock

from bench.registry import Env, _graph, _manifest
from client.core.note import Signer
from client.core.records import ModelCheckpoint, ModelParent, ModelRelation
from ledger.http.router import Request
from ledger.http.site import Site, build_router
from ledger.registry.registry import Submission

POPULAR = 5_000


def _ms(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return sorted(out)


def run(quick: bool) -> None:
    n = 10_000 if quick else 100_000
    runs = 100 if quick else 300
    keep: list[Signer] = []
    generate = Signer.generate

    def kept(name: str) -> Signer:  # bench.registry.Env keeps no handle on its log's signer: note it here
        keep.append(generate(name))
        return keep[-1]

    with mock.patch.object(Signer, "generate", staticmethod(kept)):
        env = Env()
    try:
        rng = random.Random(16)
        began = time.perf_counter()
        env.submit_all(_graph(env, n, 30, rng, "g"), in_flight=1)
        encoded, digest = _manifest(0, 1)
        root = env.sign(ModelCheckpoint("popular-base", "", 0, digest))
        env.submit_all([Submission(root.entry, encoded)])
        fans = [env.sign(ModelCheckpoint("popular-ft", "", i, digest, "safetensors", (),
                                         (ModelParent(root.id, ModelRelation.FINE_TUNE),)))
                for i in range(POPULAR)]
        env.submit_all([Submission(s.entry) for s in fans])
        size = env.log.size
        print(f"built {size:,} records in {time.perf_counter() - began:.1f} s", flush=True)
        reader = env.registry.reader
        site = Site(env.log, reader, keep[0].verifier().text(), "bench/registry")
        router = build_router(site, ("ledger.http.explorer",))

        def page(target: Callable[[], str]) -> Callable[[], object]:
            def go() -> None:
                resp = router.dispatch(Request.from_target("GET", target()))
                assert resp.status == 200, (target(), resp.status, resp.body[:200])
            return go

        def rid() -> str:
            return reader.at(rng.randrange(2, size)).id.hex()

        cases: list[tuple[str, Callable[[], object]]] = [
            ("by_id point read (baseline)", lambda: reader.by_id(bytes.fromhex(rid()))),
            ("/ (recent records, checkpoint)", page(lambda: "/")),
            ("/?before=<random> (older page)", page(lambda: f"/?before={rng.randrange(30, size)}")),
            ("/record/<random id>", page(lambda: f"/record/{rid()}")),
            ("/record/<random id>/lineage.svg", page(lambda: f"/record/{rid()}/lineage.svg")),
            (f"/record/<base with {POPULAR:,} children>", page(lambda: f"/record/{root.id.hex()}")),
            ("/search?q=g@<random step>", page(lambda: f"/search?q=g@{rng.randrange(1, n)}")),
            (f"/search?q=g (a name with {n:,} versions)", page(lambda: "/search?q=g")),
            ("/search?q=<10-hex id prefix>", page(lambda: f"/search?q={rid()[:10]}")),
            ("/search?q=blake3:<manifest of every record>", page(lambda: f"/search?q=blake3:{digest.hex()}")),
            (f"/signer/lab ({size:,} records signed)", page(lambda: "/signer/lab")),
            ("/log", page(lambda: "/log")),
        ]
        for _, fn in cases:  # warm the record cache and the templates once
            fn()
        base: float | None = None
        for label, fn in cases:
            lat = _ms(fn, runs)
            med, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            base = base or med
            print(f"{label:48s} median {med:7.2f} ms  p99 {p99:7.2f} ms  ({med / base:6.1f}x the point read)",
                  flush=True)
    finally:
        env.close()

