"""The canonical byte encoding of records, version 1 (docs/records.md section 2). Pure.

``body = "PLR" 0x01 kind signer(32) timestamp fields...``; a logged entry is
``body || signature(64)``. Field order is fixed per kind, so there are no tags
and every record has exactly one encoding: :func:`decode_body` re-encodes
nothing, it refuses anything that is not in canonical form (non-minimal
integers, unknown enum codes, unsorted or duplicate metadata keys, trailing
bytes, unknown versions and kinds).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import cache
from typing import TypeVar, assert_never

from client.core.records._codec import Reader, put_bytes, put_str, put_uvarint
from client.core.records.attachment import MAX_OMS_DOCUMENT, MAX_OMS_KEY, OmsAttachment
from client.core.records.model import (
    DIGEST_SIZE,
    ID_SIZE,
    KEY_SIZE,
    MAX_LIST,
    MAX_METADATA,
    MAX_METADATA_VALUE,
    MAX_NAME,
    MAX_SHORT,
    MAX_TEXT,
    MAX_VERSION,
    SIGNATURE_SIZE,
    Attestation,
    Claim,
    Dataset,
    DatasetParent,
    DatasetRelation,
    DatasetRole,
    Digest,
    DigestAlgorithm,
    Dispute,
    FingerprintCommitment,
    Identity,
    IdentityEvent,
    Kind,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    Record,
    Statement,
    TrainingData,
)
from client.errors import FormatError, InvalidInputError

MAGIC = b"PLR"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
MAX_BODY = 256 * 1024
"""Largest encoded record body (bytes). Bounded by the list and text limits anyway; checked first."""

E = TypeVar("E", bound=enum.Enum)


_MEMBERS: dict[type[enum.Enum], tuple[enum.Enum, ...]] = {}


def _members(cls: type[E]) -> tuple[E, ...]:
    members = _MEMBERS.get(cls)
    if members is None:
        members = _MEMBERS[cls] = tuple(cls)
    return members  # type: ignore[return-value]


@cache
def _codes(cls: type[E]) -> dict[E, int]:
    return {m: i + 1 for i, m in enumerate(cls)}


def _code(member: enum.Enum) -> int:
    return _codes(type(member))[member]


def _enum(r: Reader, cls: type[E], field: str) -> E:
    code = r.byte(field)
    members = _members(cls)
    if not 1 <= code <= len(members):
        raise FormatError(f"{field} has unknown code {code}")
    return members[code - 1]


def _put_digest(out: bytearray, d: Digest | None) -> None:
    if d is None:
        out.append(0)
    else:
        out.append(_code(d.algorithm))
        out += d.value


def _digest(r: Reader, field: str) -> Digest | None:
    code = r.byte(field)
    if code == 0:
        return None
    members = _members(DigestAlgorithm)
    if code > len(members):
        raise FormatError(f"{field} has unknown digest algorithm code {code}")
    return Digest(members[code - 1], r.fixed(DIGEST_SIZE, field))


_FP_ABSENT, _FP_PUBLISHED, _FP_COMMITTED = 0, 1, 2


def _put_fingerprint(out: bytearray, fp: FingerprintCommitment | None) -> None:
    if fp is None:
        out.append(_FP_ABSENT)
    else:
        out.append(_FP_PUBLISHED if fp.published else _FP_COMMITTED)
        out += fp.digest


def _fingerprint(r: Reader) -> FingerprintCommitment | None:
    mode = r.byte("fingerprint mode")
    if mode == _FP_ABSENT:
        return None
    if mode not in (_FP_PUBLISHED, _FP_COMMITTED):
        raise FormatError(f"fingerprint mode has unknown code {mode}")
    return FingerprintCommitment(r.fixed(DIGEST_SIZE, "fingerprint digest"), mode == _FP_PUBLISHED)


def encode_body(record: Record) -> bytes:
    """The canonical bytes of ``record`` without the signature: what is signed."""
    out = bytearray(HEADER)
    out.append(record.kind.value)
    out += record.signer
    put_uvarint(out, record.timestamp)
    s = record.statement
    match s:
        case Identity():
            out.append(_code(s.event))
            put_str(out, s.name)
            out += s.key
            out += s.endorsement  # 64 bytes for a rotation, empty otherwise
        case Dataset():
            put_str(out, s.name)
            put_str(out, s.version)
            out += s.manifest
            put_uvarint(out, s.size)
            put_str(out, s.license)
            put_uvarint(out, len(s.sources))
            for src in s.sources:
                put_str(out, src)
            put_uvarint(out, len(s.parents))
            for dp in s.parents:
                out += dp.id
                out.append(_code(dp.relation))
        case ModelCheckpoint():
            put_str(out, s.model)
            put_str(out, s.run)
            put_uvarint(out, s.step)
            out += s.manifest
            put_str(out, s.format)
            put_uvarint(out, len(s.datasets))
            for td in s.datasets:
                out += td.id
                out.append(_code(td.role))
            put_uvarint(out, len(s.parents))
            for mp in s.parents:
                out += mp.id
                out.append(_code(mp.relation))
            _put_digest(out, s.config)
            put_uvarint(out, len(s.metadata))
            for k, v in s.metadata:
                put_str(out, k)
                put_str(out, v)
            _put_fingerprint(out, s.fingerprint)
        case Attestation():
            out.append(_code(s.claim))
            out += s.subject
            out += s.object
            _put_digest(out, s.evidence)
            put_str(out, s.summary)
            if s.oms is not None:  # present exactly for an oms-signature claim
                put_bytes(out, s.oms.document)
                put_bytes(out, s.oms.public_key)
        case Dispute():
            out += s.target
            put_str(out, s.reason)
            _put_digest(out, s.evidence)
        case _:
            assert_never(s)
    if len(out) > MAX_BODY:
        raise InvalidInputError(f"record is {len(out)} bytes, more than {MAX_BODY}")
    return bytes(out)


def _identity(r: Reader) -> Identity:
    event = _enum(r, IdentityEvent, "identity event")
    name = r.text("identity name", MAX_SHORT)
    key = r.fixed(KEY_SIZE, "identity key")
    endorsement = r.fixed(SIGNATURE_SIZE, "rotation endorsement") if event is IdentityEvent.ROTATE else b""
    return Identity(event, name, key, endorsement)


def _dataset(r: Reader) -> Dataset:
    name = r.text("dataset name", MAX_NAME)
    version = r.text("dataset version", MAX_VERSION)
    manifest = r.fixed(DIGEST_SIZE, "manifest digest")
    size = r.uvarint("dataset size")
    license_ = r.text("license", MAX_SHORT)
    sources = tuple(r.text("source description", MAX_TEXT) for _ in range(r.uvarint("source count", MAX_LIST)))
    parents = tuple(
        DatasetParent(r.fixed(ID_SIZE, "parent dataset id"), _enum(r, DatasetRelation, "dataset relation"))
        for _ in range(r.uvarint("parent count", MAX_LIST))
    )
    return Dataset(name, version, manifest, size, license_, sources, parents)


def _checkpoint(r: Reader) -> ModelCheckpoint:
    model = r.text("model name", MAX_NAME)
    run = r.text("run", MAX_VERSION)
    step = r.uvarint("step")
    manifest = r.fixed(DIGEST_SIZE, "manifest digest")
    fmt = r.text("format", MAX_SHORT)
    datasets = tuple(
        TrainingData(r.fixed(ID_SIZE, "dataset id"), _enum(r, DatasetRole, "dataset role"))
        for _ in range(r.uvarint("dataset count", MAX_LIST))
    )
    parents = tuple(
        ModelParent(r.fixed(ID_SIZE, "parent checkpoint id"), _enum(r, ModelRelation, "model relation"))
        for _ in range(r.uvarint("parent count", MAX_LIST))
    )
    config = _digest(r, "config digest")
    metadata = tuple(
        (r.text("metadata key", MAX_SHORT), r.text("metadata value", MAX_METADATA_VALUE))
        for _ in range(r.uvarint("metadata count", MAX_METADATA))
    )
    fingerprint = _fingerprint(r)
    return ModelCheckpoint(model, run, step, manifest, fmt, datasets, parents, config, metadata, fingerprint)


def _attestation(r: Reader) -> Attestation:
    claim = _enum(r, Claim, "claim")
    subject = r.fixed(ID_SIZE, "attestation subject")
    obj = r.fixed(ID_SIZE, "attestation object")
    evidence = _digest(r, "evidence digest")
    summary = r.text("summary", MAX_TEXT)
    oms = None
    if claim is Claim.OMS_SIGNATURE:
        document = r.blob("OMS document", MAX_OMS_DOCUMENT)
        oms = OmsAttachment(document, r.blob("OMS public key", MAX_OMS_KEY))
    return Attestation(claim, subject, obj, evidence, summary, oms)


def _dispute(r: Reader) -> Dispute:
    target = r.fixed(ID_SIZE, "dispute target")
    reason = r.text("dispute reason", MAX_TEXT)
    return Dispute(target, reason, _digest(r, "evidence digest"))


_DECODERS: dict[Kind, Callable[[Reader], Statement]] = {
    Kind.IDENTITY: _identity,
    Kind.DATASET: _dataset,
    Kind.CHECKPOINT: _checkpoint,
    Kind.ATTESTATION: _attestation,
    Kind.DISPUTE: _dispute,
}


def decode_body(body: bytes) -> Record:
    """Parse canonical record bytes (without signature). Raises :class:`FormatError` on anything else."""
    if len(body) > MAX_BODY:
        raise FormatError(f"record is {len(body)} bytes, more than {MAX_BODY}")
    if body[:3] != MAGIC:
        raise FormatError("not a provenance record (bad magic)")
    if len(body) < 5:
        raise FormatError("record ends inside its header")
    if body[3] != VERSION:
        raise FormatError(f"unsupported record format version {body[3]} (this code reads version {VERSION})")
    try:
        kind = Kind(body[4])
    except ValueError as err:
        raise FormatError(f"unknown record kind {body[4]}") from err
    r = Reader(body)
    r.fixed(5, "header")
    signer = r.fixed(KEY_SIZE, "signer key")
    timestamp = r.uvarint("timestamp")
    try:
        statement: Statement = _DECODERS[kind](r)
        r.end()
        return Record(statement, signer, timestamp)
    except FormatError:
        raise
    except InvalidInputError as err:
        raise FormatError(f"invalid {kind.label} record: {err}") from err
