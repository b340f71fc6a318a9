"""Tensors a short formula produces, recognised by structure, never by name. Pure: arrays in, a reason out.

Two independently built models compute the same sinusoidal position table, the same rotary
cos/sin cache, the same DFT / STFT / DCT basis, the same causal mask, identity or arange, and
usually byte for byte: the formula, not a shared ancestor, made them equal. Such a tensor
matching across two models is no more evidence of shared origin than two LayerNorm weights of
ones, so the descent test sets it aside. :func:`formulaic_reason` says whether a matrix (the
2-D view of :func:`client.core.descent.sketch.matrix_view`) is one, and which kind.

What is detected (reason ids, :data:`REASONS`):

- ``"identity"``, ``"mask"``, ``"toeplitz"``: ``mat[i, j]`` depends only on ``j - i``
  (Toeplitz; or on ``i + j``, the same with the rows reversed), checked exactly on sampled
  rows and columns (each sampled entry equals its up-left neighbour, and at least
  ``min_toeplitz_informative`` and half of the sampled rows or columns are not constant), and
  its generator (first column reversed, then first row) breaks at most ``breakpoints`` times:
  one off-value (``"identity"``: ``c * I``, a shifted identity), piecewise constant
  (``"mask"``: causal / triangular / banded, 0/1, 0/-inf, 0/-1e9), or piecewise linear
  (``"toeplitz"``: ALiBi-style ``-slope * |i - j|``, with or without a causal -inf part).
  Rounding (float16, bfloat16, int8) maps equal values to equal values, so the structure
  stays exact; the piecewise-linear test allows ``generator_rel`` of the neighbours plus
  ``generator_abs`` of the largest value (an int8 step is 1/127 of it).
- ``"polynomial"``, ``"sinusoidal"``: along one axis, nearly every sampled slice is a line
  (``"polynomial"``: aranges, linspace, ramps, an arange broadcast into a matrix) or obeys a
  linear recurrence of order ``max_rank`` = 2 (``"sinusoidal"``: one sinusoid or exponential,
  ``a cos(w t + p)`` or ``a r^t``), which covers sinusoidal position tables interleaved or
  concatenated ``[sin | cos]`` for any length, width and base, rotary cos/sin caches with or
  without duplicated halves, DFT real and imaginary bases, DCT-II / DCT-IV, and STFT kernels
  (Hann-windowed Fourier bases, along their frequency axis). A slice is decimated at a
  uniform stride to at most ``segment`` entries (a sum of exponentials stays one), laid out
  as a Hankel (trajectory) matrix of ``window`` columns, and the energy outside its best
  rank-2 subspace is bounded from above (subspace iteration; Ky Fan).
- Both axes are tried (a matrix and its transpose get the same reason), and a row (or column)
  of length ``L * L`` is also read as an ``L x L`` matrix, as a per-head ``(heads, L, L)``
  mask or ALiBi table arrives.

Thresholds (:class:`FormulaLimits`). For a slice with centred rms ``v`` and rms ``a``, on a
grid of spacing ``q`` if the sampled values lie on one (integers, per-tensor int8), a fit
passes when its residual rms is at most ``min(tau * v + eta * a + lattice * q,
max_unexplained * v)`` = ``min(1% v + 0.75% a + q / 2, 10% v)``; ``eta`` covers rounding
relative to the values (bfloat16 truncation 2^-8, a relative error of up to 1%, whose rms is
0.58%), ``lattice`` the rounding onto a grid (rms q / sqrt(12)). A slice is flat (neither for
nor against) when ``v`` is at most ``flat`` = 3 times that allowance (a cosine of a tiny
frequency, constant up to rounding) or when its variation sits in a few entries (participation
ratio below ``min_spread`` = 1/4 of its length: an outlier, which a Hankel matrix barely sees
at the ends). An axis counts when at least ``min_informative`` = half of its ``slices`` = 32
sampled slices are not flat and at least ``pass_fraction`` = 90% of those pass.

Why no weight passes: white noise leaves over 90% of its variation outside any rank-2 fit; a
random walk (a random matrix cumulatively summed along the axis, which is not a short
formula) far above 10%; the tests refuse these and a twice-summed random walk even with 12
times looser thresholds, and a table that training moved by 2% of its variation, or any
heavy-tailed, sparse, ternary, quantized or low-rank matrix. A thrice-summed random walk is a
curve smooth enough that a line or sinusoid fits it within rounding and is refused only with
a factor of about 3 to spare; no trained weight is known to be that smooth. Limits: a sum of
several sinusoids along both axes, a formula perturbed by random noise above rounding, and a
Toeplitz matrix of a learned kernel of more than a few taps are not flagged (the last rightly).

Cost: at most ``slices`` rows and columns are read (decimated for the recurrence; the Toeplitz
check reads one row pair, and whole sampled rows and columns only if that pair agrees); the
matrix is never copied. About 2 ms for a 4096 x 4096 float32 matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from client.errors import InvalidInputError

F64 = npt.NDArray[np.float64]
Mat = npt.NDArray[np.generic]

#: Fixed start block of the subspace iteration (at most 256 window columns, rank 8): deterministic.
_START = np.random.default_rng(20250612).standard_normal((256, 8))

#: Every reason :func:`formulaic_reason` can return.
REASONS = ("identity", "mask", "toeplitz", "polynomial", "sinusoidal")


@dataclass(frozen=True)
class FormulaLimits:
    """Thresholds of the detector (see the module docstring for what each one bounds)."""

    slices: int = 32  # sampled slices per axis
    segment: int = 128  # entries of a slice whose recurrence is tested
    window: int = 64  # columns of the Hankel matrix of a full segment (at most half of it is used)
    max_rank: int = 2  # order of the recurrence a slice may need (a sinusoid, a ramp: 2)
    min_length: int = 16  # shorter slices are not tested for a recurrence
    poly_degree: int = 1  # "polynomial": degree at most this
    tau: float = 0.01  # residual allowed, relative to the slice's centred rms
    eta: float = 0.0075  # rounding residual allowed, relative to the slice's rms
    flat: float = 3.0  # a slice varying by at most flat * the rounding allowance is flat
    lattice: float = 0.5  # rounding residual allowed on a grid, in grid steps (uniform rounding: 0.29)
    lattice_levels: int = 1 << 16  # a grid of more levels than this is not looked for
    min_spread: float = 0.25  # participation ratio / length a non-flat slice needs (sinusoid 2/3, ramp 5/9)
    max_unexplained: float = 0.1  # a fit never passes leaving more of the slice's centred rms than this
    min_informative: float = 0.5  # fraction of sampled slices that must not be flat
    pass_fraction: float = 0.9  # fraction of non-flat slices that must pass
    min_toeplitz_informative: int = 4  # non-constant sampled rows (or columns) a Toeplitz verdict needs
    breakpoints: int = 4  # breaks a Toeplitz generator may have
    generator_rel: float = 2.0**-6  # generator difference tolerance, relative to neighbours
    generator_abs: float = 2.0**-6  # ... and relative to the generator's largest finite value

    def __post_init__(self) -> None:
        if not (self.slices >= 2 and 8 <= self.min_length <= self.segment and 4 <= self.window <= _START.shape[0]):
            raise InvalidInputError("formula limits: need slices >= 2, 8 <= min_length <= segment, 4 <= window <= 256")
        if not (1 <= self.max_rank <= _START.shape[1] and self.max_rank < self.min_length // 4
                and 0 <= self.poly_degree < self.min_length // 2):
            raise InvalidInputError("formula limits: need 1 <= max_rank <= 8, max_rank < min_length / 4, "
                                    "poly_degree < min_length / 2")
        if not (0 < self.pass_fraction <= 1 and 0 < self.min_informative <= 1 and 0 < self.max_unexplained < 1):
            raise InvalidInputError("formula limits: fractions must be in (0, 1]")
        if min(self.tau, self.eta, self.flat, self.lattice, self.min_spread, self.generator_rel,
               self.generator_abs) < 0:
            raise InvalidInputError("formula limits: tolerances must not be negative")


LIMITS = FormulaLimits()


def formulaic_reason(mat: Mat, limits: FormulaLimits = LIMITS) -> str | None:
    """The reason id (one of :data:`REASONS`) if a short formula produces ``mat``, else None.

    Requires a 2-D numeric (or boolean) array; meant for what
    :func:`client.core.descent.sketch.matrix_view` returns (both dimensions >= 8, not constant),
    though smaller or constant matrices are answered too (None when nothing can be said).
    Deterministic: the sampled slices depend only on the shape.
    """
    if mat.ndim != 2:
        raise InvalidInputError(f"formulaic_reason needs a 2-D matrix, got {mat.ndim} dimensions")
    if mat.dtype.kind not in "biuf":
        raise InvalidInputError(f"formulaic_reason needs a numeric matrix, got dtype {mat.dtype}")
    if mat.dtype.kind == "b":
        mat = mat.view(np.uint8)
    m, n = mat.shape
    if m < 2 or n < 2:
        return None
    reason = _toeplitz_reason(mat, limits) or _toeplitz_reason(mat[::-1], limits)
    if reason is not None:
        return reason
    reason = _recurrence_reason(mat, limits)
    if reason is not None:
        return reason
    return _square_rows_reason(mat, limits) or _square_rows_reason(mat.T, limits)


# ---------------------------------------------------------------- Toeplitz: masks, identity, ALiBi


def _sample(length: int, count: int, start: int = 0) -> npt.NDArray[np.intp]:
    """Up to ``count`` evenly spread indices in [start, length)."""
    if length <= start:
        return np.zeros(0, dtype=np.intp)
    idx = np.linspace(start, length - 1, num=min(count, length - start))
    return np.unique(np.rint(idx).astype(np.intp))


def _shift_check(mat: Mat, limits: FormulaLimits) -> tuple[bool, int]:
    """Whether every sampled row equals the row above shifted right by one, and how many of the
    sampled rows are not constant. One row is tried first, which settles any weight matrix."""
    rows = _sample(mat.shape[0], limits.slices, start=1)
    if rows.size == 0:
        return True, 0
    for batch in (rows[rows.size // 2:rows.size // 2 + 1], rows):
        cur = mat[batch, 1:]
        prev = mat[batch - 1, :-1]
        same = cur == prev
        if mat.dtype.kind == "f":
            same |= np.isnan(cur) & np.isnan(prev)
        if not bool(np.all(same)):
            return False, 0
    informative = int(np.count_nonzero(np.any(mat[rows] != mat[rows, :1], axis=1)))
    return True, informative


def _toeplitz_reason(mat: Mat, limits: FormulaLimits) -> str | None:
    ok_rows, inf_rows = _shift_check(mat, limits)
    if not ok_rows:
        return None
    ok_cols, inf_cols = _shift_check(mat.T, limits)
    if not ok_cols:
        return None
    need = limits.min_toeplitz_informative
    if not (inf_rows >= max(need, _sample(mat.shape[0], limits.slices, 1).size // 2)
            or inf_cols >= max(need, _sample(mat.shape[1], limits.slices, 1).size // 2)):
        return None
    return _generator_reason(np.concatenate([mat[::-1, 0], mat[0, 1:]]).astype(np.float64), limits)


def _generator_reason(g: F64, limits: FormulaLimits) -> str | None:
    """Identity, mask or toeplitz if the generator is piecewise constant or linear, else None."""
    finite = np.isfinite(g)
    big = float(np.max(np.abs(g[finite]))) if finite.any() else 0.0
    # non-finite entries (the -inf of a mask) become distinct constants: still piecewise constant
    g = np.where(finite, g, np.where(np.isnan(g), 4 * big + 3, np.sign(g) * (2 * big + 1)))
    mag = np.abs(g)
    # rounding maps equal values to equal values, so a piecewise-constant generator stays exactly so
    d1 = np.abs(np.diff(g))
    if np.count_nonzero(d1 > 2.0**-20 * (mag[:-1] + mag[1:])) <= limits.breakpoints:
        values, counts = np.unique(g, return_counts=True)
        if values.size == 2 and int(counts.min()) == 1:
            return "identity"
        return "mask"
    d2 = np.abs(np.diff(g, 2))
    allowed = limits.generator_rel * (mag[:-2] + 2 * mag[1:-1] + mag[2:]) + 2 * limits.generator_abs * big
    if np.count_nonzero(d2 > allowed) <= limits.breakpoints:
        return "toeplitz"
    return None


_TOEPLITZ_GENERALITY = ("identity", "mask", "toeplitz")


def _square_rows_reason(mat: Mat, limits: FormulaLimits) -> str | None:
    """A reason shared by sampled rows of length L * L read as L x L matrices (per-head tables)."""
    side = int(round(mat.shape[1] ** 0.5))
    if side < 8 or side * side != mat.shape[1]:
        return None
    found: set[str] = set()
    for r in _sample(mat.shape[0], 4):
        square = mat[r].reshape(side, side)
        reason = _toeplitz_reason(square, limits) or _toeplitz_reason(square[::-1], limits)
        if reason is None:
            return None
        found.add(reason)
    return max(found, key=_TOEPLITZ_GENERALITY.index)  # the reason that covers every sampled row


# ---------------------------------------------------------------- recurrences: tables, bases, ranges


def _segments(mat: Mat, axis: int, limits: FormulaLimits) -> F64:
    """Sampled slices along ``axis`` (a slice runs along it), as rows: each decimated to at most
    ``segment`` entries at a uniform stride over its whole length. Decimation keeps a sum of
    exponentials a sum of as many exponentials (``exp(l * s * t)``), so a formula stays one,
    while the segment spans the slice's full variation."""
    length = mat.shape[axis]
    seg = min(length, limits.segment)
    stride = (length - 1) // (seg - 1)
    lo = (length - 1 - stride * (seg - 1)) // 2
    along = slice(lo, lo + stride * (seg - 1) + 1, stride)
    picks = _sample(mat.shape[1 - axis], limits.slices)
    part = mat[picks, along] if axis == 1 else mat[along, picks].T
    return np.asarray(part, dtype=np.float64)


