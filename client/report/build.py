"""The court report's model, built from a verified bundle or from the verifier's error. Pure.

:func:`verified_report` takes the :class:`~client.core.bundle.verify.BundleReport` that
``provenance verify`` would print; :func:`failed_report` takes the error that verification raised,
and says so in the report's title and first paragraph, naming the part. Statements and labels
come from :mod:`client.core.records.jsonform` (the same words as ``provenance verify``); the checks
and commands are in :mod:`client.report.recheck`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import assert_never

from client.core.bundle.format import Bundle, parse
from client.core.bundle.tlog_proof import parse_tlog_proof
from client.core.bundle.verify import BundleReport, VerifiedRecord, describe_id
from client.core.note import Verifier
from client.core.records import SignedRecord, parse_entry
from client.core.records.display import safe_text
from client.core.records.jsonform import describe, object_text, short
from client.core.records.lineage import lineage_edges
from client.core.records.model import Attestation, Dataset, Dispute, Identity, ModelCheckpoint, Statement
from client.core.records.signing import key_text
from client.core.signer_time import signer_time
from client.core.witnessed import SignatureReport, verified_note
from client.errors import ProvenanceError, VerificationError
from client.report.layout import Claimed, NodeSpec, SideLink, layout
from client.report.model import (
    ComparisonView,
    CourtReport,
    Fact,
    Graph,
    KeyEvent,
    RecordView,
    SignerView,
    Witness,
)
from client.report.recheck import Sources, checks, commands, failed_checks
from client.report.witnesses import witness_views


def _title(s: Statement, rid: bytes) -> str:
    match s:
        case ModelCheckpoint():
            return f"model {safe_text(s.model)} {safe_text(s.version)}"
        case Dataset():
            return f"dataset {safe_text(s.name)} {safe_text(s.version)}"
        case Identity():
            return f"identity {s.name}: {s.event.value}"
        case Attestation():
            return f"attestation {s.claim.value}"
        case Dispute():
            return f"dispute of {short(s.target)}"
        case _:
            assert_never(s)


def _fields(s: Statement, labels: dict[bytes, str]) -> tuple[Fact, ...]:
    """The signed fields of ``s``; digests and ids in full."""
    def ref(rid: bytes) -> str:
        return f"{labels[rid]} ({rid.hex()})" if rid in labels else rid.hex()

    out: list[Fact] = []
    match s:
        case Identity():
            out += [Fact("event", s.event.value), Fact("name", s.name), Fact("key", key_text(s.key), True)]
        case Dataset():
            out += [Fact("name", safe_text(s.name)), Fact("version", safe_text(s.version)),
                    Fact("manifest", f"blake3:{s.manifest.hex()}", True), Fact("size", f"{s.size} bytes"),
                    Fact("license", safe_text(s.license) or "(none stated)")]
            out += [Fact("source", safe_text(src)) for src in s.sources]
            out += [Fact(f"parent ({p.relation.value})", ref(p.id), True) for p in s.parents]
        case ModelCheckpoint():
            out += [Fact("model", safe_text(s.model)), Fact("version", safe_text(s.version)),
                    Fact("format", safe_text(s.format) or "(none stated)"),
                    Fact("manifest", f"blake3:{s.manifest.hex()}", True)]
            out += [Fact(f"parent ({p.relation.value})", ref(p.id), True) for p in s.parents]
            out += [Fact(f"trained on ({d.role.value})", ref(d.id), True) for d in s.datasets]
            if s.config is not None:
                out.append(Fact("config", s.config.text(), True))
            if s.fingerprint is not None:
                out.append(Fact(f"fingerprint ({s.fingerprint.mode})", f"blake3:{s.fingerprint.digest.hex()}", True))
            out += [Fact(f"metadata {safe_text(k)}", safe_text(v)) for k, v in s.metadata]
        case Attestation():
            out += [Fact("claim", s.claim.value), Fact("subject", ref(s.subject), True),
                    Fact("object", ref(s.object) if s.claim.object_is_record else object_text(s), True)]
            if s.evidence is not None:
                out.append(Fact("evidence", s.evidence.text(), True))
            if s.summary:
                out.append(Fact("summary", safe_text(s.summary)))
        case Dispute():
            out += [Fact("target", ref(s.target), True), Fact("reason", safe_text(s.reason))]
            if s.evidence is not None:
                out.append(Fact("evidence", s.evidence.text(), True))
        case _:
            assert_never(s)
    return tuple(out)


def _view(position: int, role: str, index: int, signed: SignedRecord, name: str | None,
          labels: dict[bytes, str]) -> RecordView:
    rec = signed.record
    return RecordView(position, role, index, rec.statement.KIND.label, _title(rec.statement, signed.id),
                      describe(rec.statement, labels), signed.id.hex(), name, key_text(rec.signer),
                      signer_time(rec.timestamp, iso=False), _fields(rec.statement, labels))


def _signers(report: BundleReport) -> tuple[SignerView, ...]:
    events: dict[str, list[KeyEvent]] = {}
    for r in sorted(report.records, key=lambda r: r.index):
        s = r.signed.record.statement
        if isinstance(s, Identity):
            events.setdefault(s.name, []).append(KeyEvent(r.index, s.event.value, key_text(s.key)))
    out = []
    for name, evs in events.items():
        keys = tuple(dict.fromkeys(e.key for e in evs))
        out.append(SignerView(name, keys, tuple(evs)))
    return tuple(out)


def _graph(report: BundleReport, labels: dict[bytes, str], comparisons: tuple[ComparisonView, ...]) -> Graph:
    by_id = {r.signed.id: r for r in report.records}
    chain = [report.subject] + [link.parent for link in report.path]

    def spec(rid: bytes) -> NodeSpec:
        r = by_id.get(rid)
        if r is None:
            return NodeSpec(rid.hex(), f"record {short(rid)}", "named, not in this bundle", False)
        title = _title(r.signed.record.statement, rid)
        return NodeSpec(rid.hex(), title, f"index {r.index} · {short(rid)}", True)

    sides = []
    for rid in chain:
        for pid, rel in lineage_edges(by_id[rid].signed.record.statement):
            sides.append(SideLink(rid.hex(), spec(pid), rel))
    claims = [Claimed(c.subject_id, c.object_id, f"{c.claim}: {c.verdict or 'see its summary'}")
              for c in comparisons]
    return layout([spec(rid) for rid in chain], sides, claims)


def _note_text(note: bytes) -> str:
    """The note's lines made safe one by one (a note holds no controls but newlines; bidi is escaped)."""
    return "\n".join(safe_text(line) for line in note.decode("utf-8", "replace").split("\n"))


