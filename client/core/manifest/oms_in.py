"""Reading OpenSSF Model Signing (OMS) v1.0 documents: statements, DSSE envelopes, sigstore bundles. Pure.

Three spellings are accepted (docs/manifest.md, "OMS in"):

- the plain in-toto statement (what ``provenance hash --format oms`` writes);
- a DSSE envelope ``{"payload", "payloadType", "signatures"}`` whose payload is that statement;
- a sigstore bundle (``model_signing sign key|certificate ...`` writes one, media type
  ``application/vnd.dev.sigstore.bundle*``) holding such an envelope in ``dsseEnvelope`` and the
  verification material: a public-key hint (SHA-256 of the key's PEM) or an X.509 certificate chain.

Only the ``files`` serialization is read (one resource per file, ``.`` for a single-file model); the
``shards`` one is refused by name. Resource digests are SHA-256 (model-signing's default) or BLAKE3
(ours). The subject digest must be SHA-256 over the raw resource digests in the order listed, as
model-signing checks. Signatures are checked by :mod:`client.core.manifest.oms_verify`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from client.core import jsonlimits
from client.core.manifest.model import check_relpath
from client.core.manifest.oms import PREDICATE_TYPE, STATEMENT_TYPE
from client.errors import FormatError, InvalidInputError

MAX_DOCUMENT = 16 << 20
"""Largest OMS document read (bytes); a statement lists one ~150-byte resource per file."""
MAX_RESOURCES = 100_000
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
ALGORITHMS = ("sha256", "blake3")


class OmsFormatError(FormatError):
    """An OMS document that does not parse as one; ``part`` names where (e.g. ``dsseEnvelope.payload``)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"OMS {part}: {message}")
        self.part = part


@dataclass(frozen=True, slots=True)
class OmsResource:
    """One file of the statement: its path (``.`` for a single-file model), algorithm and raw digest."""

    name: str
    algorithm: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class OmsStatement:
    """The in-toto statement of an OMS v1.0 ``files`` signature, checked for internal consistency."""

    model_name: str
    root: bytes  # the subject's sha256: SHA-256 over the resource digests in order
    hash_type: str
    allow_symlinks: bool
    ignore_paths: tuple[str, ...]
    resources: tuple[OmsResource, ...]

    def digests(self) -> dict[str, bytes]:
        return {r.name: r.digest for r in self.resources}


