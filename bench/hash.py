"""Benchmarks of manifests (issue 3): ``provenance hash`` against b3sum and model-signing.

Figures, all from one run on one machine, data cached under bench/out/hash/:

* passes (issue 12, point 6): a 4 GiB safetensors checkpoint (32 F32 tensors of 128 MiB;
  quick: 256 MiB) and a plain file of the same size, in page cache, hashed in this process
  by ``hash_path`` (2 threads; no interpreter start-up) and by ``b3sum --num-threads 2``,
  interleaved, median of N rounds: the overall ratio of throughput (b3sum time / ours) and
  the ratio per BLAKE3 pass (passes x b3sum time / ours). Passes: a tiled safetensors file
  in manifest v2 costs 2 (whole file, header + tensors), a plain file 2 (whole file, chunks),
  the same safetensors in v1 3 (whole file, chunks, tensors). Targets: per pass >= 0.9,
  overall >= 0.45 for the plain file and the v2 safetensors file;
* the same checkpoint through the CLI: wall time of ``b3sum --num-threads 2``, ``provenance hash --threads 2``,
  the same without tensors, and ``model-signing`` file serialization in BLAKE3 and in its default SHA-256 mode,
  each as a fresh process (start-up included), interleaved, median of N runs; ratios of throughput;
* peak memory while hashing a sparse 8.5 GiB safetensors file (quick: 1 GiB),
  in a fresh process: VmHWM from /proc/self/status (= ru_maxrss: the peak
  resident set, *including* mapped file pages; large files are mapped 64 MiB at
  a time) and the peak of RssAnon (anonymous memory only) sampled every 5 ms;
* 200,000 small files (0-2 KiB; quick: 5,000): ``provenance hash`` against
  ``find | xargs b3sum --num-threads 2`` and against two parallel b3sum processes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "hash"
PY = sys.executable
THREADS = 2
TENSOR_BYTES = 128 << 20


def _write_safetensors(path: Path, count: int, tensor_bytes: int, *, sparse: bool) -> None:
    """``count`` F32 tensors of ``tensor_bytes`` each; random data unless ``sparse`` (zeros, no disk)."""
    elems = tensor_bytes // 4
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(count):
        header[f"model.layers.{i}.weight"] = {
            "dtype": "F32", "shape": [elems], "data_offsets": [i * tensor_bytes, (i + 1) * tensor_bytes]
        }
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        if sparse:
            f.truncate(8 + len(h) + count * tensor_bytes)
        else:
            rng = random.Random(1)
            block = rng.randbytes(16 << 20)
            for i in range(count * tensor_bytes // len(block)):
                f.write(i.to_bytes(8, "little") + block[8:])
    tmp.rename(path)


def _cached(path: Path, make: Callable[[], None]) -> Path:
    if not path.exists():
        print(f"  generating {path.relative_to(REPO)} ...", flush=True)
        make()
    return path


def _small_files(root: Path, count: int) -> Path:
    marker = root / ".done"
    if marker.exists():
        return root
    print(f"  generating {count} small files in {root.relative_to(REPO)} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(2)
    blob = rng.randbytes(4096)
    for i in range(count):
        d = root / f"shard-{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        n = rng.randrange(0, 2049)
        off = rng.randrange(0, 2048)
        (d / f"sample-{i:07d}.bin").write_bytes(i.to_bytes(8, "little") + blob[off : off + n])
    marker.write_text("ok")
    return root


def _wall(cmd: list[str] | str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def _ms_cmd(folder: Path, algorithm: str) -> list[str]:
    code = (
        "import sys; from model_signing import hashing; "
        f"hashing.Config().use_file_serialization(hashing_algorithm='{algorithm}').hash(sys.argv[1])"
    )
    return [PY, "-c", code, str(folder)]


def _has_model_signing() -> bool:
    return subprocess.run([PY, "-c", "import model_signing.hashing"], capture_output=True).returncode == 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _interleaved(cmds: dict[str, list[str] | str], runs: int) -> dict[str, float]:
    """Median wall time of each command, run round-robin ``runs`` times (after one warm-up round)."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for c in cmds.values():
        _wall(c)
    for _ in range(runs):
        for k, c in cmds.items():
            times[k].append(_wall(c))
    print(f"    (load average after: {_load()}; the 2 cores are shared, so wall times are noisy)")
    for k, ts in times.items():
        print(f"    {k:<34} median {statistics.median(ts):7.3f} s   runs {[round(t, 3) for t in ts]}", flush=True)
    return {k: statistics.median(ts) for k, ts in times.items()}