def _proofs(data: bytes) -> tuple[list[tuple[int, tuple[bytes, ...]]], bytes | None]:
    """(index, inclusion proof) of each record in ``data``, a bundle or a tlog-proof, and its key-status
    note; nothing when the bytes parse as neither (a failed report)."""
    try:
        b = parse(data)
        return [(r.index, r.inclusion_proof) for r in b.records], b.key_status
    except ProvenanceError:
        pass
    try:
        p = parse_tlog_proof(data)
    except ProvenanceError:
        return [], None
    return [(p.index, p.proof)], None


def _digests(data: bytes, bundle: Bundle | None, report: BundleReport | None,
             comparisons: tuple[ComparisonView, ...]) -> tuple[Fact, ...]:
    out = [Fact("bundle file (SHA-256)", hashlib.sha256(data).hexdigest(), True)]
    if report is not None:
        out += [Fact("log key", report.log_key, True),
                Fact("checkpoint root (base64)", base64.b64encode(report.root).decode(), True),
                Fact("checkpoint root (hex)", report.root.hex(), True)]
    if bundle is not None:
        out += [Fact(f"records[{i}] id (index {r.index}), as the bundle states it", r.id.hex(), True)
                for i, r in enumerate(bundle.records)]
    proofs, key_status = _proofs(data)
    if key_status is not None:
        out.append(Fact("key-status note (SHA-256)", hashlib.sha256(key_status).hexdigest(), True))
    for i, (index, hashes) in enumerate(proofs):
        out += [Fact(f"records[{i}] (index {index}) inclusion proof [{j}]", h.hex(), True)
                for j, h in enumerate(hashes)]
    if report is not None:
        for v in report.records:
            out.append(Fact(f"records[{v.position}] id (index {v.index})", v.signed.id.hex(), True))
            out += [Fact(f"records[{v.position}] {f.label}", f.value, True) for f in
                    _fields(v.signed.record.statement, {}) if f.mono]
            out.append(Fact(f"records[{v.position}] signer key", key_text(v.signed.record.signer), True))
    for i, c in enumerate(comparisons):
        out.append(Fact(f"attestations[{i}] id (index {c.index})", c.attestation_id, True))
        if c.evidence_digest is not None:
            out.append(Fact(f"attestations[{i}] evidence", c.evidence_digest, True))
    return tuple(out)


