"""The per-axis test of shared origin, and its p-value. Pure: arrays in, numbers out.

Given the unit features of one axis of a tensor of A and one axis of a tensor of B
(:mod:`client.core.descent.sketch`), we match A's units to B's units twice, independently:
once on the odd-frequency half of the features and once on the even-frequency half
(each by an optimal one-to-one assignment on cosine similarity). If the tensors share an
origin, both matchings recover the same hidden-unit correspondence and agree on most
units. Under the null hypothesis H0 — B independent of A, B's units exchangeable, and the
two halves of a unit's features independent — the second matching is, given the first, a
uniformly random injection, and the number K of agreeing units satisfies for every k

    P(K >= k) <= E[C(K, k)] = C(s, k) / (mB (mB - 1) ... (mB - k + 1))

(Markov's inequality on the number of agreeing k-subsets), s the number of A units matched
and mB the number of B units. That bound is the p-value: valid without simulation, and
conservative (for s = mB it is 1/k!, the Poisson(1) order). See docs/descent.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_MATCHED = 512  # at most this many units of A are matched per axis (cost: s x mB assignment)
MIN_UNITS = 8  # fewer units than this on either side: no test


@dataclass(frozen=True)
class AxisResult:
    """One axis test: ``agreements`` of ``matched`` A units with ``candidates`` B units."""

    agreements: int
    matched: int
    candidates: int
    p_value: float
    log10_p: float


def agreement_log_p(k: int, s: int, m: int) -> float:
    """Natural log of min(1, C(s, k) / fallingfactorial(m, k)). Requires 0 <= k <= s <= m."""
    if k <= 0:
        return 0.0
    log_comb = math.lgamma(s + 1) - math.lgamma(k + 1) - math.lgamma(s - k + 1)
    log_fall = math.lgamma(m + 1) - math.lgamma(m - k + 1)
    return min(0.0, log_comb - log_fall)


def _unit_rows(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    y = x.astype(np.float64)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: npt.NDArray[np.float64] = y / norms
    return out


@dataclass(frozen=True)
class Halves:
    """The two unit-normalised feature halves of one axis, ready for matching; and their float32
    copies for the screen (:func:`screen_score`), whose products are output-bound: half the bytes."""

    odd: npt.NDArray[np.float64]
    even: npt.NDArray[np.float64]
    odd32: npt.NDArray[np.float32]
    even32: npt.NDArray[np.float32]

    @property
    def units(self) -> int:
        return int(self.odd.shape[0])


def halves(f: npt.NDArray[np.float32]) -> Halves:
    """Odd- and even-indexed features, the even half residualised on the odd one across units.

    Trained weights can have low-rank structure that makes the two halves of a unit's
    features linearly dependent; removing the linear prediction of one half from the other
    (fitted within this model only) restores their independence under the null, while a
    derived model keeps both its halves and its residuals close to the original's.
    """
    odd = f[:, 0::2].astype(np.float64)
    even = f[:, 1::2].astype(np.float64)
    design = np.hstack([odd, np.ones((odd.shape[0], 1))])
    gram = design.T @ design + 1e-9 * np.eye(design.shape[1])
    coef = np.linalg.solve(gram, design.T @ even)
    u_odd, u_even = _unit_rows(odd), _unit_rows(even - design @ coef)
    return Halves(u_odd, u_even, u_odd.astype(np.float32), u_even.astype(np.float32))


def _match(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """For each row of ``a``, the row of ``b`` it is assigned to (one-to-one, max total cosine)."""
    from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]  # here: slow to import

    sim = a @ b.T
    rows, cols = linear_sum_assignment(sim, maximize=True)
    out = np.empty(a.shape[0], dtype=np.intp)
    out[rows] = cols
    return out


def chosen_units(m: int, limit: int) -> npt.NDArray[np.intp]:
    """Deterministic, evenly spaced subset of ``limit`` of ``m`` unit indices (all if m <= limit)."""
    if m <= limit:
        return np.arange(m, dtype=np.intp)
    picked: npt.NDArray[np.intp] = np.unique(np.linspace(0, m - 1, limit).round().astype(np.intp))
    return picked


def axis_test(fa: npt.NDArray[np.float32], fb: npt.NDArray[np.float32]) -> AxisResult | None:
    """Test one axis of A against one axis of B; None if either side has too few units.

    ``fa`` (mA x F) and ``fb`` (mB x F) are sketch features (F >= 2).
    """
    return halves_test(halves(fa), halves(fb))


def halves_test(a: Halves, b: Halves) -> AxisResult | None:
    """:func:`axis_test` on prepared halves. At most ``min(MAX_MATCHED, mB)`` units of A take
    part, chosen by :func:`chosen_units`."""
    ma, mb = a.units, b.units
    if ma < MIN_UNITS or mb < MIN_UNITS:
        return None
    sel = chosen_units(ma, min(MAX_MATCHED, mb))
    pi1 = _match(a.odd[sel], b.odd)
    pi2 = _match(a.even[sel], b.even)
    k = int(np.count_nonzero(pi1 == pi2))
    log_p = agreement_log_p(k, len(sel), mb)
    return AxisResult(
        agreements=k, matched=len(sel), candidates=mb, p_value=math.exp(log_p), log10_p=log_p / math.log(10)
    )


def screen_score(a: Halves, b: Halves, units: int = 64) -> int:
    """Cheap pre-screen: agreements of nearest-neighbour (not one-to-one) matchings on a few units.

    Only used to choose which pairs get the full test; the final p-value is corrected for
    every candidate pair, screened or not, so the screen cannot inflate significance. In float32
    (the nearest neighbour differs from float64's only on near-ties, which an agreement needs twice).
    """
    if a.units < MIN_UNITS or b.units < MIN_UNITS:
        return 0
    sel = chosen_units(a.units, units)
    n1 = np.argmax(a.odd32[sel] @ b.odd32.T, axis=1)
    n2 = np.argmax(a.even32[sel] @ b.even32.T, axis=1)
    return int(np.count_nonzero(n1 == n2))