def _write_plain(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    block = random.Random(3).randbytes(16 << 20)
    with open(tmp, "wb") as f:
        for i in range(size // len(block)):
            f.write(i.to_bytes(8, "little") + block[8:])
    tmp.rename(path)


def _passes(quick: bool) -> None:
    """Ours in-process against b3sum, per BLAKE3 pass and overall (module docstring)."""
    from client.hashing import HashConfig, hash_path

    count = 2 if quick else 32
    folder = OUT / ("model-quick" if quick else "model")
    st = _cached(folder / "model.safetensors", lambda: _write_safetensors(
        folder / "model.safetensors", count, TENSOR_BYTES, sparse=False))
    plain = _cached(OUT / f"plain-{count}.bin", lambda: _write_plain(OUT / f"plain-{count}.bin", count * TENSOR_BYTES))
    m = hash_path(str(st), HashConfig(threads=THREADS))
    assert m.files[0].header is not None, "the bench checkpoint must be tiled"
    # name: (file, config, BLAKE3 passes, target overall ratio or None)
    cases = {
        "safetensors v2 (tiled)": (st, HashConfig(threads=THREADS), 2, 0.45),
        "plain file": (plain, HashConfig(threads=THREADS), 2, 0.45),
        "safetensors v1 (chunks+tensors)": (st, HashConfig(threads=THREADS, version=1), 3, None),
    }
    rounds = 3 if quick else 7
    b3: dict[Path, list[float]] = {st: [], plain: []}
    ours: dict[str, list[float]] = {k: [] for k in cases}
    for path in b3:  # warm the page cache and both code paths
        _wall(["b3sum", "--num-threads", str(THREADS), str(path)])
    for path, cfg, _, _ in cases.values():
        hash_path(str(path), cfg)
    for _ in range(rounds):
        for name, (path, cfg, _, _) in cases.items():
            b3[path].append(_wall(["b3sum", "--num-threads", str(THREADS), str(path)]))
            start = time.perf_counter()
            hash_path(str(path), cfg)
            ours[name].append(time.perf_counter() - start)
    print(f"  {count * TENSOR_BYTES / 2**30:.2f} GiB each, in page cache, {rounds} interleaved rounds "
          f"(load average after: {_load()}; 2 shared cores: see the spread of the runs)")
    for path, ts in b3.items():
        print(f"    b3sum --num-threads 2 {path.name:<24} median {statistics.median(ts):6.3f} s  "
              f"runs {[round(t, 3) for t in ts]}")
    for name, (path, _, passes, target) in cases.items():
        ts, ref = ours[name], statistics.median(b3[path])
        med = statistics.median(ts)
        overall, per_pass = ref / med, passes * ref / med
        goal = (f"targets: per pass >= 0.90 {'met' if per_pass >= 0.9 else 'NOT met'}, overall >= {target:.2f} "
                f"{'met' if overall >= target else 'NOT met'}") if target is not None else "for comparison (v1)"
        print(f"    ours {name:<32} median {med:6.3f} s  runs {[round(t, 3) for t in ts]}")
        print(f"      {passes} passes: overall {overall:.2f}x b3sum, per pass {per_pass:.2f}x  ({goal})", flush=True)


def _throughput(quick: bool) -> None:
    count = 2 if quick else 32
    folder = OUT / ("model-quick" if quick else "model")
    path = _cached(folder / "model.safetensors", lambda: _write_safetensors(
        folder / "model.safetensors", count, TENSOR_BYTES, sparse=False))
    size = path.stat().st_size
    print(f"  checkpoint: {path.relative_to(REPO)}, {size / 2**30:.2f} GiB, {count} tensors, in page cache", flush=True)
    cmds: dict[str, list[str] | str] = {
        "b3sum --num-threads 2": ["b3sum", "--num-threads", str(THREADS), str(path)],
        "provenance hash (chunks+tensors)": [
            PY, "-m", "client.cli", "hash", "--threads", str(THREADS), "--no-progress", str(folder)],
        "provenance hash --no-tensors": [
            PY, "-m", "client.cli", "hash", "--threads", str(THREADS), "--no-progress", "--no-tensors", str(folder)],
    }
    if _has_model_signing():
        cmds["model-signing blake3"] = _ms_cmd(folder, "blake3")
        cmds["model-signing sha256 (default)"] = _ms_cmd(folder, "sha256")
    else:
        print("    model-signing not installed (pip install model-signing): its figures not measured")
    med = _interleaved(cmds, 3 if quick else 5)
    ours = med["provenance hash (chunks+tensors)"]
    gbs = {k: size / v / 1e9 for k, v in med.items()}
    for k, v in gbs.items():
        print(f"    {k:<34} {v:6.2f} GB/s")
    b3 = med["b3sum --num-threads 2"]
    print(f"  ratio provenance/b3sum throughput: {b3 / ours:.2f} (with start-up; in-process figures in [1])")
    print(f"  ratio --no-tensors/b3sum:          {b3 / med['provenance hash --no-tensors']:.2f}")
    if "model-signing blake3" in med:
        ms3, ms256 = med["model-signing blake3"], med["model-signing sha256 (default)"]
        print(f"  ratio provenance/model-signing blake3: {ms3 / ours:.2f} (target >= 0.9)")
        print(f"  ratio provenance/model-signing sha256: {ms256 / ours:.2f} (target >= 3)")


RSS_CHILD = """
import sys, threading, time, resource
peak = [0]
stop = threading.Event()
def anon():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    return 0
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
from client.hashing import HashConfig, hash_path
start = time.perf_counter()
m = hash_path(sys.argv[1], HashConfig(threads=int(sys.argv[2])))
took = time.perf_counter() - start
stop.set(); t.join()
peak[0] = max(peak[0], anon())
hwm = 0
with open('/proc/self/status') as f:
    for line in f:
        if line.startswith('VmHWM:'):
            hwm = int(line.split()[1])
f = m.files[0]
print(peak[0], hwm, took, len(f.chunks), len(f.tensors))
"""


def _peak_rss(quick: bool) -> None:
    count = 2 if quick else 17
    tensor = 512 << 20
    path = _cached(OUT / f"sparse-{count}.safetensors", lambda: _write_safetensors(
        OUT / f"sparse-{count}.safetensors", count, tensor, sparse=True))
    size = path.stat().st_size
    out = subprocess.run([PY, "-c", RSS_CHILD, str(path), str(THREADS)], check=True, capture_output=True,
                         text=True, cwd=REPO).stdout.split()
    anon_kb, hwm_kb, took, chunks, tensors = int(out[0]), int(out[1]), float(out[2]), out[3], out[4]
    print(f"  file: {path.relative_to(REPO)}, {size / 1e9:.2f} GB (sparse: zeros, read through the page cache), "
          f"{chunks} chunks, {tensors} tensors, {took:.2f} s")
    print(f"    peak RSS     {hwm_kb / 1024:7.1f} MiB   (VmHWM, includes mapped file pages; target < 256 MB)")
    print(f"    peak RssAnon {anon_kb / 1024:7.1f} MiB   (anonymous memory only, sampled every 5 ms)")


def _small(quick: bool) -> None:
    count = 5000 if quick else 200_000
    root = _small_files(OUT / f"small-{count}", count)
    total = sum(p.stat().st_size for p in root.rglob("*.bin"))
    print(f"  {count} files, {total / 1e6:.1f} MB, in page cache", flush=True)
    cmds: dict[str, list[str] | str] = {
        "find | xargs b3sum": f"find {root} -type f -name '*.bin' -print0 | xargs -0 b3sum --num-threads {THREADS}",
        "find | xargs -P 2 b3sum": (
            f"find {root} -type f -name '*.bin' -print0 | xargs -0 -P {THREADS} -n 2000 b3sum --num-threads 1"),
        "provenance hash": [PY, "-m", "client.cli", "hash", "--threads", str(THREADS), "--no-progress", str(root)],
    }
    med = _interleaved(cmds, 3)
    for k, v in med.items():
        print(f"    {k:<34} {count / v:10.0f} files/s")
    ours = med["provenance hash"]
    print(f"  ratio provenance/b3sum rate:        {med['find | xargs b3sum'] / ours:.2f} (target >= 0.5)")
    print(f"  ratio provenance/(2 x b3sum) rate:  {med['find | xargs -P 2 b3sum'] / ours:.2f}")


def run(quick: bool) -> None:
    if shutil.which("b3sum") is None:
        print("b3sum is not installed (apt-get install b3sum): hash benchmark skipped")
        return
    version = subprocess.run(["b3sum", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"threads: {THREADS}; {version}; load average at start: {_load()}")
    startup = statistics.median(_wall([PY, "-m", "client.cli", "hash", "--help"]) for _ in range(3))
    print(f"process start-up of `python -m client.cli hash --help`: {startup:.2f} s (included in every figure below"
          f"{'; --quick sizes are so small that it dominates: a smoke test only' if quick else ''})")
    print("\n[1] BLAKE3 passes against b3sum, in-process (issue 12: per pass >= 0.9x, overall >= 0.45x)", flush=True)
    _passes(quick)
    print("\n[1b] throughput through the CLI, one cached checkpoint (start-up included)", flush=True)
    _throughput(quick)
    print("\n[2] peak memory, file larger than 8 GB" if not quick else "\n[2] peak memory (quick: 1 GiB)", flush=True)
    _peak_rss(quick)
    print("\n[3] many small files", flush=True)
    _small(quick)


if __name__ == "__main__":
    run("--quick" in sys.argv)
