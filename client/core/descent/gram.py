"""Rotation-invariant unit sketches: the units of one axis described by their Gram matrix. Pure.

A copier can apply to a hidden space any transform the network's function does not see: an
orthogonal matrix R on the residual stream of an RMSNorm model (embeddings ``E R``, every matrix
that reads the residual ``W R``, every matrix that writes it ``R^T W``; QuaRot, SliceGPT), a
rotation inside an attention head's value/output space, reflections (sign flips), and per-unit
positive scaling where an activation is positively homogeneous. The permutation-invariant sketch
of :mod:`client.core.descent.sketch` does not survive a rotation: it describes a unit by its
entries along the other axis, and a rotation mixes those entries.

What a rotation of the *other* axis leaves alone is the Gram matrix of this axis's units: for
``W`` (m x n) and any orthogonal ``R`` (n x n), ``(W R)(W R)^T = W W^T``. So for each axis we
describe its units through

1. *normalised units*: every unit divided by its norm (per-unit positive scaling then changes
   nothing; a unit of norm zero is left at zero);
2. *selection*: at most ``GRAM_UNITS`` units, those with the largest ``|<u_i, mean of all u>|`` —
   a rule that is itself invariant to rotation of the other axis and to per-unit scaling, and
   equivariant to unit order, so under the null the kept units are still exchangeable;
3. *the cosine Gram matrix* ``G = U U^T`` of the kept units, diagonal set to zero (all ones
   after step 1: no information);
4. *the permutation-invariant row sketch of G* (:func:`client.core.descent.sketch.sketch_rows`):
   permuting the units permutes G's rows and columns together, which that sketch absorbs.

Permuting units permutes the sketch's rows (the matching step undoes it); rotating, reflecting or
(per unit) rescaling the other axis changes nothing, exactly. The per-axis test of
:mod:`client.core.descent.stats` then runs unchanged on these features; its null (B independent
of A, B's units exchangeable) holds for them as for the direct sketch, and the calibration tests
include rotated independent models. Cost per axis: three passes over W for the norms and the
selection (no transposed copy), ``s^2 n`` for G (``s <= GRAM_UNITS``), and a sketch of an ``s x s``
matrix.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from client.core.descent.sketch import AxisSketch, sketch_rows

GRAM_UNITS = 512  # at most this many units per axis enter the Gram matrix

F32 = npt.NDArray[np.float32]


def gram_axis(units: F32) -> AxisSketch:
    """The rotation-invariant sketch of the rows of ``units`` (m x n, m and n >= 8), a C-contiguous
    float32 matrix or the transpose of one (then nothing of its size is copied)."""
    m = units.shape[0]
    # float32 sums of squares (relative error ~1e-6, far below the float16 the sketch is stored in)
    norms = np.sqrt(np.einsum("ij,ij->i", units, units).astype(np.float64))
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
    if m > GRAM_UNITS:
        mean = (scale @ units) / np.float32(m)  # the mean normalised unit, without a normalised copy
        mean *= np.float32(1.0 / max(float(np.linalg.norm(mean)), 1e-30))
        lean = np.abs((units @ mean) * scale)
        keep = np.sort(np.argsort(-lean, kind="stable")[:GRAM_UNITS])
        # a transposed view gathers the columns of the underlying matrix (np.take: no strided copy)
        kept = units[keep] if units.flags.c_contiguous else np.take(units.T, keep, axis=1).T
        kept = kept * scale[keep, None]
    else:
        kept = units * scale[:, None]
    gram: F32 = kept @ kept.T
    np.fill_diagonal(gram, 0.0)
    return sketch_rows(gram, length=m)


def gram_sketch(w: F32) -> tuple[AxisSketch, AxisSketch]:
    """Rotation-invariant sketches of the rows and of the columns of ``w`` (2-D float32,
    C-contiguous; the columns are read through a transposed view, not a copy)."""
    return gram_axis(w), gram_axis(w.T)
