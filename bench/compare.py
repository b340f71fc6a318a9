"""Descent benchmark: compare two 1 GiB fp32 models, fingerprint size, match against 10,000.

Model A: 16 float32 matrices of 4096 x 4096 (1 GiB) in one safetensors file. Model B: A with
every matrix's rows and columns permuted and 1% noise added, written as another file. Each
comparison runs ``provenance compare A B --json`` in a fresh process so its peak RSS is its own.
The registry holds A's fingerprint among 9,999 synthetic entries (random screening signatures, as
independent models give, and random features of the same shapes when one is loaded for the full
test); the suspect is B's fingerprint. ``--quick`` uses
64 MiB models and 1,000 registered fingerprints.
"""

from __future__ import annotations

import json
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.core.descent.aligned import ALIGNED_DIRS, ALIGNED_UNITS, AlignedAxis
from client.core.descent.fingerprint import Fingerprint, TensorEntry
from client.core.descent.gram import GRAM_UNITS
from client.core.descent.index import SIG_DIM, FingerprintIndex
from client.core.descent.sketch import FREQS, MAX_UNITS, AxisSketch

RUNS = 3


def _tensors(seed: int, n: int, dim: int, derived: bool) -> Iterator[tuple[str, np.ndarray]]:
    for i in range(n):
        r = np.random.default_rng([seed, i])
        w = (r.standard_normal((dim, dim), dtype=np.float32) / np.float32(np.sqrt(dim)))
        if derived:
            d = np.random.default_rng([seed, i, 1])
            w += np.float32(0.01) * w.std() * d.standard_normal((dim, dim), dtype=np.float32)
            w = w[d.permutation(dim)][:, d.permutation(dim)]
            yield f"renamed.{i}", np.ascontiguousarray(w)
        else:
            yield f"layers.{i}.weight", w


