"""Per-tensor moments stored in a fingerprint: standard deviation and excess kurtosis. Pure.

They carry no evidence of shared origin (two independent initialisations of one architecture have
the same moments); they are what :mod:`client.core.descent.direction` reads as a weak signal of
direction: an initialisation is close to Gaussian or uniform (excess kurtosis 0 or -1.2), and
training tends to grow heavy tails.

Computed in one pass over the float32 matrix the fingerprint already makes, block by block (each
block small enough to stay in cache): the sums of ``d, d^2, d^3, d^4`` with ``d = x - c``, ``c``
a shift taken from a strided sample of the entries (so the central moments do not cancel when the
mean is large against the spread); float32 sums within a block (pairwise for ``d`` and ``d^2``),
float64 across blocks. About 1.5 ms per million entries, a few percent of sketching.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BLOCK = 1 << 16  # entries per block (256 KiB of float32)
SHIFT_SAMPLE = 4096  # entries whose mean is the shift


def moments(w: npt.NDArray[np.float32]) -> tuple[float, float]:
    """(standard deviation, excess kurtosis) of the entries of a float32 array (population
    moments). Precondition: at least one entry. A constant array gives (0.0, 0.0); both values
    are rounded to float32, the stored precision."""
    flat = w.reshape(-1)
    n = flat.size
    shift = np.float32(flat[:: max(1, n // SHIFT_SAMPLE)].mean(dtype=np.float64))
    s1 = s2 = s3 = s4 = 0.0
    d = np.empty(min(n, BLOCK), dtype=np.float32)
    d2 = np.empty_like(d)
    for start in range(0, n, BLOCK):
        block = flat[start : start + BLOCK]
        x, x2 = d[: block.size], d2[: block.size]
        np.subtract(block, shift, out=x)
        np.multiply(x, x, out=x2)
        s1 += float(x.sum())
        s2 += float(x2.sum())
        s3 += float(np.dot(x2, x))
        s4 += float(np.dot(x2, x2))
    m1 = s1 / n
    var = s2 / n - m1 * m1
    if not var > 0:
        return 0.0, 0.0
    m4 = s4 / n - 4 * m1 * s3 / n + 6 * m1 * m1 * s2 / n - 3 * m1**4
    kurt = m4 / (var * var) - 3.0
    return float(np.float32(math.sqrt(var))), float(np.float32(kurt))
