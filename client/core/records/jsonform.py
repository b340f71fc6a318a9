"""Records as JSON-ready dicts and one-line plain-language sentences, for ``--json`` and reports. Pure.

This is a view for people and scripts, never an encoding: ids, keys and digests
are hex (ids, digests) or ``ed25519:`` text (keys), and nothing here is hashed
or signed. Signer-chosen text in labels and sentences is escaped (``display.safe_text``, or
``repr`` for quoted names), so a control or bidi character in a name cannot reach a terminal.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, assert_never

from client.core.records.display import safe_text
from client.core.records.model import (
    Attestation,
    Claim,
    Dataset,
    Digest,
    Dispute,
    Identity,
    IdentityEvent,
    ModelCheckpoint,
    Record,
    Statement,
)
from client.core.records.signing import key_text


def _digest(d: Digest | None) -> str | None:
    return None if d is None else d.text()


def statement_json(s: Statement) -> dict[str, Any]:
    """The fields of ``s`` as a JSON-ready dict (with ``kind``)."""
    out: dict[str, Any] = {"kind": s.KIND.label}
    match s:
        case Identity():
            out.update(event=s.event.value, name=s.name, key=key_text(s.key))
        case Dataset():
            out.update(
                name=s.name, version=s.version, manifest=s.manifest.hex(), size=s.size, license=s.license,
                sources=list(s.sources), parents=[{"id": p.id.hex(), "relation": p.relation.value} for p in s.parents],
            )
        case ModelCheckpoint():
            out.update(
                model=s.model, run=s.run, step=s.step, version=s.version, manifest=s.manifest.hex(), format=s.format,
                datasets=[{"id": d.id.hex(), "role": d.role.value} for d in s.datasets],
                parents=[{"id": p.id.hex(), "relation": p.relation.value} for p in s.parents],
                config=_digest(s.config), metadata=dict(s.metadata),
                fingerprint=None if s.fingerprint is None else {
                    "digest": f"blake3:{s.fingerprint.digest.hex()}", "mode": s.fingerprint.mode},
            )
        case Attestation():
            out.update(claim=s.claim.value, subject=s.subject.hex(), object=s.object.hex(),
                       evidence=_digest(s.evidence), summary=s.summary)
            if s.oms is not None:
                out["oms"] = {"document": base64.b64encode(s.oms.document).decode("ascii"),
                              "document_sha256": hashlib.sha256(s.oms.document).hexdigest(),
                              "public_key": s.oms.public_key.decode("ascii", "replace")}
        case Dispute():
            out.update(target=s.target.hex(), reason=s.reason, evidence=_digest(s.evidence))
        case _:
            assert_never(s)
    return out


def object_text(s: Attestation) -> str:
    """An attestation's object when it is a digest: ``manifest blake3:<hex>`` or ``OMS model sha256:<hex>``."""
    if s.claim is Claim.OMS_SIGNATURE:
        return f"OMS model sha256:{s.object.hex()}"
    return f"manifest blake3:{s.object.hex()}"


def record_json(record: Record) -> dict[str, Any]:
    return {"signer": key_text(record.signer), "timestamp": record.timestamp, **statement_json(record.statement)}


def short(rid: bytes) -> str:
    """The first 12 hex digits of an id, for prose."""
    return rid.hex()[:12]


def named_label(s: Statement, rid: bytes) -> str | None:
    """``name version [id]`` for a dataset or model checkpoint; None for kinds without a name."""
    match s:
        case ModelCheckpoint():
            return f"{safe_text(s.model)} {safe_text(s.version)} [{short(rid)}]"
        case Dataset():
            return f"{safe_text(s.name)} {safe_text(s.version)} [{short(rid)}]"
        case Identity() | Attestation() | Dispute():
            return None
        case _:
            assert_never(s)


def describe(s: Statement, names: dict[bytes, str] | None = None) -> str:
    """One sentence saying what ``s`` states; ``names`` maps ids to labels for the records it refers to."""
    names = names or {}

    def ref(rid: bytes) -> str:
        return names.get(rid, short(rid))

    match s:
        case Identity():
            verb = {IdentityEvent.REGISTER: "registers", IdentityEvent.ROTATE: "rotates to",
                    IdentityEvent.REVOKE: "revokes"}[s.event]
            return f"identity {s.name!r} {verb} key {key_text(s.key)}"
        case Dataset():
            text = f"dataset {s.name!r} version {s.version!r} ({s.size} bytes, manifest blake3:{s.manifest.hex()}"
            text += f", license {safe_text(s.license)})" if s.license else ")"
            if s.parents:
                text += " derived from " + ", ".join(f"{ref(p.id)} ({p.relation.value})" for p in s.parents)
            return text
        case ModelCheckpoint():
            fmt = safe_text(s.format) if s.format else "unknown format"
            text = f"checkpoint {s.model!r} {safe_text(s.version)} ({fmt}, manifest blake3:{s.manifest.hex()})"
            if s.parents:
                text += "; " + ", ".join(f"{p.relation.value} of {ref(p.id)}" for p in s.parents)
            if s.datasets:
                text += "; trained on " + ", ".join(f"{ref(d.id)} ({d.role.value})" for d in s.datasets)
            if s.fingerprint is not None:
                text += f"; fingerprint {s.fingerprint.mode} (blake3:{s.fingerprint.digest.hex()[:16]}…)"
            return text
        case Attestation():
            obj = ref(s.object) if s.claim.object_is_record else object_text(s)
            text = f"attestation: {ref(s.subject)} {s.claim.value} {obj}"
            return text + (f" ({safe_text(s.summary)})" if s.summary else "")
        case Dispute():
            return f"dispute of {ref(s.target)}: {safe_text(s.reason)}"
        case _:
            assert_never(s)
