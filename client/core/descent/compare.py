"""Compare two fingerprints: exact evidence, statistical evidence, one verdict. Pure.

Verdicts (docs/descent.md):

- ``identical``: the same multiset of tensor bytes, whatever the names and container.
- ``related``: an informative tensor is byte-identical in both, or the combined p-value of the
  statistical test is below ``alpha``.
- ``independent``: comparable content that could have shown a shared origin at ``alpha``, and did not.
- ``inconclusive``: no comparable informative tensors, or too few units for any test to reach ``alpha``.

Tensors are paired by content, never by name: every informative matrix of A is a candidate
partner of every informative matrix of B of compatible shape, in both orientations, and every
pair of identical shape is also an *aligned* candidate (units at equal indices,
:mod:`client.core.descent.aligned`). The combined p-value is Bonferroni over *all* candidate pairs
(valid under any dependence between tensors, and it makes the choice of which pairs get the full
test harmless).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.core.descent.aligned import AlignedPair, AlignedResult, aligned_outcome
from client.core.descent.direction import Direction, weight_signal
from client.core.descent.extent import Extent, best_untested, extent
from client.core.descent.fingerprint import Fingerprint, TensorEntry, require_current
from client.core.descent.sketch import AxisSketch
from client.core.descent.stats import (
    MAX_MATCHED,
    MIN_UNITS,
    AxisResult,
    Halves,
    agreement_log_p,
    halves,
    halves_test,
    screen_score,
)

DEFAULT_ALPHA = 0.01
MIN_SIZE_RATIO = 0.5  # axes whose lengths differ more than this are not compared
FULL_TEST_ALL_BELOW = 16  # with at most this many candidate pairs, every one gets the full test
SCREEN_PASS = 3  # beyond that, pairs whose screen score reaches this get the full test too
DECISIVE_MARGIN = 50 * math.log(10)  # a pair this far below alpha (after Bonferroni) is decisive
THREADS_FROM = 4096  # from this many candidate pairs, the screen and the full tests use the caller's parallel map
SCREEN_CHUNK = 512  # candidate pairs screened per task
DIRECTION_NOTE = (
    "Weights alone cannot tell parent from child or from sibling (both derived from a common "
    "ancestor); the ledger's registration order and times speak to direction."
)


AXES = ("rows", "cols", "gram_rows", "gram_cols")  # the per-pair axis tests, in AxisResult order


@dataclass(frozen=True)
class PairEvidence:
    """One tensor of A against one of B: how they were compared and how strongly they match.

    ``axes`` holds one result per entry of ``AXES`` (None where an axis has too few units): the
    rows and columns matched on their entries, and on their Gram matrices (rotation-invariant).
    ``aligned`` is (rows, columns) of an aligned-units test (§3.2c), None for other evidence.
    """

    a: str
    b: str
    how: str  # "byte-identical", "units matched" (...), "units aligned (same order)"
    p_value: float
    log10_p: float
    axes: tuple[AxisResult | None, ...] = ()
    aligned: tuple[AlignedResult, AlignedResult] | None = None

    def to_json(self) -> dict[str, Any]:
        log10_p = round(self.log10_p, 3) if math.isfinite(self.log10_p) else None
        out: dict[str, Any] = {"a": self.a, "b": self.b, "how": self.how, "p_value": self.p_value,
                               "log10_p": log10_p}
        for label, r in zip(AXES, self.axes, strict=False):
            if r is not None:
                out[label] = {"agreements": r.agreements, "matched": r.matched, "candidates": r.candidates}
        if self.aligned is not None:
            out["aligned_rows"], out["aligned_cols"] = (r.to_json() for r in self.aligned)
        return out


@dataclass(frozen=True)
class SetAside:
    """A tensor that never counts as evidence because a short formula produces it."""

    model: str  # "a" or "b"
    tensor: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"model": self.model, "tensor": self.tensor, "reason": self.reason}


@dataclass(frozen=True)
class Comparison:
    verdict: str
    basis: str  # "exact", "statistical" or "none"
    alpha: float
    p_value: float  # 0 when the basis is exact (byte-identical informative tensors)
    log10_p: float
    statistical_log10_p: float  # the combined statistical p-value, whatever the basis
    shared_a_in_b: float  # fraction of A's parameters byte-identical in B
    shared_b_in_a: float
    informative_shared_a_in_b: float
    informative_shared_b_in_a: float
    candidates: int
    tested: int
    evidence: list[PairEvidence] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    extent: Extent | None = None  # which tensors and layers of A are shared; only when related or identical
    direction: Direction = field(default_factory=lambda: Direction(DIRECTION_NOTE))

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "basis": self.basis,
            "alpha": self.alpha,
            "p_value": self.p_value,
            "log10_p": round(self.log10_p, 3) if math.isfinite(self.log10_p) else None,
            "statistical_p_value": 10 ** self.statistical_log10_p,
            "statistical_log10_p": round(self.statistical_log10_p, 3),
            "shared_fraction": {"a_in_b": self.shared_a_in_b, "b_in_a": self.shared_b_in_a},
            "informative_shared_fraction": {
                "a_in_b": self.informative_shared_a_in_b, "b_in_a": self.informative_shared_b_in_a,
            },
            "candidate_pairs": self.candidates,
            "tested_pairs": self.tested,
            "evidence": [e.to_json() for e in self.evidence],
            "set_aside": [s.to_json() for s in self.set_aside],
            "extent": [layer.to_json() for layer in self.extent.layers] if self.extent is not None else [],
            "shared_tensors": self.extent.counts() if self.extent is not None else None,
            "direction": self.direction.to_json(),
        }


def _fraction(entries: tuple[TensorEntry, ...], other: set[bytes], informative_only: bool) -> float:
    pool = [e for e in entries if e.sketch is not None] if informative_only else list(entries)
    total = sum(e.numel for e in pool)
    if total == 0:
        return 0.0
    return sum(e.numel for e in pool if e.digest in other) / total


def _compatible(x: AxisSketch, y: AxisSketch) -> bool:
    lo, hi = sorted((x.length, y.length))
    return lo >= MIN_SIZE_RATIO * hi


@dataclass(frozen=True)
class _Candidate:
    """A tensor of A against a tensor of B in one orientation. ``only`` is None when both axis
    pairs are compatible (four tests); 0 or 1 when only A's rows or only A's columns have a
    compatible partner axis in B (a factored, vocabulary-extended or pruned matrix whose other
    axis changed length beyond MIN_SIZE_RATIO): that axis alone is tested, direct and Gram."""

    a: TensorEntry
    b: TensorEntry
    transposed: bool
    only: int | None = None

    def pairs(self) -> tuple[tuple[AxisSketch, AxisSketch], ...]:
        """All four pairs of axis sketches, in ``AXES`` order (B's swapped when transposed)."""
        assert self.a.sketch is not None and self.b.sketch is not None
        assert self.a.gram is not None and self.b.gram is not None
        ra, ca = self.a.sketch
        rb, cb = self.b.sketch
        ga, ha = self.a.gram
        gb, hb = self.b.gram
        if self.transposed:
            return (ra, cb), (ca, rb), (ga, hb), (ha, gb)
        return (ra, rb), (ca, cb), (ga, gb), (ha, hb)

    def indexes(self) -> tuple[int, ...]:
        """The ``AXES`` entries this candidate tests."""
        return (0, 1, 2, 3) if self.only is None else (self.only, self.only + 2)

    def axes(self) -> tuple[tuple[AxisSketch, AxisSketch], ...]:
        """The pairs of axis sketches to test, in ``AXES`` order."""
        pairs = self.pairs()
        return tuple(pairs[i] for i in self.indexes())


def _candidates(fa: Fingerprint, fb: Fingerprint) -> list[_Candidate]:
    """Every (tensor of A, tensor of B, orientation) with at least one compatible axis pair.

    A one-axis candidate is as valid a test as a full one: the null of each axis test (B
    independent of A, B's units on that axis exchangeable, the two feature halves independent)
    says nothing about the other axis, and the model-level Bonferroni factor counts every
    candidate, one-axis ones included, each already corrected for the axes it tests. Derived
    products (:mod:`~client.core.descent.factors`) are candidates like any informative matrix.
    """
    out = []
    for a in fa.entries + fa.derived:
        if a.sketch is None:
            continue
        for b in fb.entries + fb.derived:
            if b.sketch is None or (a.digest and a.digest == b.digest):
                continue
            for transposed in (False, True):
                cand = _Candidate(a, b, transposed)
                ok = [_compatible(x, y) for x, y in cand.pairs()[:2]]
                if all(ok):
                    out.append(cand)
                else:
                    out += [_Candidate(a, b, transposed, side) for side in (0, 1) if ok[side]]
    return out


class _Prepared:
    """Halves of each axis sketch, computed once per comparison (:meth:`warm` first when threads
    share it, so that they only read)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[AxisSketch, Halves]] = {}

    def __call__(self, axis: AxisSketch) -> Halves:
        hit = self._cache.get(id(axis))
        if hit is None:
            hit = (axis, halves(axis.features))
            self._cache[id(axis)] = hit
        return hit[1]

    def warm(self, cands: Sequence[_Candidate]) -> None:
        for c in cands:
            for x, y in c.axes():
                self(x), self(y)


#: An ordered map, ``pmap(fn, items) == [fn(x) for x in items]``; the edge may pass one that runs on
#: threads (numpy and the assignment solver release the GIL). This core starts none itself.
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def _serial(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


def _score(c: _Candidate, prep: _Prepared) -> int:
    return sum(screen_score(prep(x), prep(y)) for x, y in c.axes())


def _select(cands: list[_Candidate], prep: _Prepared, pmap: Mapper) -> list[_Candidate]:
    """Pairs that get the full test: all of them if few; else each tensor's best-screened partner
    (on either side) if its screen found any agreement, and every pair whose screen passes SCREEN_PASS."""
    if len(cands) <= FULL_TEST_ALL_BELOW:
        return cands
    chunks = [cands[i : i + SCREEN_CHUNK] for i in range(0, len(cands), SCREEN_CHUNK)]
    scores = [sc for chunk in pmap(lambda ch: [_score(c, prep) for c in ch], chunks) for sc in chunk]
    best_a: dict[str, int] = {}
    best_b: dict[str, int] = {}
    for i, c in enumerate(cands):
        if c.a.name not in best_a or scores[i] > scores[best_a[c.a.name]]:
            best_a[c.a.name] = i
        if c.b.name not in best_b or scores[i] > scores[best_b[c.b.name]]:
            best_b[c.b.name] = i
    best = {i for i in set(best_a.values()) | set(best_b.values()) if scores[i] >= 1}
    keep = best | {i for i, sc in enumerate(scores) if sc >= SCREEN_PASS}
    return [cands[i] for i in sorted(keep, key=lambda i: (-scores[i], i))]


def _best_possible(c: _Candidate) -> float:
    """Natural log of the smallest p-value the candidate's test could give (all units agreeing)."""
    out = 0.0
    for x, y in c.axes():
        ma, mb = x.features.shape[0], y.features.shape[0]
        if min(ma, mb) >= MIN_UNITS:
            s = min(ma, mb, MAX_MATCHED)
            out = min(out, agreement_log_p(s, s, mb))
    return out + math.log(len(c.indexes()))


def _test(c: _Candidate, prep: _Prepared) -> PairEvidence:
    """Every axis test of the pair; the pair's p-value is Bonferroni over the axes tested."""
    results = dict(zip(c.indexes(), (halves_test(prep(x), prep(y)) for x, y in c.axes()), strict=True))
    axes = tuple(results.get(i) for i in range(len(AXES)))
    done = [(i, r) for i, r in enumerate(axes) if r is not None]
    best = min(done, key=lambda ir: ir[1].log10_p, default=None)
    ln_p = 0.0 if best is None else best[1].log10_p * math.log(10) + math.log(len(done))
    ln_p = min(0.0, ln_p)
    how = "units matched (transposed)" if c.transposed else "units matched"
    if c.only is not None:
        how += ", one axis"
    if c.a.factors or c.b.factors:
        how += ", derived product"
    if best is not None and AXES[best[0]].startswith("gram") and ln_p < 0:
        how += ", rotation-invariant"
    return PairEvidence(a=c.a.name, b=c.b.name, how=how, p_value=math.exp(ln_p), log10_p=ln_p / math.log(10),
                        axes=axes)


def _tests(order: list[_Candidate], prep: _Prepared, pmap: Mapper, threads: int, decisive_below: float,
           top: int) -> list[PairEvidence]:
    """Full tests in ``order`` (best-screened first) until ``top`` pairs are decisive: their natural-log
    p-value below ``decisive_below`` (overwhelming even after the Bonferroni factor), when more tests
    could change neither the verdict nor the evidence shown. With threads, ``threads`` tests run at a
    time and those past the stopping point are dropped: the same list as one at a time."""
    tested: list[PairEvidence] = []
    decisive = 0
    for lo in range(0, len(order), threads):
        for ev in pmap(lambda c: _test(c, prep), order[lo : lo + threads]):
            tested.append(ev)
            if ev.log10_p * math.log(10) < decisive_below:
                decisive += 1
                if decisive >= top:
                    return tested
    return tested


def _aligned_evidence(pair: AlignedPair, derived: bool) -> PairEvidence:
    how = "units aligned (same order)" + (", derived product" if derived else "")
    return PairEvidence(a=pair.a, b=pair.b, how=how, p_value=10**pair.log10_p, log10_p=pair.log10_p,
                        aligned=(pair.rows, pair.cols))


def compare(fa: Fingerprint, fb: Fingerprint, *, alpha: float = DEFAULT_ALPHA, top: int = 5,
            parallel: tuple[Mapper, int] | None = None) -> Comparison:
    """Compare fingerprints of A and B. Requires 0 < alpha < 1; both of the current version
    (:func:`~client.core.descent.fingerprint.require_current`). ``parallel``: an ordered map and how
    many items it runs at once, used from THREADS_FROM candidate pairs; the answer is the same
    with it or without."""
    require_current(fa, "A")
    require_current(fb, "B")
    exact = [
        PairEvidence(a=a.name, b=b.name, how="byte-identical", p_value=0.0, log10_p=-math.inf)
        for a in fa.entries if a.sketch is not None
        for b in fb.entries if b.digest == a.digest
    ]
    exact.sort(key=lambda e: e.a)
    cands = _candidates(fa, fb)
    pmap: Mapper = _serial
    threads = 1
    if parallel is not None and parallel[1] > 1 and len(cands) >= THREADS_FROM:
        pmap, threads = parallel
    return _compare(fa, fb, exact, cands, alpha, top, pmap, threads)


def _compare(fa: Fingerprint, fb: Fingerprint, exact: list[PairEvidence], cands: list[_Candidate], alpha: float,
             top: int, pmap: Mapper, threads: int) -> Comparison:
    digests_a = {e.digest for e in fa.entries}
    digests_b = {e.digest for e in fb.entries}
    aligned = aligned_outcome(fa.entries + fa.derived, fb.entries + fb.derived)  # same-shape pairs, equal indices
    products = {d.name for d in fa.derived} | {d.name for d in fb.derived}
    aligned_ev = [_aligned_evidence(q, q.a in products or q.b in products) for q in aligned.best]
    prep = _Prepared()
    n = len(cands) + aligned.count
    ln_n = math.log(n) if n else 0.0
    if threads > 1:
        prep.warm(cands)
    tested = _tests(_select(cands, prep, pmap), prep, pmap, threads, math.log(alpha) - DECISIVE_MARGIN - ln_n, top)
    stat = sorted(tested + aligned_ev, key=lambda e: e.log10_p)
    ln_min = stat[0].log10_p * math.log(10) if stat else 0.0
    ln_p = min(0.0, ln_min + ln_n)
    ln_reachable = min([_best_possible(c) for c in cands] + [aligned.reachable_log10 * math.log(10)]) + ln_n

    identical = bool(fa.entries) and Counter(e.digest for e in fa.entries) == Counter(e.digest for e in fb.entries)
    if identical:
        verdict, basis = "identical", "exact"
    elif exact:
        verdict, basis = "related", "exact"
    elif not cands or ln_reachable >= math.log(alpha):
        verdict, basis = "inconclusive", "none"
    elif ln_p < math.log(alpha):
        verdict, basis = "related", "statistical"
    else:
        verdict, basis = "independent", "statistical"
    shared = None
    direction = Direction(DIRECTION_NOTE)
    if verdict in ("related", "identical"):
        # Extent: at most one more full test per informative tensor of A that has candidates and none
        # tested yet (its best-screened partner), then per-tensor p-values (client.core.descent.extent).
        more = best_untested([c for c in cands if not c.a.factors], lambda c: c.a.name, {e.a for e in tested},
                             lambda c: _score(c, prep))
        tested += pmap(lambda c: _test(c, prep), more)
        stat = sorted(tested + aligned_ev, key=lambda e: e.log10_p)
        ln_p = min(ln_p, stat[0].log10_p * math.log(10) + ln_n) if stat else ln_p
        counts = Counter(c.a.name for c in cands) + Counter(aligned.per_a)
        shared = extent({e.name: counts[e.name] for e in fa.entries if e.sketch is not None},
                        exact + tested + aligned_ev, alpha)
        ea, eb = {e.name: e for e in fa.entries + fa.derived}, {e.name: e for e in fb.entries + fb.derived}
        moments = [(ma, mb) for a, b in shared.shared_pairs()
                   if (ma := ea[a].moments) is not None and (mb := eb[b].moments) is not None]
        direction = Direction(DIRECTION_NOTE, *weight_signal(moments))
    log10_stat = ln_p / math.log(10)
    log10_p = -math.inf if basis == "exact" else log10_stat
    return Comparison(
        verdict=verdict, basis=basis, alpha=alpha, p_value=10**log10_p, log10_p=log10_p,
        statistical_log10_p=log10_stat,
        shared_a_in_b=_fraction(fa.entries, digests_b, False),
        shared_b_in_a=_fraction(fb.entries, digests_a, False),
        informative_shared_a_in_b=_fraction(fa.entries, digests_b, True),
        informative_shared_b_in_a=_fraction(fb.entries, digests_a, True),
        candidates=n, tested=len(tested) + aligned.count,
        evidence=exact[:top] + stat[:top],
        set_aside=[SetAside(label, e.name, e.formula) for label, fp in (("a", fa), ("b", fb))
                   for e in fp.entries if e.formula],
        extent=shared, direction=direction,
    )