def _recurrence_reason(mat: Mat, limits: FormulaLimits) -> str | None:
    """The simplest reason either axis gives (so a matrix and its transpose get the same one)."""
    segs = [_segments(mat, axis, limits) if mat.shape[axis] >= limits.min_length else None for axis in (0, 1)]
    present = [s for s in segs if s is not None]
    if not present:
        return None
    pooled = np.concatenate([s.ravel() for s in present])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return None
    step = _lattice_step(pooled, limits)
    found = [_axis_reason(s, step, limits) for s in present]
    ranked = [r for r in ("polynomial", "sinusoidal") if r in found]
    return ranked[0] if ranked else None


def _lattice_step(values: F64, limits: FormulaLimits) -> float:
    """The spacing of the grid the sampled values lie on (integers; int8 quantization with one
    scale per tensor), if they lie on one of at most ``lattice_levels`` levels, else 0."""
    u = np.unique(values)
    if u.size < 2:
        return 0.0
    step = float(np.min(np.diff(u)))
    span = float(u[-1] - u[0])
    if not step > 0 or span > limits.lattice_levels * step:
        return 0.0
    k = (u - u[0]) / step
    return step if bool(np.all(np.abs(k - np.rint(k)) <= 1e-3)) else 0.0


def _axis_reason(segs: F64, step: float, limits: FormulaLimits) -> str | None:
    """The reason if nearly all non-flat sampled segments (rows of ``segs``) obey a short recurrence."""
    finite = np.all(np.isfinite(segs), axis=1)
    x = np.where(finite[:, None], segs, 0.0)
    centred = x - x.mean(axis=1, keepdims=True)
    var = np.sqrt(np.mean(centred * centred, axis=1))
    allow = limits.eta * np.sqrt(np.mean(x * x, axis=1)) + limits.lattice * step
    # a slice whose variation sits in a few entries (one outlier) says nothing either way: the
    # Hankel matrix barely weighs its first and last entries, so a spike there would look simple
    sq = centred * centred
    quart = np.sum(sq * sq, axis=1)
    spread = np.divide(np.sum(sq, axis=1) ** 2, x.shape[1] * quart, out=np.zeros_like(var), where=quart > 0)
    informative = ~finite | ((var > limits.flat * allow) & (spread >= limits.min_spread))
    count = int(np.count_nonzero(informative))
    if count == 0 or count < limits.min_informative * segs.shape[0] or count < 2:
        return None
    needed = limits.pass_fraction * count
    # never more than max_unexplained of the slice's own variation, however large the allowance
    tol = np.minimum(limits.tau * var + allow, limits.max_unexplained * var)
    sel = informative & finite
    if np.count_nonzero(sel) < needed:
        return None
    poly_ok = _poly_residual(centred[sel], limits.poly_degree) <= tol[sel]
    if np.count_nonzero(poly_ok) >= needed:
        return "polynomial"
    if np.count_nonzero(_hankel_tail(x[sel], limits) <= tol[sel]) < needed:
        return None
    return "sinusoidal"


