"""Evidence for the direction of a relation: the ledger's registration order, and weight drift. Pure.

Two kinds, never mixed, each labelled with its strength:

- **Ledger order** (:func:`ledger_order`): when both models are registered records, the one with the
  lower log index was logged first. That proves which *existed first on this log* (a record commits to
  the weights' manifest, so whoever logged it held those weights then), not who trained first: an
  honest lab may register late. Record times are the signers' clocks and shown, never compared.
- **Weight drift** (:func:`weight_signal`; weak): for each shared tensor pair, the side whose entries
  look more like an initialisation votes "earlier". Two moments from the fingerprint
  (:mod:`client.core.descent.moments`) vote separately: excess kurtosis (the side nearer an
  initialisation's value, 0 for Gaussian or -1.2 for uniform, whichever is nearer: training moves
  it away) and standard deviation (the smaller side:
  without strong weight decay, training tends to grow weights). Votes are summarised by a two-sided
  sign test. The tensors of one model are not independent draws, so that p-value describes the
  votes, it does not prove a direction; a fine-tune, quantisation, weight decay, a rescaling or a
  re-initialisation can move either moment either way (docs/descent.md states how often it pointed
  the right way on the trained test models).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LEDGER_LABEL = "ledger: registration order (strong: proves which existed first on this log, not who trained first)"
WEIGHTS_CAVEAT = "a fine-tune, quantisation or re-initialisation can move kurtosis either way"
STD_CAVEAT = "weight decay, rescaling or quantisation can move the spread either way"
INIT_KURTOSIS = (0.0, -1.2)  # excess kurtosis of Gaussian and of uniform initialisations
TIE = 1e-3  # moments closer than this (relative to the larger magnitude, at least absolute 1e-3) do not vote

Moments = tuple[float, float]  # (standard deviation, excess kurtosis)


@dataclass(frozen=True)
class Registration:
    """A registered record of one side: its id, log index and the signer's claimed time (Unix seconds)."""

    record: bytes
    index: int
    timestamp: int


@dataclass(frozen=True)
class LedgerOrder:
    a: Registration
    b: Registration
    proved: bool  # inclusion of both records proved against a trusted checkpoint

    @property
    def first(self) -> str | None:
        """"a" or "b", whichever was logged first; None for one record on both sides."""
        if self.a.index == self.b.index:
            return None
        return "a" if self.a.index < self.b.index else "b"

    def text(self) -> str:
        order = ("A and B are the same record" if self.first is None else
                 f"{'A' if self.first == 'a' else 'B'} was registered first")
        proof = "" if self.proved else "; indexes as the server reported them, not proved"
        return (f"{LEDGER_LABEL}: {order} (A at index {self.a.index}, B at index {self.b.index}; "
                f"signers' times {self.a.timestamp} and {self.b.timestamp}{proof})")

    def to_json(self) -> dict[str, Any]:
        side = {"a": self.a, "b": self.b}
        return {"label": LEDGER_LABEL, "first": self.first, "proved": self.proved, "text": self.text(),
                **{k: {"record": r.record.hex(), "index": r.index, "timestamp": r.timestamp} for k, r in side.items()}}


def ledger_order(a: Registration, b: Registration, *, proved: bool) -> LedgerOrder:
    return LedgerOrder(a, b, proved)


@dataclass(frozen=True)
class Votes:
    """Votes of the shared tensors on one moment: how many say A is earlier, B is earlier, or tie."""

    moment: str  # "kurtosis" or "std"
    a_earlier: int
    b_earlier: int
    ties: int

    @property
    def shared(self) -> int:
        return self.a_earlier + self.b_earlier + self.ties

    @property
    def suggests(self) -> str | None:
        """"A -> B" (A earlier), "B -> A", or None when the votes are even or there are none."""
        if self.a_earlier == self.b_earlier:
            return None
        return "A -> B" if self.a_earlier > self.b_earlier else "B -> A"

    @property
    def p_value(self) -> float:
        """Two-sided sign test of the non-tied votes (1.0 when there are none)."""
        n = self.a_earlier + self.b_earlier
        low = min(self.a_earlier, self.b_earlier)
        # exact: twice the probability of a split at least this uneven, Binomial(n, 1/2)
        return float(min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2**n))

    def text(self) -> str:
        caveat = WEIGHTS_CAVEAT if self.moment == "kurtosis" else STD_CAVEAT
        what = "excess kurtosis" if self.moment == "kurtosis" else "std"
        if self.suggests is None:
            return (f"weights ({what}) suggest no direction (weak: {self.a_earlier} vs {self.b_earlier} of "
                    f"{self.shared} shared tensors, {self.ties} even)")
        n = max(self.a_earlier, self.b_earlier)
        return (f"weights ({what}) suggest {self.suggests} (weak: {n} of {self.shared} shared tensors, sign test "
                f"p {self.p_value:.2g}; {caveat})")

    def to_json(self) -> dict[str, Any]:
        return {"moment": self.moment, "suggests": self.suggests, "a_earlier": self.a_earlier,
                "b_earlier": self.b_earlier, "ties": self.ties, "shared_tensors": self.shared,
                "sign_test_p": self.p_value, "text": self.text()}


def _vote(x: float, y: float) -> int:
    """-1 when x is the earlier-looking value, 1 when y is, 0 when they are within TIE."""
    if abs(x - y) <= TIE * max(1.0, abs(x), abs(y)):
        return 0
    return -1 if x < y else 1


def _from_init(kurtosis: float) -> float:
    return min(abs(kurtosis - k) for k in INIT_KURTOSIS)


def weight_signal(pairs: Sequence[tuple[Moments, Moments]]) -> tuple[Votes, Votes]:
    """Kurtosis and std votes over shared tensor pairs ((moments in A, moments in B) each)."""
    out = []
    for moment in ("kurtosis", "std"):
        votes = [_vote(_from_init(a[1]), _from_init(b[1])) if moment == "kurtosis" else _vote(a[0], b[0])
                 for a, b in pairs]
        out.append(Votes(moment, votes.count(-1), votes.count(1), votes.count(0)))
    return out[0], out[1]


@dataclass(frozen=True)
class Direction:
    """What speaks to direction: the ledger order if known, the weight votes (None when nothing is
    shared), and the standing note."""

    note: str
    kurtosis: Votes | None = None
    std: Votes | None = None
    ledger: LedgerOrder | None = None

    def lines(self) -> list[str]:
        out = [self.ledger.text()] if self.ledger is not None else []
        out += [v.text() for v in (self.kurtosis, self.std) if v is not None and v.shared]
        return out + [f"note: {self.note}"]

    def to_json(self) -> dict[str, Any]:
        weights = None if self.kurtosis is None or self.std is None else {
            "label": "weights (weak)", "suggests": self.kurtosis.suggests, "text": self.kurtosis.text(),
            "kurtosis": self.kurtosis.to_json(), "std": self.std.to_json()}
        return {"ledger": self.ledger.to_json() if self.ledger is not None else None, "weights": weights,
                "note": self.note}

