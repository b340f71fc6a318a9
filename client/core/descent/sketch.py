"""Per-tensor sketches: the numbers the descent test compares. Pure: arrays in, arrays out.

A weight matrix W (m x n) of a derived model may have its rows and its columns permuted
(hidden units reordered), be transposed, rescaled, cast, quantized, pruned or perturbed.
For each axis we describe every unit (row) by ``FREQS`` linear projections of the row onto
coordinate vectors over the columns that are built from the columns' own content, so that
reordering the columns reorders the coordinates with them:

1. Gaussianize: u = Phi^-1(empirical CDF of W's entries) (robust to scale, dtype, outliers).
2. Column keys: K_k(j) = sum_i He_k(u_ij) / sqrt(m k!), k = 1..KEYS (Hermite polynomials);
   they do not depend on the order of the rows.
3. Coordinates: the constant vector and He_l(standardised K_k) / sqrt(l!), l = 1..DEGREE,
   orthonormalised over the columns (QR): an n x FREQS matrix Q.
4. Features: f = W Q (m x FREQS), each column standardised across units.

Reordering the columns reorders Q's rows the same way, so f is unchanged (column-permutation
invariant); reordering the rows reorders f's rows (equivariant), which the matching step
undoes. Because Q is orthonormal, for rows of i.i.d. Gaussian entries the features of one
row are independent of one another: this is what makes the two matchings of
:mod:`client.core.descent.stats` independent under the null. Low-degree functions of low-order keys
change little under perturbation (a key of order k keeps correlation about rho^k when the
weights keep correlation rho), which is what makes the features survive fine-tuning,
quantization and pruning. The column sketch is the same computation on W transposed.
See docs/descent.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.polynomial.hermite_e import hermevander

KEYS = 5  # Hermite orders of the per-column keys
DEGREE = 3  # Hermite degree of the coordinate functions of each key
FREQS = 1 + KEYS * DEGREE  # features per unit (coordinates); split odd/even into two halves
QUANTILE_SAMPLE = 65536  # entries sampled for the empirical CDF
TABLE = 16384  # bins of the CDF lookup
MAX_UNITS = 2048  # at most this many units (rows) per axis are kept in a sketch
MIN_DIM = 8  # both matrix dimensions at least this
MIN_NUMEL = 1024  # tensors with fewer elements carry too little evidence
BLOCK = 1 << 16  # entries per row block of the key pass (256 KiB of float32; with its scratch, in L2)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AxisSketch:
    """Features of the units along one axis: ``features[k]`` describes unit ``units[k]``.

    ``length`` is the number of units on that axis in the full tensor (``features`` may hold
    fewer, at most ``MAX_UNITS``, chosen by a rule that depends only on the tensor itself).
    """

    length: int
    features: F32  # (k, FREQS), each column standardised across units


def matrix_view(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic] | None:
    """The 2-D view the test uses, or None if the tensor is low-information.

    Singleton dimensions are dropped; a tensor of 3+ dimensions (a convolution kernel)
    becomes (dim0, product of the rest). Vectors, tiny tensors and constant tensors
    (LayerNorm weights of ones, zero biases, zero-initialised adapters) return None: they
    would match by chance across independent models, so they never count as evidence.
    """
    if array.dtype.kind not in "fiu" or array.size < MIN_NUMEL:
        return None
    shape = [d for d in array.shape if d != 1]
    if len(shape) < 2:
        return None
    mat = array.reshape(shape[0], -1)
    if min(mat.shape) < MIN_DIM:
        return None
    first = mat.flat[0]
    if bool(np.all(mat == first)):
        return None
    return mat


def _cdf_table(w: F32) -> tuple[np.float32, np.float32, F32]:
    """The Gaussianising lookup: ``u = table[clip((w - lo) * scale, 0, TABLE - 1)]`` (truncated to
    an integer bin) is the normal score of an entry through the tensor's empirical CDF, estimated
    from a strided sample and tabulated over its central 99.9%. A tensor whose sample is constant
    maps every entry to 0 (one bin of value 0, scale 0)."""
    from scipy.special import ndtri  # type: ignore[import-untyped]  # here: scipy.special takes ~0.5 s to import

    flat = w.reshape(-1)
    step = max(1, flat.size // QUANTILE_SAMPLE)
    sample = np.sort(flat[::step].astype(np.float64))
    lo, hi = np.quantile(sample, [0.0005, 0.9995])
    if not hi > lo:
        lo, hi = sample[0], sample[-1]
    if not hi > lo:
        return np.float32(0), np.float32(0), np.zeros(1, dtype=np.float32)
    centres = lo + (np.arange(TABLE) + 0.5) * ((hi - lo) / TABLE)
    cdf = (np.searchsorted(sample, centres, "left") + np.searchsorted(sample, centres, "right")) / (2.0 * sample.size)
    table = ndtri(np.clip(cdf, 0.5 / sample.size, 1 - 0.5 / sample.size)).astype(np.float32)
    return np.float32(lo), np.float32(TABLE / (hi - lo)), table


def _keys(w: F32, *, rows: bool = True) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """Column keys (n x KEYS) and, if ``rows``, row keys (m x KEYS) of a C-contiguous float32
    matrix: normalised Hermite sums of its normal scores (:func:`_cdf_table`) over each axis.

    One pass over ``w`` in blocks of whole rows (about BLOCK entries: the block, its scores and
    Hermite values stay in cache), instead of a dozen passes over full-size temporaries. Sums are
    float32 within a block's row or column (matrix-vector products) and float64 across blocks; the
    blocks depend only on the shape, so the keys are the same on every run (and, like the features'
    own matrix products, on every machine with the same numpy and BLAS kernels).
    """
    m, n = w.shape
    lo, scale, table = _cdf_table(w)
    top = np.float32(table.size - 1)
    step = max(1, BLOCK // n)
    buf = np.empty((4, min(step, m), n), dtype=np.float32)
    idx = np.empty((min(step, m), n), dtype=np.int32)
    ones_r, ones_n = np.ones(min(step, m), dtype=np.float32), np.ones(n, dtype=np.float32)
    col_sums = np.zeros((KEYS, n))
    row_sums = np.empty((KEYS, m)) if rows else None
    for r0 in range(0, m, step):
        block = w[r0 : r0 + step]
        r = block.shape[0]
        u, prev, cur, tmp = (b[:r] for b in buf)
        pos = tmp
        ix = idx[:r]
        np.subtract(block, lo, out=pos)
        pos *= scale
        np.clip(pos, 0, top, out=pos)
        np.copyto(ix, pos, casting="unsafe")  # truncation toward zero: the bin
        np.take(table, ix, out=u, mode="clip")
        prev.fill(1.0)  # He_0
        np.copyto(cur, u)  # He_1
        for k in range(1, KEYS + 1):
            col_sums[k - 1] += ones_r[:r] @ cur
            if row_sums is not None:
                row_sums[k - 1, r0 : r0 + r] = cur @ ones_n
            if k < KEYS:
                # He_{k+1}(u) = u He_k(u) - k He_{k-1}(u), computed in place in prev's memory
                np.multiply(u, cur, out=tmp)
                prev *= np.float32(-k)
                prev += tmp
                prev, cur = cur, prev
    if m == n:
        # A square matrix's diagonal is left out of both axes' keys: see :func:`sketch_matrix`.
        d = np.ascontiguousarray(np.diagonal(w))
        ix_d = np.clip((d - lo) * scale, 0, top).astype(np.int32)
        u_d = np.take(table, ix_d, mode="clip").astype(np.float64)
        prev_d, cur_d = np.ones_like(u_d), u_d.copy()
        for k in range(1, KEYS + 1):
            col_sums[k - 1] -= cur_d
            if row_sums is not None:
                row_sums[k - 1] -= cur_d
            prev_d, cur_d = cur_d, u_d * cur_d - k * prev_d
    norms = np.sqrt([math.factorial(k) for k in range(1, KEYS + 1)])
    cols = (col_sums / (norms[:, None] * math.sqrt(m))).T
    return cols, None if row_sums is None else (row_sums / (norms[:, None] * math.sqrt(n))).T


def _coordinates(keys: npt.NDArray[np.float64]) -> F32:
    """Orthonormal n x FREQS coordinates: constant, then He_l of each standardised key."""
    std = keys.std(axis=0)
    std[std == 0] = 1.0
    z = (keys - keys.mean(axis=0)) / std
    basis = [np.ones(z.shape[0])]
    for k in range(KEYS):
        he = hermevander(z[:, k], DEGREE)
        basis += [he[:, d] / math.sqrt(math.factorial(d)) for d in range(1, DEGREE + 1)]
    phi = np.stack(basis, axis=1)
    # Cholesky QR: phi = q r with r = chol(phi^T phi)^T upper triangular with a positive
    # diagonal, the unique QR factorisation; so permuting the columns of W permutes the rows
    # of q and nothing else, whatever order they came in. The ridge guards degenerate keys.
    gram = phi.T @ phi
    gram += 1e-9 * np.trace(gram) * np.eye(gram.shape[0])
    chol = np.linalg.cholesky(gram)
    out: F32 = np.linalg.solve(chol, phi.T).T.astype(np.float32)
    return out


def _rows_sketch(mat: F32, coords: F32, length: int | None = None) -> AxisSketch:
    m = mat.shape[0]
    feats = (mat @ coords).astype(np.float64)
    if m == mat.shape[1]:  # a square matrix: unit i's features leave out its diagonal entry (sketch_matrix)
        feats -= np.diagonal(mat).astype(np.float64)[:, None] * coords.astype(np.float64)
    if m > MAX_UNITS:
        # Keep the units with the largest rows (by sketch energy): a rule of the tensor's own
        # content, so under the null it is still exchangeable across units.
        energy = np.einsum("ij,ij->i", feats, feats)
        keep = np.sort(np.argsort(-energy, kind="stable")[:MAX_UNITS])
        feats = feats[keep]
    feats -= feats.mean(axis=0)
    std = feats.std(axis=0)
    std[std == 0] = 1.0
    feats /= std
    # Rounded through float16, the stored precision, so in-memory and decoded sketches agree.
    return AxisSketch(length=m if length is None else length, features=feats.astype(np.float16).astype(np.float32))


def sketch_matrix(mat: npt.NDArray[np.generic]) -> tuple[AxisSketch, AxisSketch]:
    """Row and column sketches of a matrix from :func:`matrix_view`.

    Precondition: ``mat`` is 2-D with both dimensions >= MIN_DIM. Memory: one float32 copy
    of ``mat`` at most (none if it is already float32).

    A square matrix's diagonal is left out of every unit's features and every key. When the two
    axes are one hidden space (a recurrent matrix, permuted as ``P W P^T``), entry (i, i) belongs to
    unit i on both axes, and an identity-like diagonal (IRNN-style initialisation, a residual added
    into a weight) would make each unit's features a function of that one entry in both halves:
    the halves' independence that the matching test needs would fail across independent models
    (measured: 15 % of independent ``I + noise`` pairs `related` at 0.01 with the diagonal in).
    Where the axes are independent spaces the diagonal is one arbitrary entry per unit: leaving
    it out changes a unit's features by one entry in n.
    """
    w: F32 = np.ascontiguousarray(mat, dtype=np.float32)
    col_keys, row_keys = _keys(w)
    assert row_keys is not None
    rows = _rows_sketch(w, _coordinates(col_keys))
    cols = _rows_sketch(w.T, _coordinates(row_keys))
    return rows, cols


def sketch_rows(mat: F32, *, length: int) -> AxisSketch:
    """The row sketch alone of a float32 matrix (both dimensions >= MIN_DIM), recorded as an
    axis of ``length`` units (the matrix may hold a selection of them)."""
    w: F32 = np.ascontiguousarray(mat, dtype=np.float32)
    col_keys, _ = _keys(w, rows=False)
    return _rows_sketch(w, _coordinates(col_keys), length)
