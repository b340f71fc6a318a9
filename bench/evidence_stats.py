"""Confidence bounds for the rates ``bench evidence`` publishes."""

from __future__ import annotations

import math

from scipy.stats import beta


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper Clopper-Pearson bound on a binomial rate from k successes in n trials:
    the u with P(Bin(n, u) <= k) = 1 - confidence (1 when k = n). Requires 0 <= k <= n, n > 0."""
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided lower Clopper-Pearson bound: the l with P(Bin(n, l) >= k) = 1 - confidence (0 when
    k = 0). Requires 0 <= k <= n, n > 0."""
    if k <= 0:
        return 0.0
    return float(beta.ppf(1 - confidence, k, n - k + 1))


def alpha_limit(alpha: float, n: int, sigmas: float = 3.0) -> float:
    """alpha plus ``sigmas`` binomial standard errors of a rate over n trials (the acceptance limit)."""
    return alpha + sigmas * math.sqrt(alpha * (1 - alpha) / n)