@dataclass(frozen=True, slots=True)
class DsseEnvelope:
    """A DSSE envelope (DSSE protocol v1): the payload bytes, their type, and the raw signatures."""

    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OmsDocument:
    """An OMS document as read. ``envelope`` is None for a plain statement (nothing signed);
    ``key_hint`` (hex SHA-256 of the signer's public-key PEM) and ``certificates`` (DER, leaf first)
    come from a sigstore bundle's verification material."""

    statement: OmsStatement
    envelope: DsseEnvelope | None
    key_hint: str = ""
    certificates: tuple[bytes, ...] = ()
    tlog_entries: int = 0  # transparency-log entries in the bundle (not checked offline; see oms_verify)

    @property
    def signed(self) -> bool:
        return self.envelope is not None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature signs."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(value: Any, part: str) -> bytes:
    if not isinstance(value, str):
        raise OmsFormatError(part, "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise OmsFormatError(part, f"is not base64: {err}") from err


def _obj(value: Any, part: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OmsFormatError(part, "must be a JSON object")
    return value


def _str(value: Any, part: str) -> str:
    if not isinstance(value, str):
        raise OmsFormatError(part, "must be a string")
    return value


def _hex32(value: Any, part: str) -> bytes:
    text = _str(value, part)
    if len(text) != 64 or text != text.lower():
        raise OmsFormatError(part, "must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError as err:
        raise OmsFormatError(part, "must be 64 lowercase hex digits") from err


def parse_statement(payload: bytes | dict[str, Any], part: str = "statement") -> OmsStatement:
    """The statement in ``payload`` (JSON bytes or a parsed object). Raises :class:`OmsFormatError`."""
    if isinstance(payload, bytes):
        if len(payload) > MAX_DOCUMENT:
            raise OmsFormatError(part, f"is {len(payload)} bytes, more than {MAX_DOCUMENT}")
        payload = jsonlimits.loads(payload, f"OMS {part}")
    st = _obj(payload, part)
    if st.get("_type") != STATEMENT_TYPE:
        raise OmsFormatError(f"{part}._type", f"is {st.get('_type')!r}, not {STATEMENT_TYPE!r}")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise OmsFormatError(f"{part}.predicateType",
                             f"is {st.get('predicateType')!r}; this code reads {PREDICATE_TYPE!r}")
    subjects = st.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise OmsFormatError(f"{part}.subject", "must list exactly one subject")
    subject = _obj(subjects[0], f"{part}.subject[0]")
    name = _str(subject.get("name"), f"{part}.subject[0].name")
    root = _hex32(_obj(subject.get("digest"), f"{part}.subject[0].digest").get("sha256"),
                  f"{part}.subject[0].digest.sha256")
    pred = _obj(st.get("predicate"), f"{part}.predicate")
    ser = _obj(pred.get("serialization"), f"{part}.predicate.serialization")
    method = ser.get("method")
    if method != "files":
        raise OmsFormatError(f"{part}.predicate.serialization.method",
                             f"is {method!r}; only the 'files' serialization is read (not shards)")
    hash_type = _str(ser.get("hash_type"), f"{part}.predicate.serialization.hash_type")
    if hash_type not in ALGORITHMS:
        raise OmsFormatError(f"{part}.predicate.serialization.hash_type",
                             f"is {hash_type!r}; this code checks {' and '.join(ALGORITHMS)}")
    symlinks = ser.get("allow_symlinks", False)
    if not isinstance(symlinks, bool):
        raise OmsFormatError(f"{part}.predicate.serialization.allow_symlinks", "must be true or false")
    ignore = ser.get("ignore_paths", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise OmsFormatError(f"{part}.predicate.serialization.ignore_paths", "must be a list of strings")
    res = pred.get("resources")
    if not isinstance(res, list) or len(res) > MAX_RESOURCES:
        raise OmsFormatError(f"{part}.predicate.resources", f"must be a list of at most {MAX_RESOURCES}")
    resources = []
    for i, item in enumerate(res):
        where = f"{part}.predicate.resources[{i}]"
        r = _obj(item, where)
        rname = _str(r.get("name"), f"{where}.name")
        if rname != ".":
            try:
                check_relpath(rname)
            except InvalidInputError as err:
                raise OmsFormatError(f"{where}.name", str(err)) from err
        alg = r.get("algorithm")
        if alg != hash_type:
            raise OmsFormatError(f"{where}.algorithm", f"is {alg!r}, the serialization says {hash_type!r}")
        resources.append(OmsResource(rname, hash_type, _hex32(r.get("digest"), f"{where}.digest")))
    names = [r.name for r in resources]
    if len(set(names)) != len(names):
        raise OmsFormatError(f"{part}.predicate.resources", "name the same file twice")
    if "." in names and len(names) != 1:
        raise OmsFormatError(f"{part}.predicate.resources", "a single-file resource '.' must be the only one")
    if hashlib.sha256(b"".join(r.digest for r in resources)).digest() != root:
        raise OmsFormatError(f"{part}.subject[0].digest.sha256",
                             "does not match the resources (SHA-256 over their digests in order)")
    return OmsStatement(name, root, hash_type, symlinks, tuple(ignore), tuple(resources))


def parse_envelope(obj: Any, part: str = "dsseEnvelope") -> DsseEnvelope:
    env = _obj(obj, part)
    ptype = _str(env.get("payloadType"), f"{part}.payloadType")
    if ptype != PAYLOAD_TYPE:
        raise OmsFormatError(f"{part}.payloadType", f"is {ptype!r}, not {PAYLOAD_TYPE!r}")
    payload = _b64(env.get("payload"), f"{part}.payload")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise OmsFormatError(f"{part}.signatures", "must hold exactly one signature (as model-signing writes)")
    sig = _b64(_obj(sigs[0], f"{part}.signatures[0]").get("sig"), f"{part}.signatures[0].sig")
    if not 1 <= len(sig) <= 1024:
        raise OmsFormatError(f"{part}.signatures[0].sig", f"is {len(sig)} bytes")
    return DsseEnvelope(payload, ptype, (sig,))


def _material(vm: dict[str, Any]) -> tuple[str, tuple[bytes, ...]]:
    part = "verificationMaterial"
    hint = ""
    certs: list[bytes] = []
    if "publicKey" in vm:
        h = _obj(vm["publicKey"], f"{part}.publicKey").get("hint", "")
        hint = _str(h, f"{part}.publicKey.hint")
        if hint and (len(hint) != 64 or any(c not in "0123456789abcdef" for c in hint)):
            raise OmsFormatError(f"{part}.publicKey.hint", "must be 64 lowercase hex digits")
    if "certificate" in vm:
        certs.append(_b64(_obj(vm["certificate"], f"{part}.certificate").get("rawBytes"),
                          f"{part}.certificate.rawBytes"))
    if "x509CertificateChain" in vm:
        chain = _obj(vm["x509CertificateChain"], f"{part}.x509CertificateChain").get("certificates")
        if not isinstance(chain, list) or not 1 <= len(chain) <= 16:
            raise OmsFormatError(f"{part}.x509CertificateChain.certificates", "must list 1 to 16 certificates")
        for i, c in enumerate(chain):
            where = f"{part}.x509CertificateChain.certificates[{i}]"
            certs.append(_b64(_obj(c, where).get("rawBytes"), f"{where}.rawBytes"))
    if hint and certs:
        raise OmsFormatError(part, "has both a public-key hint and certificates")
    return hint, tuple(certs)


def parse_document(data: bytes) -> OmsDocument:
    """Read any of the three spellings (module docstring). Raises :class:`OmsFormatError` naming the part.

    A DSSE payload is parsed as the statement; nothing here says the signature is valid.
    """
    if len(data) > MAX_DOCUMENT:
        raise OmsFormatError("document", f"is {len(data)} bytes, more than {MAX_DOCUMENT}")
    obj = _obj(jsonlimits.loads(data, "OMS document"), "document")
    if "_type" in obj:
        return OmsDocument(parse_statement(obj), None)
    if "dsseEnvelope" in obj or "mediaType" in obj:
        media = _str(obj.get("mediaType"), "mediaType")
        if not media.startswith(BUNDLE_MEDIA_PREFIX):
            raise OmsFormatError("mediaType", f"is {media!r}, not a sigstore bundle")
        if "messageSignature" in obj:
            raise OmsFormatError("messageSignature", "is not an OMS signature (OMS bundles hold a dsseEnvelope)")
        env = parse_envelope(obj.get("dsseEnvelope"))
        vm = _obj(obj.get("verificationMaterial"), "verificationMaterial")
        hint, certs = _material(vm)
        tlog = vm.get("tlogEntries", [])
        if not isinstance(tlog, list):
            raise OmsFormatError("verificationMaterial.tlogEntries", "must be a list")
        return OmsDocument(parse_statement(env.payload, "dsseEnvelope.payload"), env, hint, certs, len(tlog))
    if "payload" in obj:
        env = parse_envelope(obj, "envelope")
        return OmsDocument(parse_statement(env.payload, "envelope.payload"), env)
    raise OmsFormatError("document", "is neither an in-toto statement, a DSSE envelope nor a sigstore bundle")


_OMS_KEY = re.compile(rb'"(?:_type|mediaType|payloadType|dsseEnvelope)"\s*:')


def looks_like_oms(head: bytes) -> bool:
    """Whether ``head`` (a document's first bytes) is JSON with a key only OMS documents have (a statement's
    ``_type``, a bundle's ``mediaType`` or ``dsseEnvelope``, an envelope's ``payloadType``); for choosing a
    parser, not a check."""
    return head.lstrip()[:1] == b"{" and _OMS_KEY.search(head) is not None
