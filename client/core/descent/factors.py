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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from client.core.descent.sketch import matrix_view
from client.errors import FormatError

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


def view_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The shape of a stored tensor as a factor: its dimensions other than 1, if exactly two."""
    dims = tuple(d for d in shape if d != 1)
    return (dims[0], dims[1]) if len(dims) == 2 else None


def bottleneck(shape: tuple[int, ...]) -> tuple[int, bool] | None:
    """(r, left) of a stored shape that is a factor candidate (rule 1), else None."""
    view = view_shape(shape)
    if view is None:
        return None
    p, q = view
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


def product_shape(shapes: Mapping[str, tuple[int, ...]], left: str, right: str) -> tuple[int, int] | str:
    """The (m, n) of ``left @ right`` for two sketched tensors (name -> stored shape), or why the
    two cannot be a pair of rule 1 (a decoded fingerprint's derived entry is checked with it)."""
    if left == right or left not in shapes or right not in shapes:
        return f"derived product of {left!r} and {right!r} names no two sketched tensors"
    lb, rb = bottleneck(shapes[left]), bottleneck(shapes[right])
    lv, rv = view_shape(shapes[left]), view_shape(shapes[right])
    if lb is None or rb is None or lv is None or rv is None or not lb[1] or rb[1] or lb[0] != rb[0]:
        return f"{left!r} and {right!r} are not a left and a right factor of one bottleneck"
    return lv[0], rv[1]


def check_products(shapes: Mapping[str, tuple[int, ...]], names: Sequence[str],
                   derived: Sequence[tuple[str, tuple[int, ...], tuple[str, str] | None, bool]]) -> str:
    """Why derived entries (name, shape, (left, right), whether digest and moments are absent and the
    sketches present) are not the products of pairs of rule 1 of the sketched tensors ``shapes`` of a
    model whose tensor names, in order, are ``names``, each tensor in one pair, sorted; "" if they are."""
    index = {n: i for i, n in enumerate(names)}
    keys = []
    for name, shape, pair, bare in derived:
        left, right = pair or ("", "")
        want = product_shape(shapes, left, right)
        if isinstance(want, str):
            return want
        if not bare or want != shape or name != product_name(left, right):
            return f"derived entry {name!r} is not the product of its factors, or has a digest or moments"
        keys.append((index[left], index[right]))
    if keys != sorted(set(keys)) or len({i for k in keys for i in k}) != 2 * len(keys):
        return "derived entries must be sorted by factor and use each factor once"
    return ""


def products(pairs: Sequence[tuple[str, str]], stream: Iterable[tuple[str, npt.NDArray[np.generic]]],
             source: str = "model") -> Iterator[tuple[str, str, F32]]:
    """(left, right, left @ right) for every pair, as soon as both of its factors have come by in
    ``stream``; only a factor whose partner has not come yet is held. Raises FormatError naming
    ``source`` if the stream lacks a factor or yields one no longer a matrix (the model changed)."""
    partner = {left: (left, right) for left, right in pairs} | {right: (left, right) for left, right in pairs}
    held: dict[str, F32] = {}
    for name, array in stream:
        if name not in partner or name in held:
            continue
        view = matrix_view(array)
        if view is None:
            raise FormatError(f"{source}: tensor {name!r} changed between two reads")
        mat: F32 = np.ascontiguousarray(view, dtype=np.float32)
        left, right = partner[name]
        other = right if name == left else left
        if other not in held:
            held[name] = mat
            continue
        o = held.pop(other)
        yield left, right, product(mat, o) if name == left else product(o, mat)
        del partner[left], partner[right]
    if partner:
        raise FormatError(f"{source}: tensor {min(partner)!r} went missing between two reads")
