"""Balanced low-rank factors: which two matrices of one model meet in a bottleneck, and their product. Pure.

Low-rank (SVD) compression may store ``W ~ U_r S_r V_r^T`` (m x n) as two *balanced* factors,
``F1 = U_r S_r^(1/2) Q`` (m x r) and ``F2 = Q^T S_r^(1/2) V_r^T`` (r x n), Q any orthogonal r x r
matrix (SVD-LLM's layout; Q = a permutation or sign flips of the r hidden units is the copier's
free choice). No per-tensor sketch of either factor is an invariant of W, but their product is:
``F1 F2 = W_r`` whatever Q (indeed whatever invertible matrix sits between them). So when a
fingerprint is built (weights at hand) we look for such pairs and sketch their product as a
*derived* matrix (docs/descent.md section 3.7).

The pairing rule, a function of the model's own tensors only:

1. *Shape* (free): a matrix (p x q) is a *left* factor candidate with bottleneck r = q if
   2 q <= p, a *right* one with r = p if 2 p <= q, and neither otherwise; r >= ``MIN_RANK``. A
   left and a right candidate of the same r meet in it: ``P = F1 F2`` is m x n with
   r <= min(m, n) / 2. Left against right only (the two factors of one linear map stored in one
   convention always have r on opposite axes), which also keeps a tensor stored twice, or an
   EMA copy, from pairing with itself.
2. *Balance* (cheap): ``G1 = F1^T F1`` and ``G2 = F2 F2^T`` (r x r) are both ``Q^T S_r Q`` for
   balanced factors: equal matrices, whatever Q. Independent matrices give unrelated Grams. We
   compare their *traceless* parts (``G - tr(G)/r I``: the part that is not isotropy, since every
   thin random matrix has a nearly isotropic Gram), each scaled to unit Frobenius norm (a scalar
   rebalancing ``(c F1)(F2 / c)`` changes nothing), through ``PROBES`` fixed Gaussian probe
   directions X (r x PROBES, from a seed that depends on r alone): the response
   ``Z = G~ X / ||G~ X||``, and ``E ||D X||^2 = PROBES ||D||_F^2`` for any D, so
   ``||Z1 - Z2||_F`` estimates the relative Frobenius distance of the two traceless Grams: near 0
   for balanced factors (noise and quantization of the factors move it a little), near sqrt(2)
   for unrelated matrices. A pair is a match when it is at most ``PAIR_TOL``.
3. *Once*: matches are taken best first (smallest distance, ties by names); a factor already
   taken is not paired again.

Under the null of every axis test (B independent of A; B's units on the tested axis
exchangeable), a matrix computed from B alone by a rule that uses B alone is still independent of
A, and P's rows are F1's rows (P's columns are F2's columns) in their order: permuting F1's rows
permutes P's rows and leaves the pairing alone (G1 does not see row order). So the axis tests run
on P unchanged. Cost: per thin matrix one dot product and two thin matrix products
(``2 p q PROBES`` flops), nothing for a matrix that is not thin; products are computed only for
matched pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PROBES = 8  # Gaussian probe directions per bottleneck
PAIR_TOL = 0.8  # largest distance of two traceless Gram responses that pairs two factors (unrelated: ~1.25-1.45)
ISOTROPIC = 1e-3  # a traceless part below this fraction of the isotropic part is rounding: no probe
MIN_RANK = 16  # smallest bottleneck paired (below the sketch's 16 features a product is too thin to test)
_SEED = 0x504C4650  # "PLFP": the probes of bottleneck r come from default_rng((_SEED, r))

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FactorProbe:
    """A thin matrix as a factor candidate: ``name``, its bottleneck ``rank`` r, whether r is its
    column axis (a left factor, p x r) or its row axis (a right factor, r x q), and ``response``,
    the unit-norm probe response of its traceless Gram (r x PROBES)."""

    name: str
    rank: int
    left: bool
    response: F64


def probe_directions(rank: int) -> F32:
    """The fixed probe directions of bottleneck ``rank`` (rank x PROBES), the same on every run."""
    out: F32 = np.random.default_rng((_SEED, rank)).standard_normal((rank, PROBES)).astype(np.float32)
    return out


def bottleneck(shape: tuple[int, ...]) -> tuple[int, bool] | None:
    """(r, left) of a 2-D shape that is a factor candidate (rule 1), else None."""
    if len(shape) != 2:
        return None
    p, q = shape
    if 2 * q <= p and q >= MIN_RANK:
        return q, True
    if 2 * p <= q and p >= MIN_RANK:
        return p, False
    return None


def probe(name: str, mat: F32) -> FactorProbe | None:
    """The factor probe of a 2-D float32 matrix (rule 2), or None if it is not thin or its Gram is
    isotropic (nothing to match on)."""
    shape = bottleneck(mat.shape)
    if shape is None:
        return None
    rank, left = shape
    x = probe_directions(rank)
    flat = mat.reshape(-1)
    trace = float(np.dot(flat, flat))
    # G X without forming G: F^T (F X) for a left factor, F (F^T X) for a right one
    gx = (mat.T @ (mat @ x)) if left else (mat @ (mat.T @ x))
    z = gx.astype(np.float64) - (trace / rank) * x.astype(np.float64)
    norm = float(np.linalg.norm(z))
    if not norm > ISOTROPIC * (trace / rank) * float(np.linalg.norm(x)):  # G ~ c I up to rounding
        return None
    return FactorProbe(name=name, rank=rank, left=left, response=z / norm)


def distance(a: FactorProbe, b: FactorProbe) -> float:
    """Distance of two probes of one bottleneck (0 for equal traceless Grams, about sqrt 2 for unrelated)."""
    return float(np.linalg.norm(a.response - b.response))


def pair_factors(probes: Iterable[FactorProbe]) -> list[tuple[str, str]]:
    """(left name, right name) of every matched pair (rules 1-3), sorted by name."""
    by_rank: dict[int, tuple[list[FactorProbe], list[FactorProbe]]] = {}
    for p in probes:
        sides = by_rank.setdefault(p.rank, ([], []))
        sides[0 if p.left else 1].append(p)
    matches: list[tuple[float, str, str]] = []
    for lefts, rights in by_rank.values():
        if not lefts or not rights:
            continue
        zl = np.stack([p.response.reshape(-1) for p in lefts])
        zr = np.stack([p.response.reshape(-1) for p in rights])
        dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (zl @ zr.T)))  # both sides of unit norm
        for i, j in zip(*np.nonzero(dist <= PAIR_TOL), strict=True):
            if lefts[i].name != rights[j].name:
                matches.append((float(dist[i, j]), lefts[i].name, rights[j].name))
    taken: set[str] = set()
    out = []
    for _d, left, right in sorted(matches, key=lambda m: (m[0], m[1].encode(), m[2].encode())):
        if left not in taken and right not in taken:
            taken |= {left, right}
            out.append((left, right))
    return sorted(out, key=lambda lr: (lr[0].encode(), lr[1].encode()))


def product(left: F32, right: F32) -> F32:
    """``left @ right`` as a C-contiguous float32 matrix. Requires left (m x r), right (r x n)."""
    out: F32 = np.ascontiguousarray(left.astype(np.float32, copy=False) @ right.astype(np.float32, copy=False))
    return out


def product_name(left: str, right: str) -> str:
    """The name a derived product is shown under: ``"<left> @ <right>"``."""
    return f"{left} @ {right}"
