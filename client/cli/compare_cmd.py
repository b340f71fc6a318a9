"""Descent commands: ``compare A B`` and ``fingerprint MODEL`` (offline).

Thin: read models or fingerprints, call :mod:`client.core.descent`, print. A fingerprint file
(``provenance fingerprint`` output, starting with ``PLFP``) is accepted wherever a model is.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from client.cli import _compare_attest
from client.errors import InvalidInputError

log = logging.getLogger(__name__)

FINGERPRINT_SUFFIX = ".plfp"


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="does one model descend from another? (offline)",
                       description="Compare two models (or fingerprints): identical, related, independent "
                                   "or inconclusive, with the p-value and the evidence.")
    p.add_argument("a", type=Path, help="model file/folder or fingerprint (A)")
    p.add_argument("b", type=Path, help="model file/folder or fingerprint (B)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    _compare_attest.add_flags(p)
    p.set_defaults(func=_compare)

    f = sub.add_parser("fingerprint", help="write a compact fingerprint of a model (offline)",
                       description="Write the model's fingerprint: tensor digests and permutation-invariant "
                                   "sketches from which `compare` runs without the weights.")
    f.add_argument("model", type=Path, help="model file or folder")
    f.add_argument("-o", "--output", type=Path, help=f"output file (default: MODEL name + {FINGERPRINT_SUFFIX})")
    f.add_argument("--json", action="store_true", help="print the summary as JSON")
    f.set_defaults(func=_fingerprint)


def _single_threaded_blas() -> None:
    """One BLAS thread per sketching thread, if numpy is not loaded yet (the variables are read when
    it loads; a value the user set is kept). The models are sketched in threads of their own and the
    products are small (matrix-vector, 512 x 512 Grams): BLAS threads on top only oversubscribe the
    cores, and their spinning cost 3-4x the CPU time in bench compare (36 s against 9.5 s)."""
    if "numpy" not in sys.modules:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


def load_fingerprint(path: Path) -> Any:
    """A Fingerprint from a fingerprint file, or computed from a model file or folder."""
    from client.core.descent import fingerprint as fpmod
    from client.formats import open_model

    if path.is_file():
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic == fpmod.MAGIC:
            return fpmod.decode(path.read_bytes(), source=str(path))
    return fpmod.build(open_model(path).tensors(), source=str(path), reread=lambda: open_model(path).tensors())


def _compare(args: argparse.Namespace) -> int:
    _single_threaded_blas()
    from client.core.descent.compare import AXES, compare
    from client.core.descent.fingerprint import require_current

    if not 0 < args.alpha < 1:
        raise InvalidInputError("--alpha must be between 0 and 1")
    # The two models are read and sketched in parallel (numpy releases the GIL in the heavy
    # steps); each reader still holds one tensor at a time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        fa, fb = pool.submit(load_fingerprint, args.a), pool.submit(load_fingerprint, args.b)
        a, b = fa.result(), fb.result()
    require_current(a, str(args.a))
    require_current(b, str(args.b))
    # Large comparisons screen and test on every core (numpy and the assignment solver release the GIL).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=cores, thread_name_prefix="compare") as pool:
        result = compare(a, b, alpha=args.alpha, parallel=(lambda fn, items: list(pool.map(fn, items)), cores))
    attested = None
    if args.attest:
        attested, result = _compare_attest.attest(args, result)
    if args.json:
        out = result.to_json()
        out["a"], out["b"] = str(args.a), str(args.b)
        if attested is not None:
            out["attestation"] = attested
        sys.stdout.write(json.dumps(out, default=_json_default) + "\n")
        return 0
    w = sys.stdout.write
    w(f"verdict: {result.verdict} ({result.basis} evidence)\n" if result.basis != "none"
      else f"verdict: {result.verdict}\n")
    w(f"p-value: {_fmt_p(result.log10_p)} (alpha {result.alpha}; Bonferroni over {result.candidates} candidate "
      f"tensor pairs, {result.tested} tested)\n")
    w(f"byte-identical: {result.shared_a_in_b:.1%} of A's parameters are in B, "
      f"{result.shared_b_in_a:.1%} of B's are in A "
      f"(informative tensors only: {result.informative_shared_a_in_b:.1%} / "
      f"{result.informative_shared_b_in_a:.1%})\n")
    if result.evidence:
        w("strongest evidence:\n")
    for e in result.evidence:
        detail = ""
        parts = [f"{lbl.replace('_', ' ')} {r.agreements}/{r.matched} agree"
                 for lbl, r in zip(AXES, e.axes, strict=False) if r is not None]
        if parts:
            detail = " (" + ", ".join(parts) + f"), p {_fmt_p(e.log10_p)}"
        w(f"  A {e.a}  ~  B {e.b}: {e.how}{detail}\n")
    if result.set_aside:
        w("set aside (produced by a formula, never evidence): "
          + ", ".join(f"{s.model.upper()} {s.tensor} ({s.reason})" for s in result.set_aside) + "\n")
    if result.extent is not None:
        _print_extent(result.extent)
    w("direction:\n" + "".join(f"  {line}\n" for line in result.direction.lines()))
    if attested is not None:
        w(f"attested: {attested['claim']} {attested['subject'][:12]} -> {attested['object'][:12]}, record "
          f"{attested['id']} at index {attested['index']} (evidence {attested['evidence']})\n")
    return 0


def _print_extent(ex: Any) -> None:
    """One line per layer group of A: shared or not, where in B, the smallest per-tensor p-value."""
    c = ex.counts()
    sys.stdout.write(f"extent: {c['shared']} of {c['informative']} informative tensors of A shared "
                     f"({c['layers_shared']} of {c['layers']} layers; Holm at alpha {ex.alpha}):\n")
    for layer in ex.layers:
        n = sum(t.shared for t in layer.tensors)
        where = ""
        if layer.shared:
            bs = list(layer.b_layers)
            where = " -> B " + ", ".join(bs[:4]) + (f" (+{len(bs) - 4})" if len(bs) > 4 else "")
        sys.stdout.write(f"  {layer.layer}: {'shared' if layer.shared else 'not shared'} ({n}/{len(layer.tensors)})"
                         f"{where}, min p {_fmt_p(layer.min_log10_p)}\n")


def _fingerprint(args: argparse.Namespace) -> int:
    _single_threaded_blas()
    fp = load_fingerprint(args.model)
    data = fp.encode()
    out = args.output or Path(args.model.name + FINGERPRINT_SUFFIX)
    out.write_bytes(data)
    model_bytes = sum(e.numel * _itemsize(e.dtype) for e in fp.entries)
    summary = {"fingerprint": str(out), "digest": fp.digest(), "bytes": len(data), "tensors": len(fp.entries),
               "sketched": sum(1 for e in fp.entries if e.sketch is not None),
               "formulaic": sum(1 for e in fp.entries if e.formula), "derived": len(fp.derived), "parameters": fp.numel,
               "model_bytes": model_bytes}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        ratio = len(data) / model_bytes if model_bytes else 0.0
        sys.stdout.write(f"{out}: {fp.digest()}\n{len(data)} bytes ({ratio:.2%} of {model_bytes} bytes of weights), "
                         f"{summary['tensors']} tensors, {summary['sketched']} sketched\n")
    return 0


def _itemsize(dtype: str) -> int:
    import numpy as np

    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 4


def _fmt_p(log10_p: float) -> str:
    if log10_p == -math.inf:
        return "0"
    if log10_p > -4:
        return f"{10 ** log10_p:.4g}"
    exp = math.floor(log10_p)
    return f"{10 ** (log10_p - exp):.2f}e{exp}"


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
