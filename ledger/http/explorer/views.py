"""What the explorer's record pages show, gathered from the registry and the log as plain values.

Each function reads a bounded amount (one record, its proof, at most :data:`MAX_ABOUT` claims
about it, :data:`MAX_FILES` manifest entries) and returns frozen view values for the templates;
nothing here formats HTML (the templates escape what these values hold; see ``render.py``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from client.core.manifest.codec import decode
from client.core.merkle import leaf_hash, verify_inclusion
from client.core.records import (
    Attestation,
    Claim,
    Dataset,
    Dispute,
    Identity,
    ModelCheckpoint,
    SignedRecord,
    key_text,
)
from client.core.records.jsonform import object_text
from client.errors import FormatError, NotFoundError, ProofError
from ledger.registry.queries import LoggedRecord, RegistryReader

MAX_ABOUT = 200
MAX_FILES = 50
MAX_REFS = 64  # references named in a record's fields (the rest are listed by id only)

_VERDICT = re.compile(r"descent test: ([a-z-]+) \(([a-z]+)\)")


def when(ts: int) -> str:
    """A signer's timestamp (seconds since the epoch) in UTC, or the bare number when out of range."""
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts} (seconds since 1970)"


@dataclass(frozen=True, slots=True)
class Field:
    """One signed field: its label, its value as text, and where a reference leads (a record page)."""

    label: str
    value: str
    href: str | None = None
    mono: bool = False


@dataclass(frozen=True, slots=True)
class SignerView:
    key_hex: str
    key_text: str
    name: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Summary:
    """A record in a list: id, index, kind, a title and a subtitle, who signed it and when."""

    rid_hex: str
    index: int
    kind: str
    title: str
    subtitle: str
    signer: SignerView
    time: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """An attestation or dispute about the record shown, with the verdict a descent test states."""

    summary: Summary
    claim: str
    other_hex: str | None
    other_label: str
    text_lines: tuple[str, ...]
    verdict: str | None
    basis: str | None
    evidence: str | None


@dataclass(frozen=True, slots=True)
class ProofView:
    index: int
    size: int
    leaf_hex: str
    hashes: tuple[str, ...]
    root_hex: str
    verified: bool
    note: str


@dataclass(frozen=True, slots=True)
class ManifestView:
    digest_hex: str
    stored: bool
    files: tuple[tuple[str, int, str], ...]
    total_files: int


def signer_view(reader: RegistryReader, key: bytes) -> SignerView:
    try:
        info = reader.key_info(key)
    except NotFoundError:
        return SignerView(key.hex(), key_text(key), None, "not registered")
    return SignerView(key.hex(), key_text(key), info.name, info.status)


def title_of(signed: SignedRecord) -> tuple[str, str]:
    """A title (the name) and subtitle (kind and version, or what the record states) for lists."""
    s = signed.record.statement
    match s:
        case ModelCheckpoint():
            return s.model, f"checkpoint {s.version}"
        case Dataset():
            return s.name, f"dataset {s.version}"
        case Identity():
            return s.name, f"identity {s.event.value}"
        case Attestation():
            return s.claim.value, f"attestation about {s.subject.hex()[:12]}"
        case Dispute():
            return "dispute", f"dispute of {s.target.hex()[:12]}"
        case _:
            assert_never(s)


def summarize(reader: RegistryReader, rec: LoggedRecord, signers: dict[bytes, SignerView] | None = None) -> Summary:
    key = rec.signed.record.signer
    if signers is not None:
        signer = signers.get(key) or signers.setdefault(key, signer_view(reader, key))
    else:
        signer = signer_view(reader, key)
    title, sub = title_of(rec.signed)
    return Summary(rec.id.hex(), rec.index, rec.signed.record.kind.label, title, sub, signer,
                   when(rec.signed.record.timestamp))


def recent(reader: RegistryReader, size: int, before: int, count: int) -> list[Summary]:
    """The ``count`` records logged just before index ``before`` (newest first)."""
    signers: dict[bytes, SignerView] = {}
    newest = min(before, size) - 1
    return [summarize(reader, reader.at(i), signers) for i in range(newest, max(before - count, 0) - 1, -1)]


def _label(reader: RegistryReader, rid: bytes) -> str:
    try:
        title, sub = title_of(reader.by_id(rid).signed)
    except NotFoundError:
        return f"{rid.hex()[:12]} (not in this registry)"
    return f"{title} ({sub})"


