"""The aligned-units swap test: power where units were not permuted. Pure: arrays in, numbers out.

The matching tests (:mod:`client.core.descent.stats`) find units by their content, which stops
working once A and B keep only a weak correlation (siblings of one initialisation with heavy
separate drift, an initialisation against its own long training). A derivation that did not
permute the units keeps unit i at index i; this test uses that alignment (docs/descent.md §3.2c).

*Aligned sketch* of one axis of W (m x n), units = rows: ``s = min(m, ALIGNED_UNITS)`` units at
the indices :func:`aligned_units` (a rule of m alone, never of content), each projected on
``ALIGNED_DIRS`` fixed +-1 directions over the other axis, ``f_i = w_i R_n``, with ``R_n``
(:func:`directions`) generated from n alone; each unit's feature vector is centred over its
entries and scaled to unit norm (a unit of norm zero stays zero), then rounded to float16 as
stored. Per-unit positive scaling and casts change nothing; the columns' sketch is that of Wᵀ.

*Test* of one axis pair of equal length: the disjoint pairs of kept units (0, 1), (2, 3), ...;
``D_p = (a_i - a_i')·(b_i - b_i')``; ``T = sum_p D_p``. Under H0 (B independent of A, and B's law
invariant under swapping the two units of any of these pairs: true when B's units on this axis
are exchangeable, as in §3.3) swapping B's units i, i' flips the sign of D_p and nothing else,
so given |D_1|, ..., |D_P| the signs are i.i.d. fair coins and Hoeffding's inequality gives
``P(T >= t) <= exp(-t^2 / (2 sum_p D_p^2))``. That bound (1 when T <= 0) is the axis p-value:
exact, conservative, no simulation; by Cauchy-Schwarz it is never below ``exp(-P/2)``.

A matrix pair's p-value is ``max(p_rows, p_cols)``: valid whenever at least one of the two axes
is exchangeable under H0 (vocabulary rows of embeddings and RoPE-structured rows of Q/K are not;
their other axis is), while a derivation that kept both axes in place is significant on both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

ALIGNED_UNITS = 2048  # at most this many units per axis
ALIGNED_DIRS = 32  # fixed directions per unit (k)
SEED_DOMAIN = 0x504C4131  # "PLA1": R_n comes from PCG64(SeedSequence([SEED_DOMAIN, n]))
CHUNK = 1 << 22  # float64 entries of D held at once in :func:`aligned_tests`

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AlignedAxis:
    """The aligned sketch of one axis: ``features[t]`` describes unit ``aligned_units(length)[t]``."""

    length: int  # units on this axis in the full tensor
    features: F32  # (min(length, ALIGNED_UNITS), ALIGNED_DIRS); rows centred, unit norm or zero


@dataclass(frozen=True)
class AlignedResult:
    """One aligned axis test: ``statistic`` is T / sqrt(sum D_p^2) (0 when all D_p are 0) over
    ``pairs`` unit pairs; the axis p-value is exp(-statistic^2 / 2) when positive, else 1."""

    statistic: float
    pairs: int
    log10_p: float

    def to_json(self) -> dict[str, float | int]:
        return {"statistic": round(self.statistic, 4), "pairs": self.pairs, "bound": 10**self.log10_p,
                "log10_bound": round(self.log10_p, 3)}


def aligned_units(m: int) -> npt.NDArray[np.intp]:
    """The kept unit indices of an axis of length m: all if m <= ALIGNED_UNITS, else
    ``(t (m - 1)) // (ALIGNED_UNITS - 1)`` for t = 0 .. ALIGNED_UNITS - 1 (integer, strictly increasing)."""
    if m <= ALIGNED_UNITS:
        return np.arange(m, dtype=np.intp)
    t = np.arange(ALIGNED_UNITS, dtype=np.int64)
    out: npt.NDArray[np.intp] = ((t * (m - 1)) // (ALIGNED_UNITS - 1)).astype(np.intp)
    return out


@lru_cache(maxsize=64)
def directions(n: int) -> F32:
    """R_n (n x ALIGNED_DIRS) of +-1: the raw 64-bit outputs w_0, w_1, ... of
    ``numpy.random.PCG64(numpy.random.SeedSequence([SEED_DOMAIN, n]))`` (both are stable across
    numpy versions and platforms); entry (i, j), flat index t = i * ALIGNED_DIRS + j, is +1 if
    bit t % 64 (least significant first) of w_(t // 64) is set, else -1. Read-only."""
    count = n * ALIGNED_DIRS
    words = np.random.PCG64(np.random.SeedSequence([SEED_DOMAIN, n])).random_raw(-(-count // 64))
    raw = np.asarray(words, dtype="<u8").view(np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[:count].reshape(n, ALIGNED_DIRS)
    out: F32 = (bits.astype(np.float32) * 2 - 1).astype(np.float32)
    out.flags.writeable = False
    return out


def _finish(f: F32, length: int) -> AlignedAxis:
    f = f.astype(np.float32)
    f -= f.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.where(norms > 0, f / np.where(norms > 0, norms, 1), 0).astype(np.float32)
    return AlignedAxis(length=length, features=f.astype(np.float16).astype(np.float32))


def _axis(f: F32, w: F32, idx: npt.NDArray[np.intp], rows: bool) -> AlignedAxis:
    """Finish the projections ``f`` (kept units x ALIGNED_DIRS) of one axis of ``w``. A kept unit i
    whose pair mate is i' is projected with its entries at other-axis indices i and i' (those that
    exist) left out, so that swapping the pair's two units on this axis alone, or on both axes at
    once, swaps their features exactly (docs/descent.md §3.2c)."""
    other = w.shape[1] if rows else w.shape[0]
    r = directions(other)
    mate = idx[np.minimum(np.arange(len(idx)) ^ 1, len(idx) - 1)]
    for cols, ok in ((idx, idx < other), (mate, (mate < other) & (mate != idx))):
        t = np.flatnonzero(ok)
        vals = w[idx[t], cols[t]] if rows else w[cols[t], idx[t]]
        f[t] -= vals[:, None] * r[cols[t]]
    return _finish(f, w.shape[0] if rows else w.shape[1])


def aligned_sketch(w: F32) -> tuple[AlignedAxis, AlignedAxis]:
    """(rows, columns) aligned sketches of a float32 matrix W (m x n). Requires finite entries."""
    m, n = w.shape
    rows, cols = aligned_units(m), aligned_units(n)
    f_rows = w[rows] @ directions(n) if len(rows) < m else w @ directions(n)
    f_cols = np.ascontiguousarray((directions(m).T @ w)[:, cols].T)  # no strided gather of W's columns
    return _axis(f_rows, w, rows, True), _axis(f_cols, w, cols, False)


def _differences(axis: AlignedAxis) -> F64:
    f = axis.features.astype(np.float64)
    p = f.shape[0] // 2
    out: F64 = f[0 : 2 * p : 2] - f[1 : 2 * p : 2]
    return out


def log10_bounds(t: F64, s: F64) -> F64:
    """log10 of the Hoeffding bound exp(-T^2 / (2 sum D^2)), 0 where T <= 0, elementwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where((t > 0) & (s > 0), t / np.sqrt(np.where(s > 0, s, 1)), 0.0)
    out: F64 = -(z * z) / (2 * math.log(10))
    return out


def statistic(t: F64, s: F64) -> F64:
    """T / sqrt(sum D^2), 0 where sum D^2 is 0 (elementwise)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = np.where(s > 0, t / np.sqrt(np.where(s > 0, s, 1)), 0.0)
    return out


def aligned_tests(xs: Sequence[AlignedAxis], ys: Sequence[AlignedAxis]) -> tuple[F64, F64]:
    """T and sum_p D_p^2 for every (x, y) in xs x ys (arrays len(xs) x len(ys)). Requires all
    axes of one length (so the same kept units and pairs)."""
    if not xs or not ys:
        return np.zeros((len(xs), len(ys))), np.zeros((len(xs), len(ys)))
    da = np.stack([_differences(x) for x in xs], axis=1)  # (P, na, k)
    db = np.stack([_differences(y) for y in ys], axis=2)  # (P, k, nb)
    p, na, nb = da.shape[0], da.shape[1], db.shape[2]
    t = np.zeros((na, nb))
    s = np.zeros((na, nb))
    step = max(1, CHUNK // max(1, p * nb))
    for lo in range(0, na, step):
        d = np.matmul(da[:, lo : lo + step], db)  # (P, chunk, nb): D_p of each pair of axes
        t[lo : lo + step] = d.sum(axis=0)
        s[lo : lo + step] = np.einsum("pab,pab->ab", d, d)
    return t, s


class _Entry(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def aligned(self) -> tuple[AlignedAxis, AlignedAxis] | None: ...


@dataclass(frozen=True)
class AlignedPair:
    """A tensor of A against the tensor of B of the same shape, units at equal indices."""

    a: str
    b: str
    log10_p: float  # max(p_rows, p_cols), natural scale log10
    rows: AlignedResult
    cols: AlignedResult


@dataclass(frozen=True)
class AlignedOutcome:
    """Every aligned candidate of two models, tested.

    ``count`` is the number of candidates (joins the model-level Bonferroni factor), ``per_a`` the
    number per tensor of A (joins extent's per-tensor factor), ``best`` each tested tensor of A's
    best pair (smallest p-value first), ``reachable_log10`` the smallest p-value any could give.
    """

    count: int
    per_a: dict[str, int]
    best: tuple[AlignedPair, ...]
    reachable_log10: float


def _result(t: float, s: float, pairs: int) -> AlignedResult:
    return AlignedResult(statistic=float(statistic(np.array(t), np.array(s))), pairs=pairs,
                         log10_p=float(log10_bounds(np.array(t), np.array(s))))


def _axes(entries: Sequence[_Entry], axis: int) -> list[AlignedAxis]:
    out = []
    for e in entries:
        assert e.aligned is not None
        out.append(e.aligned[axis])
    return out


def aligned_outcome(fa: Sequence[_Entry], fb: Sequence[_Entry]) -> AlignedOutcome:
    """Test every pair (tensor of A, tensor of B) whose aligned sketches have equal axis lengths
    (identical matrix shape; names never used; byte-identical pairs are exact evidence, not
    candidates), both axes at once per shape, vectorised. Pure."""
    groups: dict[tuple[int, int], tuple[list[_Entry], list[_Entry]]] = {}
    for side, entries in ((0, fa), (1, fb)):
        for e in entries:
            if e.aligned is not None:
                groups.setdefault((e.aligned[0].length, e.aligned[1].length), ([], []))[side].append(e)
    count, reachable = 0, 0.0
    per_a: dict[str, int] = {}
    best: list[AlignedPair] = []
    for (m, n), (xs, ys) in groups.items():
        if not xs or not ys:
            continue
        same = np.array([[bool(x.digest) and x.digest == y.digest for y in ys] for x in xs])  # products: no digest
        tr, sr = aligned_tests(_axes(xs, 0), _axes(ys, 0))
        tc, sc = aligned_tests(_axes(xs, 1), _axes(ys, 1))
        logp = np.where(same, 0.0, np.maximum(log10_bounds(tr, sr), log10_bounds(tc, sc)))
        pr, pc = min(m, ALIGNED_UNITS) // 2, min(n, ALIGNED_UNITS) // 2
        count += int((~same).sum())
        reachable = min(reachable, best_possible_log10(m, n)) if (~same).any() else reachable
        for i, x in enumerate(xs):
            if (k := int((~same[i]).sum())) == 0:
                continue
            per_a[x.name] = per_a.get(x.name, 0) + k
            j = int(np.argmin(np.where(same[i], np.inf, logp[i])))
            best.append(AlignedPair(x.name, ys[j].name, float(logp[i, j]), _result(tr[i, j], sr[i, j], pr),
                                    _result(tc[i, j], sc[i, j], pc)))
    ranked = tuple(sorted(best, key=lambda q: (q.log10_p, q.a)))  # a tensor of A has one shape: one group
    return AlignedOutcome(count=count, per_a=per_a, best=ranked, reachable_log10=reachable)


def best_possible_log10(rows: int, cols: int) -> float:
    """log10 of the smallest pair p-value reachable on an m x n matrix pair: exp(-P/2) per axis,
    P the pairs of the axis with fewer kept units."""
    p = min(min(rows, ALIGNED_UNITS) // 2, min(cols, ALIGNED_UNITS) // 2)
    return -p / (2 * math.log(10))
