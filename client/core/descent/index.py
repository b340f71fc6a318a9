"""Match one fingerprint against many registered ones. Pure: fingerprints in, ranked matches out.

Two stages, so that 10,000 registered fingerprints answer in seconds:

1. **Screen.** Every sketched tensor gets two *signatures*, one of its direct sketch and one of
   its Gram (rotation-invariant) sketch: the upper triangle of the correlation matrix of its
   unit features, per axis (invariant to unit order; close between a model and
   its derivations, near zero between independent ones). A suspect's signatures are scored
   against all registered ones in one matrix product; exact tensor digests are looked up in a
   dictionary.
2. **Test.** The best-screened fingerprint, up to ``top`` more whose screen score reaches
   ``MIN_SCREEN``, and every one sharing an informative tensor byte for byte, get the full
   :func:`client.core.descent.compare.compare`. Their p-values are
   multiplied by the number of registered fingerprints (Bonferroni over the search), so a
   match is significant against the whole registry, not just against the one compared.

The ledger (registry issue) stores the fingerprints or their commitments; this module only
needs them in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from client.core.descent.compare import DEFAULT_ALPHA, Comparison, compare
from client.core.descent.fingerprint import VERSION, Fingerprint
from client.core.descent.sketch import FREQS, AxisSketch

_IU = np.triu_indices(FREQS, 1)
MIN_SCREEN = 0.45  # signature agreement worth a full test (null maxima over 10,000 models reach ~0.3)
SIG_DIM = len(_IU[0])


def signature(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Unit-norm, centred upper triangle of the feature correlation matrix of one axis."""
    f = features.astype(np.float64)
    f = f - f.mean(axis=0)
    norms = np.linalg.norm(f, axis=0)
    norms[norms == 0] = 1.0
    f /= norms
    v = (f.T @ f)[_IU]
    v -= v.mean()
    n = np.linalg.norm(v)
    out: npt.NDArray[np.float32] = (v / n if n else v).astype(np.float32)
    return out


def _pairs(fp: Fingerprint) -> list[tuple[bytes, AxisSketch, AxisSketch]]:
    """(digest, rows, columns) per sketch pair of the current version: each sketched tensor twice,
    its direct and its Gram (rotation-invariant) axes, so a rotated copy screens too. A
    fingerprint of an older version gives none: it is never searched."""
    if fp.version != VERSION:
        return []
    out = []
    for e in fp.entries:
        if e.sketch is not None and e.gram is not None:
            out += [(e.digest, *e.sketch), (e.digest, *e.gram)]
    return out


def screen_signatures(fp: Fingerprint) -> tuple[list[bytes], list[npt.NDArray[np.float32]],
                                                list[npt.NDArray[np.float32]]]:
    """Digests and row/column signatures of every sketch pair of ``fp`` (see :func:`_pairs`)."""
    pairs = _pairs(fp)
    return ([d for d, _, _ in pairs], [signature(r.features) for _, r, _ in pairs],
            [signature(c.features) for _, _, c in pairs])


@dataclass(frozen=True)
class Match:
    key: str
    screen_score: float
    comparison: Comparison
    adjusted_log10_p: float  # the comparison's p-value times the registry size (capped at 1)
    significant: bool  # related by exact evidence, or adjusted p below alpha


class FingerprintIndex:
    """Registered fingerprints, screened together. Not thread-safe for concurrent ``add``.

    With ``load`` (key -> Fingerprint, e.g. read from the ledger's storage), only digests and
    signatures stay in memory (about 1 KB per sketched tensor) and the few fingerprints that
    reach the full test are loaded on demand; without it, fingerprints are kept in memory.
    """

    def __init__(self, load: Callable[[str], Fingerprint] | None = None) -> None:
        self._load = load
        self._keys: list[str] = []
        self._fps: list[Fingerprint | None] = []
        self._digests: dict[bytes, set[int]] = {}
        self._rows: list[npt.NDArray[np.float32]] = []
        self._cols: list[npt.NDArray[np.float32]] = []
        self._owner: list[int] = []
        self._stacked: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.intp]] | None = None

    def __len__(self) -> int:
        return len(self._fps)

    def add(self, key: str, fp: Fingerprint) -> None:
        self.add_signatures(key, *screen_signatures(fp), fp)

    def add_signatures(self, key: str, digests: list[bytes], rows: list[npt.NDArray[np.float32]],
                       cols: list[npt.NDArray[np.float32]], fp: Fingerprint | None = None) -> None:
        """Register what the screen needs — informative tensor digests and per-tensor row/column
        signatures (:func:`signature`), e.g. as stored by the ledger at registration. ``fp`` is
        kept only when the index has no loader. Requires len(rows) == len(cols)."""
        if len(rows) != len(cols):
            raise ValueError("rows and cols signatures differ in number")
        i = len(self._fps)
        self._keys.append(key)
        self._fps.append(None if self._load else fp)
        for d in digests:
            self._digests.setdefault(d, set()).add(i)
        self._rows.extend(rows)
        self._cols.extend(cols)
        self._owner.extend([i] * len(rows))
        self._stacked = None

    def _matrices(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.intp]]:
        if self._stacked is None:
            empty = np.zeros((0, SIG_DIM), np.float32)
            self._stacked = (
                np.stack(self._rows) if self._rows else empty,
                np.stack(self._cols) if self._cols else empty,
                np.array(self._owner, dtype=np.intp),
            )
        return self._stacked

    def screen(self, suspect: Fingerprint) -> npt.NDArray[np.float64]:
        """Per registered fingerprint, the best signature agreement of any tensor pair (either orientation)."""
        rows, cols, owner = self._matrices()
        scores = np.full(len(self._fps), -np.inf)
        _, rs, cs = screen_signatures(suspect)
        if not rs or not len(owner):
            return scores
        r, c = np.stack(rs), np.stack(cs)
        same = (r @ rows.T + c @ cols.T) / 2
        swapped = (r @ cols.T + c @ rows.T) / 2
        best = np.maximum(same.max(axis=0), swapped.max(axis=0)).astype(np.float64)
        np.maximum.at(scores, owner, best)
        return scores

    def match(self, suspect: Fingerprint, *, alpha: float = DEFAULT_ALPHA, top: int = 5,
              min_screen: float = MIN_SCREEN) -> list[Match]:
        """Matches of ``suspect``, most significant first. Requires 0 < alpha < 1, top >= 0.

        Fully tested: the best-screened fingerprint, up to ``top`` more whose screen score
        reaches ``min_screen``, and every one sharing an informative tensor byte for byte.
        """
        scores = self.screen(suspect)
        order = np.argsort(-scores, kind="stable")[:top].tolist()
        chosen = {i for rank, i in enumerate(order) if rank == 0 or scores[i] >= min_screen}
        for e in suspect.entries:
            if e.sketch is not None:
                chosen |= self._digests.get(e.digest, set())
        ln_n = math.log(max(1, len(self._fps)))
        out = []
        for i in sorted(chosen):
            held = self._fps[i]
            if held is None:
                assert self._load is not None
                held = self._load(self._keys[i])
            if held.version != VERSION:
                continue  # an older fingerprint (indexed by an older release) is not compared
            result = compare(suspect, held, alpha=alpha)
            adjusted = min(0.0, result.statistical_log10_p + ln_n / math.log(10))
            significant = result.basis == "exact" or adjusted < math.log10(alpha)
            out.append(Match(self._keys[i], float(scores[i]), result, adjusted, significant))
        out.sort(key=lambda m: (not m.significant, m.comparison.basis != "exact", m.adjusted_log10_p))
        return out