def fields(reader: RegistryReader, signed: SignedRecord) -> list[Field]:
    """The signed fields of a record, references resolved to labels and links (at most :data:`MAX_REFS`)."""
    rec = signed.record
    out = [Field("kind", rec.kind.label), Field("signer", key_text(rec.signer), f"/signer/{rec.signer.hex()}", True),
           Field("timestamp (the signer's)", when(rec.timestamp))]
    budget = [MAX_REFS]

    def ref(label: str, rid: bytes) -> Field:
        if budget[0] <= 0:
            return Field(label, rid.hex(), f"/record/{rid.hex()}", True)
        budget[0] -= 1
        return Field(label, f"{_label(reader, rid)} {rid.hex()}", f"/record/{rid.hex()}")

    s = rec.statement
    match s:
        case Identity():
            out += [Field("event", s.event.value), Field("identity name", s.name),
                    Field("key", key_text(s.key), f"/signer/{s.key.hex()}", True)]
        case Dataset():
            out += [Field("name", s.name), Field("version", s.version), Field("size", f"{s.size:,} bytes"),
                    Field("manifest", f"blake3:{s.manifest.hex()}", mono=True), Field("license", s.license)]
            out += [Field("source", src) for src in s.sources]
            out += [ref(f"parent ({p.relation.value})", p.id) for p in s.parents]
        case ModelCheckpoint():
            out += [Field("model", s.model), Field("run", s.run), Field("step", str(s.step)),
                    Field("version", s.version), Field("format", s.format),
                    Field("manifest", f"blake3:{s.manifest.hex()}", mono=True)]
            out += [ref(f"parent ({p.relation.value})", p.id) for p in s.parents]
            out += [ref(f"trained on ({d.role.value})", d.id) for d in s.datasets]
            if s.config is not None:
                out.append(Field("config", s.config.text(), mono=True))
            if s.fingerprint is not None:
                out.append(Field(f"fingerprint ({s.fingerprint.mode})", f"blake3:{s.fingerprint.digest.hex()}",
                                 mono=True))
            out += [Field(f"metadata {k}", v) for k, v in s.metadata]
        case Attestation():
            out += [Field("claim", s.claim.value), ref("subject", s.subject)]
            if s.claim.object_is_record:
                out.append(ref("object", s.object))
            else:
                out.append(Field("object", object_text(s), mono=True))
            if s.evidence is not None:
                out.append(Field("evidence", s.evidence.text(), mono=True))
            out += [Field("summary", line) for line in s.summary.split("\n")]
        case Dispute():
            out += [ref("disputed record", s.target)]
            out += [Field("reason", line) for line in s.reason.split("\n")]
            if s.evidence is not None:
                out.append(Field("evidence", s.evidence.text(), mono=True))
        case _:
            assert_never(s)
    return [f for f in out if f.value]  # an empty optional field (run, format, license) is not shown


def about(reader: RegistryReader, rid: bytes) -> tuple[list[Claimed], bool]:
    """Attestations and disputes naming ``rid`` (the first :data:`MAX_ABOUT`), and whether there are more."""
    recs = reader.about(rid, MAX_ABOUT + 1)
    signers: dict[bytes, SignerView] = {}
    out = []
    for rec in recs[:MAX_ABOUT]:
        s = rec.signed.record.statement
        other: bytes | None = None
        verdict = basis = evidence = None
        if isinstance(s, Attestation):
            claim, lines = s.claim.value, tuple(s.summary.split("\n")) if s.summary else ()
            if s.claim.object_is_record:
                other = s.object if s.subject == rid else s.subject
            evidence = s.evidence.text() if s.evidence is not None else None
            m = _VERDICT.match(s.summary) if s.claim is Claim.DESCENT_TEST else None
            if m is not None:
                verdict, basis = m.group(1), m.group(2)
        elif isinstance(s, Dispute):
            claim, lines = "dispute", tuple(s.reason.split("\n"))
            evidence = s.evidence.text() if s.evidence is not None else None
        else:
            continue
        other_label = _label(reader, other) if other is not None and other != rid else ""
        out.append(Claimed(summarize(reader, rec, signers), claim, other.hex() if other else None, other_label,
                           lines, verdict, basis, evidence))
    return out, len(recs) > MAX_ABOUT


def proof(log: Any, rec: LoggedRecord) -> ProofView:
    """The record's inclusion proof against the latest signed checkpoint, checked here before it is shown."""
    cp = log.latest()
    size = cp.checkpoint.size
    leaf = leaf_hash(rec.signed.entry)
    hashes = log.inclusion_proof(rec.index, size)
    try:
        verify_inclusion(rec.index, size, leaf, hashes, cp.checkpoint.root)
        ok = True
    except ProofError:
        ok = False
    return ProofView(rec.index, size, leaf.hex(), tuple(h.hex() for h in hashes), cp.checkpoint.root.hex(), ok,
                     cp.note.decode("utf-8", "replace"))


def manifest(reader: RegistryReader, digest: bytes) -> ManifestView:
    """The manifest's first :data:`MAX_FILES` files (path, size, BLAKE3), if the registry stores it."""
    try:
        m = decode(reader.manifest(digest))
    except (NotFoundError, FormatError):  # not stored, or stored by a format this server cannot read
        return ManifestView(digest.hex(), False, (), 0)
    files = m.files
    return ManifestView(digest.hex(), True, tuple((f.path, f.size, f.blake3.hex()) for f in files[:MAX_FILES]),
                        len(files))


def manifest_of(signed: SignedRecord) -> bytes | None:
    s = signed.record.statement
    return s.manifest if isinstance(s, Dataset | ModelCheckpoint) else None


def lines(text: str) -> Sequence[str]:
    return text.rstrip("\n").split("\n")
