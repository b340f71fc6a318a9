"""Extent of a relation: which tensors and layers of A are shared with B. Pure.

Input: every informative tensor of A with its number of candidate pairs (the tensors of B it could
be paired with, in either orientation), and the pairs compared (byte-identical ones and fully tested
ones, as :class:`~client.core.descent.compare.PairEvidence`). For each tensor of A:

- its *best partner* in B: a byte-identical tensor if there is one, else the tested pair of
  smallest p-value;
- its *own p-value*: the smallest p-value of its tested pairs times its number of candidate pairs
  (Bonferroni over that tensor's candidates; each pair's p-value is already corrected for the axes
  it tested). The full test is run on a screened subset of the candidates, and the minimum over a
  subset is never below the minimum over all, so this bound holds whichever pairs were tested: a
  per-tensor claim "this tensor of A has a partner in B" at level p is valid on its own. A
  byte-identical informative tensor has p = 0.
- ``shared``: Holm's step-down over all informative tensors of A at ``alpha`` on those p-values, so
  that the map as a whole (every tensor called shared) has family-wise error at most ``alpha``
  under any dependence between tensors; in the verdict's sense a spurious "shared" tensor is as
  rare as a false ``related``.

Layers: a tensor's layer is its name up to the first path component that is an integer
(``layers.3.``, ``h.3.``, ``blocks.3.``, ``model.layers.3.``, ``blk.3.``; components separated by
``.`` or ``/``); a name without one is its own group. A layer is shared if any of its tensors is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

_LAYER = re.compile(r"(?:^|[./])([0-9]+)(?=[./]|$)")
_LN10 = math.log(10)

T = TypeVar("T")


class Pair(Protocol):
    """A compared pair (what :class:`~client.core.descent.compare.PairEvidence` provides)."""

    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def how(self) -> str: ...
    @property
    def log10_p(self) -> float: ...


def layer_of(name: str) -> tuple[str, int | None]:
    """(layer group, layer index) of a tensor name; (name, None) when no component is an integer."""
    m = _LAYER.search(name)
    if m is None:
        return name, None
    return name[: m.end()], int(m.group(1))


def _log10(x: float | None) -> float | None:
    if x is None:
        return None
    return round(x, 3) if math.isfinite(x) else None


@dataclass(frozen=True)
class TensorExtent:
    """One informative tensor of A: its best partner in B (None if it has no candidate and no
    byte-identical twin), how they matched, its own corrected log10 p-value, and whether Holm's
    procedure calls it shared."""

    a: str
    b: str | None
    how: str
    log10_p: float  # -inf when byte-identical; 0.0 when nothing was tested
    candidates: int
    shared: bool

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "how": self.how, "log10_p": _log10(self.log10_p),
                "byte_identical": self.log10_p == -math.inf, "candidates": self.candidates, "shared": self.shared}


@dataclass(frozen=True)
class LayerExtent:
    """One layer group of A (see :func:`layer_of`) and its tensors."""

    layer: str
    index: int | None
    tensors: tuple[TensorExtent, ...]

    @property
    def shared(self) -> bool:
        return any(t.shared for t in self.tensors)

    @property
    def b_tensors(self) -> tuple[str, ...]:
        """The tensors of B its shared tensors map to."""
        return tuple(sorted({t.b for t in self.tensors if t.shared and t.b is not None}))

    @property
    def b_layers(self) -> tuple[str, ...]:
        return tuple(sorted({layer_of(b)[0] for b in self.b_tensors}))

    @property
    def min_log10_p(self) -> float:
        return min((t.log10_p for t in self.tensors), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "index": self.index, "shared": self.shared,
                "shared_tensors": sum(t.shared for t in self.tensors), "tensors": len(self.tensors),
                "b_tensors": list(self.b_tensors), "b_layers": list(self.b_layers),
                "min_log10_p": _log10(self.min_log10_p), "byte_identical": self.min_log10_p == -math.inf,
                "detail": [t.to_json() for t in self.tensors]}


@dataclass(frozen=True)
class Extent:
    """Per layer group of A, in name order; ``alpha`` is the family-wise level of ``shared``."""

    alpha: float
    layers: tuple[LayerExtent, ...] = ()

    @property
    def tensors(self) -> tuple[TensorExtent, ...]:
        return tuple(t for layer in self.layers for t in layer.tensors)

    @property
    def shared_tensors(self) -> int:
        return sum(t.shared for t in self.tensors)

    def shared_pairs(self) -> list[tuple[str, str]]:
        """(tensor of A, its partner in B) for every shared tensor."""
        return [(t.a, t.b) for t in self.tensors if t.shared and t.b is not None]

    def counts(self) -> dict[str, int]:
        return {"shared": self.shared_tensors, "informative": len(self.tensors),
                "layers_shared": sum(layer.shared for layer in self.layers), "layers": len(self.layers)}


def best_untested(cands: Sequence[T], a_of: Callable[[T], str], done: Set[str],
                  score: Callable[[T], float]) -> list[T]:
    """For every tensor of A (``a_of``) that has candidates but none in ``done``: its best-scoring
    candidate (first on ties). At most one per tensor of A: what :func:`extent` needs, at a bounded
    cost (``score`` is only called for those tensors' candidates, and not when a tensor has one)."""
    groups: dict[str, list[T]] = {}
    for c in cands:
        name = a_of(c)
        if name not in done:
            groups.setdefault(name, []).append(c)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
        else:
            scores = [score(c) for c in group]
            out.append(group[max(range(len(group)), key=lambda i: (scores[i], -i))])
    return out


def extent(candidates: Mapping[str, int], pairs: Iterable[Pair], alpha: float) -> Extent:
    """The extent map (module docstring). ``candidates``: every informative tensor of A with its
    number of candidate pairs; ``pairs``: byte-identical pairs (log10_p = -inf) and tested pairs.
    Requires 0 < alpha < 1."""
    best: dict[str, Pair] = {}
    for p in pairs:
        if p.a in candidates and (p.a not in best or p.log10_p < best[p.a].log10_p):
            best[p.a] = p
    own: dict[str, float] = {}
    for name, k in candidates.items():
        hit = best.get(name)
        if hit is None:
            own[name] = 0.0
        elif hit.log10_p == -math.inf:
            own[name] = -math.inf
        else:
            own[name] = min(0.0, hit.log10_p + math.log10(max(1, k)))
    # Holm: the j-th smallest p-value (from 0) is tested at alpha / (m - j), stopping at the first failure.
    m = len(own)
    shared: set[str] = set()
    for j, name in enumerate(sorted(own, key=lambda n: (own[n], n))):
        if own[name] * _LN10 >= math.log(alpha) - math.log(m - j):
            break
        shared.add(name)
    groups: dict[tuple[str, int | None], list[TensorExtent]] = {}
    for name in sorted(candidates):
        hit = best.get(name)
        groups.setdefault(layer_of(name), []).append(TensorExtent(
            a=name, b=hit.b if hit is not None else None,
            how=hit.how if hit is not None else ("not tested" if candidates[name] else "no candidate"),
            log10_p=own[name], candidates=candidates[name], shared=name in shared))
    order = sorted(groups, key=lambda g: (g[0][: len(g[0]) - len(str(g[1]))] if g[1] is not None else g[0],
                                          -1 if g[1] is None else g[1], g[0]))
    return Extent(alpha, tuple(LayerExtent(g[0], g[1], tuple(groups[g])) for g in order))
