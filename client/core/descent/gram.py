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
3. *a common direction removed*: where the units share one — ``m |ū|^2 >= COMMON_DIRECTION``
   (16), ū the mean normalised unit; independent zero-mean directions give 1 in expectation, the
   test transformer's matrices and their SVD factors 0.7-1.4, shared-tokenizer tables about 110 —
   each kept unit loses its component along ū and is normalised again. Independent models of one
   vocabulary (or one data set) share which units lean how far towards their own mean direction
   (a tokenizer's frequent tokens and token classes): that profile, tied to the unit index, is the
   same in both and made the Gram rows of independent tables match (measured: a quarter of
   independent shared-tokenizer pairs `related` at 0.01 with it left in). Like the rest, this step
   commutes with rotations of the other axis and ignores per-unit scaling;
4. *the cosine Gram matrix* ``G = U U^T`` of the kept units;
4b. *strong principal directions removed* (fingerprint version 6): every eigenvalue of G at or
   above ``SPIKE_FACTOR`` (4) times the Marchenko-Pastur edge ``(1 + sqrt(s / n))^2`` of s
   independent random unit directions in n dimensions (at most the top ``MAX_SPIKES``, 8) is taken
   out, ``G <- G - sum lambda_k v_k v_k^T``, and the units are normalised again
   (``G_ij / sqrt(G_ii G_jj)``). That is exactly projecting every unit off those right singular
   directions, so it commutes with rotations of the other axis. A strong direction the units load
   on with index-tied weights but *signed* (so their mean misses it: RoPE-structured q/k rows
   pulled towards or away from one residual direction by frequency) made each unit's two feature
   halves functions of one number, its loading, and the Gram rows of independent q/k matrices
   matched (measured: 8 of 500 independent pairs `related` on Gram rows or columns). The test
   models' matrices, their SVD factors, recurrent and trained ones give at most 1.2 times the edge,
   the RoPE-structured q/k rows 17-24 times, shared-tokenizer tables 33 times on their columns;
4c. the diagonal of G set to zero (all ones after normalising: no information);
5. *the permutation-invariant row sketch of G* (:func:`client.core.descent.sketch.sketch_rows`):
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

import math

import numpy as np
import numpy.typing as npt

from client.core.descent.sketch import AxisSketch, sketch_rows

GRAM_UNITS = 512  # at most this many units per axis enter the Gram matrix
# m |mean normalised unit|^2 from which a common direction is removed (step 3; 1 in expectation
# for independent zero-mean directions)
COMMON_DIRECTION = 16.0
# an eigenvalue of G at least this many times the Marchenko-Pastur edge is removed (step 4b) ...
SPIKE_FACTOR = 4.0
MAX_SPIKES = 8  # ... of at most this many of the largest

F32 = npt.NDArray[np.float32]


def gram_axis(units: F32) -> AxisSketch:
    """The rotation-invariant sketch of the rows of ``units`` (m x n, m and n >= 8), a C-contiguous
    float32 matrix or the transpose of one (then nothing of its size is copied)."""
    m = units.shape[0]
    # float32 sums of squares (relative error ~1e-6, far below the float16 the sketch is stored in)
    norms = np.sqrt(np.einsum("ij,ij->i", units, units).astype(np.float64))
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
    raw_mean = (scale @ units) / np.float32(m)  # the mean normalised unit, without a normalised copy
    mean = raw_mean * np.float32(1.0 / max(float(np.linalg.norm(raw_mean)), 1e-30))
    if m > GRAM_UNITS:
        lean = np.abs((units @ mean) * scale)
        keep = np.sort(np.argsort(-lean, kind="stable")[:GRAM_UNITS])
        # a transposed view gathers the columns of the underlying matrix (np.take: no strided copy)
        kept = units[keep] if units.flags.c_contiguous else np.take(units.T, keep, axis=1).T
        kept = kept * scale[keep, None]
    else:
        kept = units * scale[:, None]
    # Step 3: a common direction out (when there is one), units normalised again.
    if float(np.dot(raw_mean, raw_mean)) * m >= COMMON_DIRECTION:
        kept = kept - np.outer(kept @ mean, mean)
        again = np.sqrt(np.einsum("ij,ij->i", kept, kept).astype(np.float64))
        kept *= np.where(again > 1e-6, 1.0 / np.where(again > 1e-6, again, 1.0), 0.0).astype(np.float32)[:, None]
    gram: F32 = kept @ kept.T
    gram = _without_spikes(gram, kept.shape[1])
    np.fill_diagonal(gram, 0.0)
    return sketch_rows(gram, length=m)


def _without_spikes(gram: F32, dims: int) -> F32:
    """Step 4b: ``gram`` (s x s cosines of s units in ``dims`` dimensions) without its eigenvalues of
    at least SPIKE_FACTOR times the random-direction edge, units normalised again."""
    from scipy.linalg import eigh  # type: ignore[import-untyped]  # here: slow to import

    s = gram.shape[0]
    edge = (1.0 + math.sqrt(s / dims)) ** 2
    top = min(MAX_SPIKES, s)
    values, vectors = eigh(gram, subset_by_index=[s - top, s - 1], driver="evr")
    strong = values >= SPIKE_FACTOR * edge
    if not strong.any():
        return gram
    v = vectors[:, strong]
    out: F32 = (gram - (v * values[strong]) @ v.T).astype(np.float32)
    d = np.diagonal(out).astype(np.float64)
    inv = np.where(d > 1e-10, 1.0 / np.sqrt(np.where(d > 1e-10, d, 1.0)), 0.0).astype(np.float32)
    out *= inv[:, None]
    out *= inv[None, :]
    return out


def gram_sketch(w: F32) -> tuple[AxisSketch, AxisSketch]:
    """Rotation-invariant sketches of the rows and of the columns of ``w`` (2-D float32,
    C-contiguous; the columns are read through a transposed view, not a copy)."""
    return gram_axis(w), gram_axis(w.T)
