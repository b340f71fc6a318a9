"""Signing, verifying and identifying records (docs/records.md sections 4-5). Pure (no I/O).

- A record is signed with Ed25519 (RFC 8032) over ``SIGNING_CONTEXT || body``;
  the context string keeps a record signature from ever being valid for any
  other protocol that the same key might sign for.
- The logged entry is ``body || signature``.
- The record **id** is the RFC 9162 leaf hash of that entry,
  ``SHA-256(0x00 || entry)``: it is computable by every transparency-log
  verifier, and the log can find a record's index from its id directly.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from client.core.merkle import leaf_hash
from client.core.records.encoding import decode_body, encode_body
from client.core.records.model import ID_SIZE, KEY_SIZE, SIGNATURE_SIZE, Identity, IdentityEvent, Record
from client.errors import FormatError, InvalidInputError, SignatureError

SIGNING_CONTEXT = b"provenance-ledger/record/v1\n"
ROTATION_CONTEXT = b"provenance-ledger/rotate/v1\n"
KEY_PREFIX = "ed25519:"


def record_id(entry: bytes) -> bytes:
    """The id of the record logged as ``entry``: its RFC 9162 leaf hash."""
    return leaf_hash(entry)


def id_text(record_id_: bytes) -> str:
    """Hex form of a record id (64 lowercase hex digits)."""
    return record_id_.hex()


def parse_id(text: str) -> bytes:
    """A record id from its 64-digit hex form."""
    try:
        raw = bytes.fromhex(text)
    except ValueError as err:
        raise InvalidInputError(f"record id {text!r} is not hex") from err
    if len(raw) != ID_SIZE:
        raise InvalidInputError(f"record id {text!r} must be {2 * ID_SIZE} hex digits")
    return raw


def key_text(public_key: bytes) -> str:
    """``ed25519:<base64 of the 32-byte public key>``."""
    return KEY_PREFIX + base64.b64encode(public_key).decode("ascii")


def parse_key(text: str) -> bytes:
    """The 32-byte public key from :func:`key_text` form."""
    if not text.startswith(KEY_PREFIX):
        raise InvalidInputError(f"public key {text!r} must start with {KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
    except ValueError as err:  # binascii.Error, or a bare ValueError for non-ASCII text
        raise InvalidInputError(f"public key {text!r} is not base64") from err
    if len(raw) != KEY_SIZE or key_text(raw) != text:
        raise InvalidInputError(f"public key {text!r} is not a canonical 32-byte Ed25519 key")
    return raw


class RecordSigner:
    """An Ed25519 private key that signs records. Never logged, never printed."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: bytes = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> RecordSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> RecordSigner:
        """Load a PKCS#8 PEM Ed25519 private key (what :meth:`to_pem` writes, and ``openssl genpkey`` too)."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as err:
            raise FormatError("not an unencrypted PKCS#8 PEM private key") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise FormatError(f"private key is {type(key).__name__}, want Ed25519")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign_body(self, body: bytes) -> bytes:
        return self._key.sign(SIGNING_CONTEXT + body)

    def __repr__(self) -> str:
        return f"RecordSigner({key_text(self.public_key)})"


def signature_valid(public_key: bytes, body: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s record signature of ``body``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, SIGNING_CONTEXT + body)
    except (InvalidSignature, ValueError):
        return False
    return True


def signatures_valid(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """:func:`signature_valid` of each ``(public_key, body, signature)``, in order (a worker process's task)."""
    return [signature_valid(k, b, s) for k, b, s in items]


def signature_error(public_key: bytes) -> SignatureError:
    """The refusal of a record whose signature does not verify."""
    return SignatureError(f"record signature does not verify with signer key {key_text(public_key)}")


def verify_signature(public_key: bytes, body: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public_key``'s signature of ``body``."""
    if not signature_valid(public_key, body, signature):
        raise signature_error(public_key)


def rotation_message(name: str, old_key: bytes, new_key: bytes) -> bytes:
    """What a new key signs to accept ``name`` from ``old_key``: context, name, newline, both keys."""
    return ROTATION_CONTEXT + name.encode("utf-8") + b"\n" + old_key + new_key


def endorse_rotation(new: RecordSigner, name: str, old_key: bytes) -> bytes:
    """The new key's endorsement for a rotation record (proof of possession; stops key squatting)."""
    return new._key.sign(rotation_message(name, old_key, new.public_key))


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record with its signature, its exact entry bytes and its id.

    Build with :func:`sign_record` or :func:`parse_entry`; ``parse_entry`` checks the
    format only, call :meth:`verify` to check the signature.
    """

    record: Record
    signature: bytes
    entry: bytes
    id: bytes

    @property
    def body(self) -> bytes:
        return self.entry[:-SIGNATURE_SIZE]

    def verify(self) -> None:
        """Raise :class:`SignatureError` unless the signature is the signer's over the body
        (and, for a rotation, the new key's endorsement is valid)."""
        verify_signature(self.record.signer, self.body, self.signature)
        self.verify_endorsement()

    def verify_endorsement(self) -> None:
        """The part of :meth:`verify` beyond the record signature: a rotation's endorsement by the new key."""
        s = self.record.statement
        if isinstance(s, Identity) and s.event is IdentityEvent.ROTATE:
            try:
                msg = rotation_message(s.name, self.record.signer, s.key)
                Ed25519PublicKey.from_public_bytes(s.key).verify(s.endorsement, msg)
            except (InvalidSignature, ValueError) as err:
                raise SignatureError(f"rotation of {s.name!r}: the new key's endorsement does not verify") from err


def sign_record(record: Record, signer: RecordSigner) -> SignedRecord:
    """Encode and sign ``record``. Requires ``record.signer == signer.public_key``."""
    if record.signer != signer.public_key:
        raise InvalidInputError("record names a different signer key than the one signing it")
    body = encode_body(record)
    signature = signer.sign_body(body)
    entry = body + signature
    return SignedRecord(record, signature, entry, record_id(entry))


def parse_entry(entry: bytes) -> SignedRecord:
    """Parse a logged entry into a :class:`SignedRecord` (format only; see :meth:`SignedRecord.verify`)."""
    if len(entry) <= SIGNATURE_SIZE:
        raise FormatError(f"entry of {len(entry)} bytes is too short to be a signed record")
    body = entry[:-SIGNATURE_SIZE]
    record = decode_body(body)
    return SignedRecord(record, entry[-SIGNATURE_SIZE:], entry, record_id(entry))