def _poly_residual(x: F64, degree: int) -> F64:
    """Rms residual of each row of ``x`` after its least-squares polynomial of ``degree``."""
    t = np.linspace(-1.0, 1.0, x.shape[1])
    q, _ = np.linalg.qr(np.polynomial.legendre.legvander(t, degree))
    resid = x - (x @ q) @ q.T
    out: F64 = np.sqrt(np.mean(resid * resid, axis=1))
    return out


def _hankel_tail(x: F64, limits: FormulaLimits) -> F64:
    """Per row of ``x``: an upper bound on the rms of its Hankel matrix beyond the best rank
    ``max_rank`` fit.

    Subspace iteration from a fixed block: ``V`` spans an approximation of the top singular
    directions, and (Ky Fan) the energy outside an orthonormal ``V`` is never less than the
    energy outside the best rank-``max_rank`` subspace, so an unconverged iteration can only
    refuse a formula, never accept anything else. A short recurrence converges in one step.
    """
    k = min(limits.window, x.shape[1] // 2)
    h = np.ascontiguousarray(sliding_window_view(x, k, axis=1))  # (rows, cols, k)
    r = limits.max_rank
    v = np.broadcast_to(_START[:k, :r], (x.shape[0], k, r))
    for _ in range(3):
        v, _ = np.linalg.qr(np.matmul(h.transpose(0, 2, 1), np.matmul(h, v)))
    captured = np.square(np.matmul(h, v)).sum(axis=(1, 2))
    energy = np.einsum("bck,bck->b", h, h)
    out: F64 = np.sqrt(np.clip(energy - captured, 0.0, None) / (h.shape[1] * k))
    return out
