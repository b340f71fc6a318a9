"""A verified bundle in plain language and as JSON. Pure."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from client.core.bundle.verify import BundleReport, describe_id
from client.core.records.jsonform import describe, record_json
from client.core.records.signing import key_text
from client.core.witnessed import BAD, MISSING, VERIFIED, SignatureReport, verified_note


def _when(ts: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"unix time {ts}"


def witness_lines(sig: SignatureReport | None) -> list[str]:
    """The checkpoint's witnesses (under a policy) and its unverified signature lines, for the text report."""
    if sig is None:
        return []
    out: list[str] = []
    if sig.quorum is not None:
        met = "met" if sig.satisfied else "NOT met"
        out += ["", f"Witnesses (the policy's quorum {sig.quorum!r}: {met}):"]
        for w in sig.witnesses:
            if w.status == VERIFIED:
                state = f"cosigned this checkpoint at {_when(w.timestamp or 0)}: checks out"
            elif w.status == BAD:
                state = "its cosignature line does NOT verify"
            elif w.status == MISSING and sig.satisfied:
                state = "no cosignature (the quorum counts it, and is met without it)"
            elif w.status == MISSING:
                state = "MISSING (no cosignature; the quorum needs it)"
            else:
                state = "no cosignature (the quorum does not need it)"
            out.append(f"  - {w.name} ({w.key}): {state}")
        if sig.quorum != "none":
            out.append("  The witnesses' timestamps say how recent this checkpoint was when they saw it.")
    if sig.unverified:
        why = ("not counted and not shown as a witness" if sig.quorum is not None else
               "not counted and not shown as a witness; give --policy FILE to check the witnesses you rely on")
        out += ["", "Signature lines that verify under no key given:"]
        out += [f"  - {line}: {why}" for line in sig.unverified_text()]
    return out


def signatures_json(sig: SignatureReport | None) -> dict[str, Any]:
    """The witnesses part of the JSON report."""
    if sig is None:
        return {"policy_quorum": None, "quorum_met": None, "witnesses": [], "unverified_signature_lines": []}
    return {"policy_quorum": sig.quorum, "quorum_met": sig.satisfied,
            "witnesses": [{"name": w.name, "key": w.key, "status": w.status, "timestamp": w.timestamp}
                          for w in sig.witnesses],
            "unverified_signature_lines": [{"name": s.name, "key_id": s.key_id.hex(), "verified": False}
                                           for s in sig.unverified]}


def report_text(report: BundleReport) -> str:
    """What the bundle proves, for a reader who is not a cryptographer."""
    labels = {r.signed.id: describe_id(report, r.signed.id) for r in report.records}
    headline = "VERIFIED: every signature, inclusion proof and lineage link in this bundle checks out."
    if report.key_status_warning is not None:
        headline = headline[:-1] + ", but the signers' key status is UNPROVEN (see the warning at the end)."
    sig = report.signatures
    if sig is not None and sig.unverified and sig.quorum is None:
        headline += (f" Its checkpoint also carries {len(sig.unverified)} signature line(s) under no known key: "
                     "NOT verified (see below).")
    out = [
        headline,
        "",
        f"Log: {report.origin} (key {report.log_key})",
        f"Checkpoint: the log signed a tree of {report.tree_size} entries with root "
        f"{base64.b64encode(report.root).decode()}; every record below is proved to be in that tree.",
        *witness_lines(sig),
        "",
        "Records:",
    ]
    for r in report.records:
        rec = r.signed.record
        who = repr(r.signer_name) if r.signer_name else "an unnamed key"
        out.append(f"  - [{r.role}] logged at index {r.index}: {describe(rec.statement, labels)}")
        out.append(f"      id {r.signed.id.hex()}")
        out.append(f"      signed by {who} with key {key_text(rec.signer)}; the signer states it signed at "
                   f"{_when(rec.timestamp)}")
    if report.path:
        out += ["", "Lineage (each link is a hash of the exact record it names):"]
        for link in report.path:
            out.append(f"  {labels.get(link.child, link.child.hex())} --{link.relation}--> "
                       f"{labels.get(link.parent, link.parent.hex())}")
    if report.oms_notes:
        out += ["", "OpenSSF Model Signing signatures, rechecked offline (DSSE signature; certificate chains and "
                    "transparency-log entries are not checked):"] + [f"  - {n}" for n in report.oms_notes]
    if report.key_notes:
        out += ["", "Key history shown in the bundle:"] + [f"  - {n}" for n in report.key_notes]
    if report.key_status_proved:
        out += ["", f"Key status: the log's signed key-status note lists every identity event (register, rotate, "
                    f"revoke) of these identities among the checkpoint's {report.tree_size} entries, and the bundle "
                    "carries each of them: none was left out. Events after the checkpoint are not covered."]
    elif report.key_status_warning is not None:
        out += ["", f"WARNING: key status unproven: {report.key_status_warning}."]
    else:
        out += ["", "Key status: not proved (this form carries no identity records; it names the signer's key only)."]
    out += ["", "Order of logging is proved by the indices; times are the signers' own statements."]
    return "\n".join(out) + "\n"


def report_json(report: BundleReport) -> dict[str, Any]:
    return {
        "verified": True,
        "log": {"origin": report.origin, "key": report.log_key},
        "checkpoint": {"size": report.tree_size, "root": base64.b64encode(report.root).decode(),
                       "note": _verified_note(report).decode()},
        "witnesses": signatures_json(report.signatures),
        "subject": report.subject.hex(),
        "lineage_to": None if report.lineage_to is None else report.lineage_to.hex(),
        "path": [{"child": x.child.hex(), "parent": x.parent.hex(), "relation": x.relation} for x in report.path],
        "records": [
            {"id": r.signed.id.hex(), "index": r.index, "role": r.role, "signer_name": r.signer_name,
             "record": record_json(r.signed.record), "description": describe(r.signed.record.statement)}
            for r in report.records
        ],
        "key_notes": report.key_notes,
        "oms_signatures": report.oms_notes,
        "key_status": {"proved": report.key_status_proved,
                       "as_of_tree_size": report.tree_size if report.key_status_proved else None,
                       "warning": report.key_status_warning},
    }


def _verified_note(report: BundleReport) -> bytes:
    """The checkpoint note without lines under no known key (those are listed apart, as unverified)."""
    return report.checkpoint_note if report.signatures is None else verified_note(report.checkpoint_note,
                                                                                 report.signatures)
