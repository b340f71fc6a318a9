"""Descent benchmark at 7B scale: compare two Llama-7B-shaped bfloat16 models (about 13.5 GB each).

Model A: the Llama-7B shapes (``embed_tokens`` and ``lm_head`` 32000 x 4096, 32 layers of q, k, v, o
4096 x 4096, gate and up 11008 x 4096, down 4096 x 11008, two RMSNorm gains per layer and a final
one), Gaussian entries of standard deviation 1/sqrt(fan-in), stored as bfloat16 in one safetensors
file. Model B: A with its hidden units permuted the way a copier can without changing the function
(one permutation of the residual stream applied to every matrix that reads or writes it and to the
norm gains, one permutation of each layer's MLP units), 1% Gaussian noise added to every tensor,
re-rounded to bfloat16. Model C: drawn
independently of A the same way (the worst case: no early stop, every tensor's best-screened
partner gets the full test). The files are written into a temporary directory under /tmp,
streaming one tensor at a time (about 40 GB) and deleted at the end (refused if the disk has
less free than that plus 1 GiB). ``provenance compare A B --json`` and ``A C`` then
each run in a fresh process (its peak RSS is its own).
Targets (issue 12): under 5 minutes wall and 6 GiB peak RSS. ``--quick``: 2 layers.

Not in ``make bench`` (it takes minutes and 40 GB of disk): ``make bench-7b``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from bench.compare import Run, compare_once

HIDDEN, FF, VOCAB = 4096, 11008, 32000
NOISE = 0.01
RUNS = int(os.environ.get("BENCH_7B_RUNS", "1"))  # each run reads 27 GB and takes minutes

# (name, shape, which axes carry the residual stream "h" or the layer's MLP units "f")
Spec = tuple[str, tuple[int, ...], tuple[str, ...]]


def _specs(layers: int) -> list[Spec]:
    out: list[Spec] = [("model.embed_tokens.weight", (VOCAB, HIDDEN), ("", "h"))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(p + f"self_attn.{x}_proj.weight", (HIDDEN, HIDDEN), ("", "h")) for x in "qkv"]
        out.append((p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN), ("h", "")))
        out += [(p + f"mlp.{x}_proj.weight", (FF, HIDDEN), ("f", "h")) for x in ("gate", "up")]
        out.append((p + "mlp.down_proj.weight", (HIDDEN, FF), ("h", "f")))
        out += [(p + f"{x}_layernorm.weight", (HIDDEN,), ("h",)) for x in ("input", "post_attention")]
    out.append(("model.norm.weight", (HIDDEN,), ("h",)))
    out.append(("lm_head.weight", (VOCAB, HIDDEN), ("", "h")))
    return out


def _bf16(x: np.ndarray) -> bytes:
    """float32 to bfloat16 bytes, rounding to nearest even (finite inputs)."""
    bits = x.astype(np.float32, copy=False).view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    return rounded.astype("<u2").tobytes()


def _draw(seed: int, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor of a fresh model: norm gains near 1, matrices Gaussian of std 1/sqrt(fan-in)."""
    r = np.random.default_rng([seed, index])
    if len(shape) == 1:
        return np.float32(1) + np.float32(0.02) * r.standard_normal(shape, dtype=np.float32)
    return r.standard_normal(shape, dtype=np.float32) * np.float32(1 / np.sqrt(shape[1]))


def _triple(index: int, spec: Spec, perm_h: np.ndarray, perm_f: dict[str, np.ndarray]) -> tuple[bytes, ...]:
    """A's, B's and C's bfloat16 bytes of one tensor (deterministic in ``index``)."""
    name, shape, axes = spec
    r = np.random.default_rng([7, index, 1])
    a_bytes = _bf16(_draw(7, index, shape))
    a = np.frombuffer(a_bytes, "<u2").astype(np.uint32) << np.uint32(16)  # B derives from A as stored
    b = a.view(np.float32).reshape(shape)
    layer = name.split(".")[2] if name.startswith("model.layers.") else ""
    for axis, kind in enumerate(axes):
        if kind:
            b = np.take(b, perm_h if kind == "h" else perm_f[layer], axis=axis)
    b = b + np.float32(NOISE) * b.std() * r.standard_normal(shape, dtype=np.float32)
    return a_bytes, _bf16(b), _bf16(_draw(8, index, shape))


def _header(specs: list[Spec]) -> bytes:
    header, offset = {}, 0
    for name, shape, _ in specs:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) + (-len(raw) % 8)) + raw + b" " * (-len(raw) % 8)


def _write_models(paths: list[Path], specs: list[Spec]) -> None:
    """Stream A, B and C; two tensors are generated at a time (two threads), written in order."""
    r = np.random.default_rng(11)
    perm_h = r.permutation(HIDDEN)
    layers = sorted({n.split(".")[2] for n, _, _ in specs if n.startswith("model.layers.")}, key=int)
    perm_f = {layer: r.permutation(FF) for layer in layers}
    header = _header(specs)
    with ExitStack() as stack:
        files = [stack.enter_context(open(p, "wb")) for p in paths]
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2))
        for f in files:
            f.write(header)
        pending: deque[Future[tuple[bytes, ...]]] = deque()
        jobs: Iterator[tuple[int, Spec]] = iter(enumerate(specs))
        for i, spec in jobs:
            pending.append(pool.submit(_triple, i, spec, perm_h, perm_f))
            if len(pending) == 2:
                break
        while pending:
            for f, data in zip(files, pending.popleft().result(), strict=True):
                f.write(data)
            nxt = next(jobs, None)
            if nxt is not None:
                pending.append(pool.submit(_triple, nxt[0], nxt[1], perm_h, perm_f))


def _report(label: str, runs: list[Run]) -> None:
    for r in runs:
        print(f"  run: {r.wall:.1f} s wall, {r.cpu:.1f} s CPU, peak RSS {r.rss:.0f} MiB, verdict {r.verdict}",
              flush=True)
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    rss = max(r.rss for r in runs)
    print(f"compare {label} (7B, bf16): median {wall:.1f} s wall, {cpu:.1f} s CPU (user+sys, whole process "
          f"incl. imports), peak RSS {rss:.0f} MiB (max of {len(runs)}), verdict {runs[0].verdict} "
          f"({runs[0].basis}, log10 p {runs[0].log10_p}); targets < 300 s, < 6144 MiB", flush=True)


def run(quick: bool) -> None:
    layers = 2 if quick else 32
    specs = _specs(layers)
    params = sum(int(np.prod(s)) for _, s, _ in specs)
    need = 3 * 2 * params + (1 << 30)
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        print(f"skipped: {need / 2**30:.1f} GiB needed under {tempfile.gettempdir()}, {free / 2**30:.1f} GiB free")
        return
    with tempfile.TemporaryDirectory(prefix="bench-compare7b-") as tmp:
        a, b, c = (Path(tmp) / f"{x}.safetensors" for x in "abc")
        t = time.perf_counter()
        _write_models([a, b, c], specs)
        gb = a.stat().st_size / 1e9
        print(f"models: 3 x Llama-7B shapes, {layers} layers, {params / 1e9:.2f} B parameters in bfloat16 "
              f"({gb:.1f} GB each; B = A with residual and MLP units permuted, {NOISE:.0%} noise, re-rounded; "
              f"C drawn independently); written in {time.perf_counter() - t:.0f} s; the page cache cannot "
              f"hold two files, so part of each run reads from disk", flush=True)
        _report("A B (related)", [compare_once(a, b) for _ in range(RUNS)])
        _report("A C (independent)", [compare_once(a, c) for _ in range(RUNS)])
