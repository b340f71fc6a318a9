"""Compare evidence attached to a report: ``descent-test`` attestations and their evidence files. Pure.

An attestation travels as its own proof bundle (``provenance prove ATTESTATION``), verified like
the main one. It must be about a record of the main bundle (its subject or object). Its evidence
file is the canonical JSON report ``compare --attest --evidence-out`` wrote; it is read only when its
BLAKE3 is the evidence digest the attestation signs, and its two record ids must be the
attestation's. Without the file the report shows the attester's signed summary, labelled as such.
"""

from __future__ import annotations

import json
import math
from typing import Any

import blake3

from client.core.bundle.verify import BundleReport, describe_id
from client.core.jsonlimits import MAX_DEPTH, nesting_depth
from client.core.records.display import safe_text
from client.core.records.jsonform import object_text, short
from client.core.records.model import Attestation
from client.core.records.signing import key_text
from client.core.signer_time import signer_time
from client.errors import InvalidInputError, VerificationError
from client.report.model import ComparisonView, LayerRow

MAX_EVIDENCE_BYTES = 16 << 20
MAX_LAYER_ROWS = 200


class EvidenceError(VerificationError):
    """An attached attestation or evidence file does not hold up; ``part`` names which."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


def _attestation(att: BundleReport, part: str) -> Attestation:
    s = att.records[0].signed.record.statement
    if not isinstance(s, Attestation):
        raise EvidenceError(part, f"is a bundle of a {s.KIND.label} record, not of an attestation")
    return s


def match_evidence(attestations: list[BundleReport], files: list[bytes]) -> list[int | None]:
    """For each attestation, the position in ``files`` of the one whose BLAKE3 is its signed evidence
    digest, or None.

    Raises :class:`InvalidInputError` for a file that is the evidence of none of them.
    """
    digests = []
    for i, att in enumerate(attestations):
        s = _attestation(att, f"attestations[{i}]")
        digests.append(None if s.evidence is None else s.evidence.value)
    out: list[int | None] = [None] * len(attestations)
    for j, data in enumerate(files):
        got = blake3.blake3(data).digest()
        hits = [i for i, d in enumerate(digests) if d == got]
        if not hits:
            raise InvalidInputError(f"evidence file {j + 1} (blake3:{got.hex()}) is the evidence of no attached "
                                    "attestation")
        for i in hits:
            out[i] = j
    return out


def _parse(data: bytes, part: str) -> dict[str, Any]:
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceError(part, f"is {len(data)} bytes, more than {MAX_EVIDENCE_BYTES}")
    if nesting_depth(data) > MAX_DEPTH:
        raise EvidenceError(part, f"nests more than {MAX_DEPTH} levels deep")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise EvidenceError(part, f"is not JSON: {err}") from err
    if not isinstance(obj, dict):
        raise EvidenceError(part, "is not a JSON object")
    return obj


def _number(obj: dict[str, Any], key: str, part: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise EvidenceError(f"{part}.{key}", "is not a finite number")
    return float(v)


def _text(obj: dict[str, Any], key: str, part: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise EvidenceError(f"{part}.{key}", "is not a string")
    return safe_text(v)


def _p_text(basis: str | None, p: float | None, log10_p: float | None) -> str | None:
    if basis == "exact":
        return "0 (exact: informative tensors are byte-identical)"
    if log10_p is not None and log10_p < -300:
        return f"1e{log10_p:.0f}"
    return None if p is None else f"{p:.3g}"


def _shared(obj: dict[str, Any], part: str) -> tuple[str | None, str | None]:
    counts, frac = obj.get("shared_tensors"), obj.get("shared_fraction")
    tensors = fraction = None
    if isinstance(counts, dict):
        n = {k: _number(counts, k, f"{part}.shared_tensors") for k in ("shared", "informative", "layers_shared",
                                                                       "layers")}
        if all(v is not None for v in n.values()):
            tensors = (f"{n['shared']:.0f} of {n['informative']:.0f} informative tensors of A, in "
                       f"{n['layers_shared']:.0f} of {n['layers']:.0f} layers")
    if isinstance(frac, dict):
        a, b = _number(frac, "a_in_b", f"{part}.shared_fraction"), _number(frac, "b_in_a", f"{part}.shared_fraction")
        if a is not None and b is not None:
            fraction = f"{a:.2%} of A's parameters are byte-identical in B; {b:.2%} of B's in A"
    return tensors, fraction


def _layers(obj: dict[str, Any], part: str) -> tuple[LayerRow, ...]:
    rows = obj.get("extent")
    if not isinstance(rows, list):
        return ()
    out = []
    for i, row in enumerate(rows[:MAX_LAYER_ROWS]):
        where = f"{part}.extent[{i}]"
        if not isinstance(row, dict):
            raise EvidenceError(where, "is not an object")
        b_layers = row.get("b_layers")
        names = [safe_text(str(x)) for x in b_layers] if isinstance(b_layers, list) else []
        shared, total = _number(row, "shared_tensors", where), _number(row, "tensors", where)
        out.append(LayerRow(_text(row, "layer", where) or "?", row.get("shared") is True,
                            f"{shared or 0:.0f} of {total or 0:.0f}", ", ".join(names) or "-"))
    return tuple(out)


def comparison_view(att: BundleReport, evidence: bytes | None, bundle: BundleReport, part: str) -> ComparisonView:
    """The attestation of the verified bundle ``att`` shown against the main ``bundle`` (see the module docstring)."""
    s = _attestation(att, part)
    ids = {r.signed.id for r in bundle.records}
    if s.subject not in ids and s.object not in ids:
        raise EvidenceError(part, f"is about records {short(s.subject)} and {short(s.object)}, neither of which "
                                  "is in the bundle the report is about")
    head = att.records[0]
    who = f"{head.signer_name!r}" if head.signer_name else "an unnamed key"
    verdict = p_value = alpha = basis = tensors = fraction = None
    layers: tuple[LayerRow, ...] = ()
    if evidence is not None:
        if s.evidence is None or blake3.blake3(evidence).digest() != s.evidence.value:
            raise EvidenceError(f"{part}.evidence", "the file supplied is not the evidence the attestation signs")
        obj = _parse(evidence, f"{part}.evidence")
        for key, want in (("subject", s.subject), ("object", s.object)):
            if obj.get(key) != want.hex():
                raise EvidenceError(f"{part}.evidence.{key}", f"is not the attestation's {key} {want.hex()}")
        verdict, basis = _text(obj, "verdict", f"{part}.evidence"), _text(obj, "basis", f"{part}.evidence")
        p_value = _p_text(basis, _number(obj, "p_value", part), _number(obj, "log10_p", part))
        a = _number(obj, "alpha", f"{part}.evidence")
        alpha = None if a is None else f"{a:g}"
        tensors, fraction = _shared(obj, f"{part}.evidence")
        layers = _layers(obj, f"{part}.evidence")

    def label(rid: bytes) -> str:
        return describe_id(bundle, rid) if rid in ids else f"record {rid.hex()} (not in the bundle)"

    return ComparisonView(
        attestation_id=head.signed.id.hex(), subject_id=s.subject.hex(), object_id=s.object.hex(),
        index=head.index, tree_size=att.tree_size, claim=s.claim.value,
        attester=f"{who} (key {key_text(head.signed.record.signer)})", subject=label(s.subject),
        object=label(s.object) if s.claim.object_is_record else object_text(s),
        summary=safe_text(s.summary), evidence_digest=None if s.evidence is None else s.evidence.text(),
        evidence_checked=evidence is not None, verdict=verdict, p_value=p_value, alpha=alpha, basis=basis,
        shared_tensors=tensors, shared_fraction=fraction, layers=layers,
        signer_time=signer_time(head.signed.record.timestamp, iso=False),
    )