def verified_report(data: bytes, report: BundleReport, sources: Sources, *,
                    comparisons: tuple[ComparisonView, ...] = ()) -> CourtReport:
    """The report of bundle bytes ``data`` that verified as ``report``."""
    labels = {r.signed.id: describe_id(report, r.signed.id) for r in report.records}
    subject = next(r for r in report.records if r.role == "subject")
    views = tuple(_view(r.position, r.role, r.index, r.signed, r.signer_name, labels) for r in report.records)
    log = Verifier.from_text(report.log_key)
    wits, wit_summary = witness_views(report.checkpoint_note, log, report.signatures)
    warnings = [f"the checkpoint's witness line by {w.name} does not verify" for w in wits if w.status == "bad"]
    if report.key_status_warning is not None:
        warnings.insert(0, f"key status unproven: {report.key_status_warning}")
    warnings += report.key_notes
    lead = (f"Every signature, inclusion proof and lineage link in this bundle checks out against the public key "
            f"of the log {safe_text(report.origin)}. It proves that {_who(subject)} signed the "
            f"{_title_of(subject)} and that the log recorded it at index {subject.index} of a tree of "
            f"{report.tree_size} entries.")
    if report.key_status_warning is not None:
        lead += " The signers' key status is UNPROVEN (see the warnings)."
    return CourtReport(
        verified=True, title=f"VERIFIED: {_title_of(subject)}", lead=lead, failure_part=None,
        bundle_name=safe_text(sources.bundle), bundle_sha256=hashlib.sha256(data).hexdigest(),
        origin=safe_text(report.origin), log_key=safe_text(report.log_key), tree_size=report.tree_size,
        root=base64.b64encode(report.root).decode(),
        checkpoint_note=_note_text(report.checkpoint_note if report.signatures is None else
                                   verified_note(report.checkpoint_note, report.signatures)),
        claims=tuple(v.sentence for v in views if v.role != "identity"), records=views, signers=_signers(report),
        key_status=_key_status(report), witnesses=wits, witness_summary=wit_summary,
        lineage=_graph(report, labels, comparisons),
        comparisons=comparisons, checks=checks(report, comparisons), commands=commands(sources),
        warnings=tuple(warnings), digests=_digests(data, None, report, comparisons),
    )


def _who(r: VerifiedRecord) -> str:
    return f"the identity {r.signer_name!r}" if r.signer_name else f"the key {key_text(r.signed.record.signer)}"


def _title_of(r: VerifiedRecord) -> str:
    return _title(r.signed.record.statement, r.signed.id)


def _key_status(report: BundleReport) -> str:
    if report.key_status_proved:
        return (f"Proved: the log's signed key-status note lists every identity event (register, rotate, revoke) of "
                f"these identities among the checkpoint's {report.tree_size} entries, and the bundle carries each "
                "of them, so none was left out. Events logged after the checkpoint are not covered.")
    if report.key_status_warning is not None:
        return f"UNPROVEN: {report.key_status_warning}."
    return "Not proved: this form carries no identity records; it names the signer's key only."


def failed_report(data: bytes, error: VerificationError, sources: Sources) -> CourtReport:
    """The report of bundle bytes ``data`` that failed verification with ``error`` (its part named first)."""
    part = getattr(error, "part", "bundle")
    message = safe_text(str(error).removeprefix(f"{part}: "))  # the part is named once, before it
    bundle: Bundle | None
    try:
        bundle = parse(data)
    except ProvenanceError:
        bundle = None
    views: list[RecordView] = []
    if bundle is not None:
        for i, r in enumerate(bundle.records):
            try:
                signed = parse_entry(r.leaf)
            except ProvenanceError:
                continue
            views.append(_view(i, "unverified", r.index, signed, None, {}))
    sha = hashlib.sha256(data).hexdigest()
    wits: tuple[Witness, ...] = ()
    summary = "Not examined: verification stopped before the checkpoint was accepted."
    sig = getattr(error, "report", None)  # a checkpoint refused by the witness policy says which lines it had
    if isinstance(sig, SignatureReport) and bundle is not None:
        with contextlib.suppress(ProvenanceError):  # a key that does not parse: the lines stay unlisted
            wits, summary = witness_views(bundle.checkpoint, Verifier.from_text(sources.log_key_text), sig)
    return CourtReport(
        verified=False, title=f"NOT VERIFIED: the proof bundle fails at {safe_text(part)}",
        lead=(f"NOT VERIFIED. This evidence does not verify against the log key given, so it proves nothing: the "
              f"verifier stopped at {safe_text(part)}: {message}. Whatever the bundle states below is shown only to "
              "identify it and must not be relied on."),
        failure_part=safe_text(part), bundle_name=safe_text(sources.bundle), bundle_sha256=sha,
        origin=safe_text(bundle.origin) if bundle else "(unreadable)", log_key=sources.log_key_text,
        tree_size=None, root=None, checkpoint_note=_note_text(bundle.checkpoint) if bundle else "",
        claims=tuple(f"(NOT verified) {v.sentence}" for v in views), records=tuple(views), signers=(),
        key_status="Not checked: verification stopped before it.", witnesses=wits, witness_summary=summary,
        lineage=None, comparisons=(),
        checks=failed_checks(part, message), commands=commands(sources),
        warnings=(f"NOT VERIFIED: {safe_text(part)}: {message}",),
        digests=_digests(data, bundle, None, ()),
    )
