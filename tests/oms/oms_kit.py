"""Helpers of the OMS tests: keys, a small model folder, and signatures made by the reference ``model_signing``."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from references import require_model_signing

from client.core.manifest.oms_in import pae


def write_ec_key(d: Path, name: str = "oms") -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    """A P-256 key pair as PEM files ``<name>.key`` / ``<name>.pub`` in ``d``."""
    k = ec.generate_private_key(ec.SECP256R1())
    priv, pub = d / f"{name}.key", d / f"{name}.pub"
    priv.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub, k


def make_model(d: Path, seed: bytes = b"w") -> Path:
    """A small model folder: two files, one in a subfolder."""
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 2}')
    (d / "sub" / "weights.bin").write_bytes(hashlib.sha256(seed).digest() * 200)
    return d


def sign_statement(statement: dict[str, object], key: ec.EllipticCurvePrivateKey) -> bytes:
    """A sigstore bundle (as model-signing writes for a key) signing ``statement`` with ``key``: our own
    writer, for statements ``provenance hash --format oms`` produced and for tampering tests."""
    payload = json.dumps(statement, indent=2).encode()
    sig = key.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    hint = hashlib.sha256(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    return json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(),
                         "payloadType": "application/vnd.in-toto+json",
                         "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]},
    }, indent=2).encode()


def write_certificates(d: Path, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """A self-made CA and a leaf certificate for ``key`` (PEM files), for certificate-signed bundles."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model signer")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, leaf_path = d / "ca.pem", d / "leaf.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ca_path, leaf_path


def ms_sign(model: Path, key: Path, sig: Path, algorithm: str = "sha256", certificate: Path | None = None,
            chain: tuple[Path, ...] = ()) -> Path:
    """Sign ``model`` with the reference ``model_signing`` (a key, or a certificate and its chain) into ``sig``."""
    require_model_signing()
    from model_signing import hashing, signing

    cfg = signing.Config()
    if certificate is None:
        cfg.use_elliptic_key_signer(private_key=key)
    else:
        cfg.use_certificate_signer(private_key=key, signing_certificate=certificate, certificate_chain=chain)
    cfg.set_hashing_config(hashing.Config().use_file_serialization(hashing_algorithm=algorithm))
    cfg.sign(model, sig)
    return sig


def ms_verify(model: Path, sig: Path, public_key: Path) -> None:
    """Verify with the reference ``model_signing`` (raises its ValueError on a mismatch)."""
    require_model_signing()
    from model_signing import verifying

    verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(model, sig)
