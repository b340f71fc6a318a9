"""Checking an OMS document: its DSSE signature, and its file digests against files or a manifest. Pure.

What :func:`verify_signature` checks, offline: the DSSE v1 signature over the envelope's payload, by
the public key given (whose PEM's SHA-256 must equal the bundle's key hint, when it has one) or else
by the key of the bundle's leaf certificate. What it does not check: that a certificate chains to a
trust root (Fulcio or a private CA), its validity period or identity, and any transparency-log
entries the bundle carries (Rekor). Those need a trust root and are out of this offline scope; the
returned :class:`OmsSigner` names the key or certificate so a reader can judge who signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from client.core.manifest.diff import Difference
from client.core.manifest.model import Manifest
from client.core.manifest.oms_in import OmsDocument, OmsStatement, pae
from client.errors import FormatError, SignatureError

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class OmsSignatureError(SignatureError):
    """An OMS signature that does not verify or cannot be checked; ``part`` names the part at fault."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"OMS {part}: {message}")
        self.part = part


@dataclass(frozen=True, slots=True)
class OmsSigner:
    """Who signed: ``source`` is ``public-key`` (given by the verifier) or ``certificate`` (in the bundle).

    ``key_sha256``: hex SHA-256 of the public key's PEM (SubjectPublicKeyInfo), as model-signing's hint.
    ``certificate_sha256``: hex SHA-256 of the leaf certificate's DER (its fingerprint), or "".
    ``subject``: the leaf certificate's subject (RFC 4514), or "".
    """

    source: str
    algorithm: str
    key_sha256: str
    certificate_sha256: str = ""
    subject: str = ""

    def describe(self) -> str:
        if self.source == "certificate":
            return (f"{self.algorithm} key of certificate sha256:{self.certificate_sha256} ({self.subject}); "
                    "the certificate chain was not checked against any trust root")
        return f"{self.algorithm} public key sha256:{self.key_sha256} (SHA-256 of its PEM)"


PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def load_public_key(pem: bytes) -> tuple[PublicKey, bytes]:
    """A PEM public key (ECDSA P-256/384/521 or Ed25519) and its canonical PEM. Raises FormatError."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise FormatError(f"not a PEM public key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise FormatError(f"an OMS key must be ECDSA (P-256, P-384, P-521) or Ed25519, not {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVE_HASH:
        raise FormatError(f"ECDSA curve {key.curve.name} is not one OMS uses (P-256, P-384, P-521)")
    canon = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, canon


def _algorithm(key: PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return f"ecdsa-{key.curve.name}"


def _leaf(der: bytes) -> tuple[PublicKey, str, str]:
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        subject = cert.subject.rfc4514_string()
    except ValueError as err:
        raise OmsSignatureError("verificationMaterial certificate[0]", f"is not an X.509 certificate: {err}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise OmsSignatureError("verificationMaterial certificate[0]", f"holds a {type(key).__name__}")
    return key, hashlib.sha256(der).hexdigest(), subject


def verify_signature(doc: OmsDocument, public_key_pem: bytes | None = None) -> OmsSigner:
    """Check ``doc``'s DSSE signature (module docstring says exactly what is and is not checked).

    Requires a signed document (an envelope). Raises :class:`OmsSignatureError` naming the part:
    ``document`` (unsigned, or no key to check with), ``verificationMaterial.publicKey.hint`` (the key
    given is not the one the bundle names), ``dsseEnvelope.signatures[0].sig`` (does not verify).
    """
    env = doc.envelope
    if env is None:
        raise OmsSignatureError("document", "is a plain statement: it carries no signature to check")
    cert_sha = subject = ""
    if public_key_pem is not None:
        try:
            key, canon = load_public_key(public_key_pem)
        except FormatError as err:
            raise OmsSignatureError("public key", str(err)) from err
        if doc.key_hint and doc.key_hint != hashlib.sha256(canon).hexdigest():
            raise OmsSignatureError("verificationMaterial.publicKey.hint",
                                    "names another key than the one given (SHA-256 of its PEM differs)")
        source = "public-key"
        if doc.certificates:
            leaf, cert_sha, subject = _leaf(doc.certificates[0])
            if leaf.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
                    key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
                raise OmsSignatureError("verificationMaterial certificate[0]", "holds another key than the one given")
    elif doc.certificates:
        key, cert_sha, subject = _leaf(doc.certificates[0])
        canon = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        source = "certificate"
    else:
        raise OmsSignatureError("document", "names its signer's key only by a hint: the public key is needed "
                                            "(PEM) to check the signature")
    message = pae(env.payload_type, env.payload)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(env.signatures[0], message)
        else:
            key.verify(env.signatures[0], message, ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except InvalidSignature:
        raise OmsSignatureError("dsseEnvelope.signatures[0].sig",
                                "does not verify over the payload with the signer's key") from None
    return OmsSigner(source, _algorithm(key), hashlib.sha256(canon).hexdigest(), cert_sha, subject)


def _ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore)


def compare_digests(stmt: OmsStatement, actual: Mapping[str, bytes]) -> list[Difference]:
    """Every file that differs, is missing or is extra, comparing ``stmt`` to ``actual`` (path -> digest
    of the statement's algorithm). Paths under the statement's ``ignore_paths`` are not compared. A
    single-file statement (resource ``.``) matches ``actual`` holding exactly one file, whatever its name."""
    want = stmt.digests()
    have = {p: d for p, d in actual.items() if not _ignored(p, stmt.ignore_paths)}
    if "." in want and len(have) == 1:
        have = {".": next(iter(have.values()))}
    out: list[Difference] = []
    for path in sorted(want.keys() | have.keys()):
        w, h = want.get(path), have.get(path)
        if h is None:
            out.append(Difference("missing", "file", path, stmt.hash_type, (w or b"").hex(), ""))
        elif w is None:
            out.append(Difference("extra", "file", path, stmt.hash_type, "", h.hex()))
        elif w != h:
            out.append(Difference("changed", "file", path, stmt.hash_type, w.hex(), h.hex()))
    return out


def manifest_files(manifest: Manifest) -> dict[str, bytes]:
    """Path -> BLAKE3 of every regular file of ``manifest`` (what a BLAKE3 statement is compared to)."""
    return {f.path: f.blake3 for f in manifest.files}


def check_paths(stmt: OmsStatement, manifest: Manifest) -> list[Difference]:
    """For a SHA-256 statement and a BLAKE3 manifest: the files one lists and the other does not (their
    digests cannot be compared without the files)."""
    names = {r.name for r in stmt.resources}
    have = {p for p in manifest_files(manifest) if not _ignored(p, stmt.ignore_paths)}
    if names == {"."} and len(have) == 1:
        return []
    out = [Difference("missing", "file", p, "listed by the OMS statement, not in the manifest") for p in names - have]
    out += [Difference("extra", "file", p, "in the manifest, not listed by the OMS statement") for p in have - names]
    return sorted(out, key=lambda d: d.path)