def _write(path: Path, seed: int, n: int, dim: int, derived: bool) -> None:
    """Stream a safetensors file of n dim x dim float32 tensors, one tensor in memory at a time."""
    names = [f"renamed.{i}" if derived else f"layers.{i}.weight" for i in range(n)]
    size = dim * dim * 4
    header = {nm: {"dtype": "F32", "shape": [dim, dim], "data_offsets": [i * size, (i + 1) * size]}
              for i, nm in enumerate(names)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _name, w in _tensors(seed, n, dim, derived):
            f.write(w.tobytes())


@dataclass(frozen=True)
class Run:
    """One ``provenance compare A B --json`` in a fresh process: its figures and its answer."""

    wall: float  # seconds, from before ``main`` to after it (imports of the CLI included)
    cpu: float  # user + sys seconds of the whole process
    rss: float  # peak resident set, MiB
    verdict: str
    basis: str
    log10_p: float | None


def compare_once(a: Path, b: Path) -> Run:
    code = (
        "import json, resource, sys, time\n"
        "t = time.perf_counter()\n"
        "from client.cli import main\n"
        "main(['compare', sys.argv[1], sys.argv[2], '--json'])\n"
        "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'cpu': ru.ru_utime + ru.ru_stime,"
        " 'rss': ru.ru_maxrss / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(a), str(b)], check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    answer = json.loads(lines[0])
    figures = json.loads(lines[-1])
    return Run(figures["s"], figures["cpu"], figures["rss"], answer["verdict"], answer["basis"], answer["log10_p"])


def _synthetic(key: str, shapes: list[tuple[int, int]]) -> Fingerprint:
    r = np.random.default_rng(abs(hash(key)) % (1 << 32))
    entries = []
    for i, (m, n) in enumerate(shapes):
        def axis(length: int, limit: int = MAX_UNITS) -> AxisSketch:
            k = min(length, limit)
            return AxisSketch(length, r.standard_normal((k, FREQS)).astype(np.float16).astype(np.float32))
        def aligned(length: int) -> AlignedAxis:
            f = r.standard_normal((min(length, ALIGNED_UNITS), ALIGNED_DIRS))
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            return AlignedAxis(length, f.astype(np.float16).astype(np.float32))
        entries.append(TensorEntry(f"t{i:03d}", "float32", (m, n), r.bytes(32), (axis(m), axis(n)),
                                   (axis(m, GRAM_UNITS), axis(n, GRAM_UNITS)),
                                   moments=(float(np.float32(r.uniform(0.01, 0.05))),
                                            float(np.float32(r.normal(0, 0.1)))),
                                   aligned=(aligned(m), aligned(n))))
    return Fingerprint(tuple(entries))


def run(quick: bool) -> None:
    n, dim = (4, 2048) if quick else (16, 4096)
    registry = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        a, b = Path(tmp) / "a.safetensors", Path(tmp) / "b.safetensors"
        t = time.perf_counter()
        _write(a, 1, n, dim, derived=False)
        _write(b, 1, n, dim, derived=True)
        gib = a.stat().st_size / 2**30
        print(f"models: 2 x {n} float32 matrices {dim}x{dim} ({gib:.2f} GiB each, B = A permuted + 1% noise); "
              f"written in {time.perf_counter() - t:.1f} s", flush=True)
        runs = [compare_once(a, b) for _ in range(RUNS)]
        secs = [r.wall for r in runs]
        rss = [r.rss for r in runs]
        cpus = [r.cpu for r in runs]
        print(f"compare A B: median {statistics.median(secs):.1f} s wall (runs {', '.join(f'{s:.1f}' for s in secs)}), "
              f"{statistics.median(cpus):.1f} s CPU (runs {', '.join(f'{s:.1f}' for s in cpus)}; user+sys, whole "
              f"process incl. imports; the machine is shared, so wall time varies with load), peak RSS median "
              f"{statistics.median(rss):.0f} MiB (max {max(rss):.0f}), verdict {runs[0].verdict}", flush=True)

        from client.cli.compare_cmd import load_fingerprint

        fa: Fingerprint = load_fingerprint(a)
        fb: Fingerprint = load_fingerprint(b)
        size = len(fa.encode())
        print(f"fingerprint: {size / 2**20:.2f} MiB for {a.stat().st_size / 2**30:.2f} GiB of weights "
              f"({size / a.stat().st_size:.3%}); digest {fa.digest()[:28]}...", flush=True)

    t = time.perf_counter()
    shapes = [(dim, dim)] * n
    index = FingerprintIndex(load=lambda key: fa if key == "ancestor" else _synthetic(key, shapes))
    planted = registry // 2
    r = np.random.default_rng(7)
    for i in range(registry):
        if i == planted:
            index.add("ancestor", fa)
            continue
        sigs = r.standard_normal((2, n, SIG_DIM)).astype(np.float32)
        sigs /= np.linalg.norm(sigs, axis=2, keepdims=True)
        index.add_signatures(f"reg-{i}", [r.bytes(32) for _ in range(n)], list(sigs[0]), list(sigs[1]))
    print(f"registry: {registry} fingerprints ({n} sketched {dim}x{dim} tensors each; synthetic signatures as "
          f"stored at registration, fingerprints loaded on demand) indexed in {time.perf_counter() - t:.1f} s; "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        matches = index.match(fb)
        times.append(time.perf_counter() - t)
    best = matches[0]
    print(f"match suspect against {registry}: median {statistics.median(times):.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in times)}); best {best.key} significant={best.significant} "
          f"adjusted log10 p {best.adjusted_log10_p:.0f}; others significant: "
          f"{sum(m.significant for m in matches[1:])} of {len(matches) - 1}", flush=True)
    _server_side(fa, fb, n, registry)


def _server_side(fa: Fingerprint, fb: Fingerprint, n: int, registry: int) -> None:
    """The Match handler as the server runs it (minus the network): index built lazily from stored
    signatures, the ancestor's fingerprint read from the store and decoded, protobuf answer."""
    from bench._match_store import SyntheticStore
    from client._pb.provenance.registry.v1 import registry_pb2 as pb
    from ledger.grpc.match_service import match
    from ledger.registry.fingerprints import pack_signatures
    from ledger.registry.matching import Matcher
    from ledger.registry.queries import RegistryReader

    store = SyntheticStore()
    planted = registry // 2
    r = np.random.default_rng(8)
    for i in range(registry):
        if i == planted:
            store.publish_fingerprint(i, fa)
            continue
        sigs = r.standard_normal((2, n, SIG_DIM)).astype(np.float32)
        sigs /= np.linalg.norm(sigs, axis=2, keepdims=True)
        store.publish(i, r.bytes(32), pack_signatures([r.bytes(32) for _ in range(n)], list(sigs[0]), list(sigs[1])))
    matcher = Matcher(store, RegistryReader(store))
    req = pb.MatchRequest(fingerprint=fb.encode())
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        resp = match(matcher, req)
        times.append(time.perf_counter() - t)
    top = resp.related[0]
    print(f"server-side Match against {registry} stored fingerprints: first call (loads the index from stored "
          f"signatures) {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s; best index "
          f"{top.record.index} (planted at {planted}) significant={top.significant}; process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)
