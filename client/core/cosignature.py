"""Checkpoint cosignatures, Ed25519 flavour (https://c2sp.org/tlog-cosignature). Pure: no I/O.

A cosignature is a signed-note signature line by a witness (a *cosigner*)::

    — <cosigner name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

- key ID: ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]`` (type byte 0x04);
- the signed message: ``cosignature/v1\\ntime <timestamp>\\n`` followed by the whole
  checkpoint note body (the text up to and including its last newline, without the
  blank line or any signature line), see :func:`cosigned_message`;
- the vkey (signed-note "Verifier keys"): ``<name>+<hex key ID>+base64(0x04 || public key)``.

To Go's ``golang.org/x/mod/sumdb/note`` a cosignature is an ordinary signature line
under an unknown key; a verifier that knows the format checks it with plain Ed25519
over :func:`cosigned_message`. Errors: :class:`FormatError` for a malformed key or
line, :class:`InvalidInputError` for bad arguments, :class:`SignatureError` for a
line of this key that does not verify.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from client.core.note import (
    KEY_ID_SIZE,
    MAX_NOTE_SIZE,
    NoteSignature,
    decode_base64,
    encode_base64,
    split_signatures,
    valid_name,
    weak_key_problem,
)
from client.errors import FormatError, InvalidInputError, SignatureError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "CosignerKey",
    "WitnessSigner",
    "cosignature_line",
    "cosigned_message",
    "parse_cosignature",
    "sign_cosignature",
    "split_signatures",
    "verify_cosignature",
    "weak_key_problem",
]

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of an Ed25519 cosignature/v1 key (tlog-cosignature, "Format")."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest timestamp a cosignature may carry (tlog-cosignature: "MUST NOT exceed 2^63 - 1")."""

_KEY_SIZE = 32
_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
COSIGNATURE_SIZE = _TIMESTAMP_SIZE + _SIG_SIZE
"""Bytes after the key ID in a cosignature/v1 line: timestamp and signature."""

_HEADER = b"cosignature/v1\n"

_SIG_PREFIX = "\u2014 "  # em dash, space


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not valid_name(name):
        raise FormatError(f"invalid cosigner name {name!r}")


def _check_timestamp(timestamp: int) -> None:
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInputError(f"cosignature timestamp {timestamp!r} is not an integer in [0, 2**63)")


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public key)[:4]`` (tlog-cosignature, "Format")."""
    _check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class CosignerKey:
    """A witness's Ed25519 cosignature/v1 public key with its name.

    Validated when constructed: a valid key name and a 32-byte Ed25519 public key, canonical
    and not of small order (raises :class:`FormatError` otherwise). ``key_id`` is derived, never given.
    """

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _KEY_SIZE:
            raise FormatError(f"cosigner {self.name}: Ed25519 public key must be {_KEY_SIZE} bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as e:
            raise FormatError(f"cosigner {self.name}: invalid Ed25519 public key") from e
        problem = weak_key_problem(self.public_key)
        if problem is not None:
            raise FormatError(f"cosigner {self.name}: the public key {problem}")
        object.__setattr__(self, "key_id", cosigner_key_id(self.name, self.public_key))

    @classmethod
    def from_text(cls, vkey: str) -> CosignerKey:
        """Parse ``<name>+<hex key ID>+<base64(0x04 || public key)>``; the key ID must match.

        Refuses other key types by name: a log's 0x01 key is not a cosigner key.
        """
        if not isinstance(vkey, str):
            raise FormatError("cosigner vkey must be text")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise FormatError("cosigner vkey is not <name>+<key ID>+<key>")
        name, hex8, key64 = parts
        _check_name(name)
        if len(hex8) != 2 * KEY_ID_SIZE or any(c not in "0123456789abcdef" for c in hex8):
            raise FormatError(f"cosigner vkey {name}: key ID {hex8[:16]!r} is not 8 lowercase hex digits")
        raw = decode_base64(key64, f"cosigner vkey {name}")
        if not raw:
            raise FormatError(f"cosigner vkey {name}: key is empty")
        if raw[0] != ALG_COSIGNATURE_V1:
            raise FormatError(
                f"cosigner vkey {name}: key type 0x{raw[0]:02x} is not an Ed25519 cosignature/v1 key (0x04)"
            )
        if len(raw) != 1 + _KEY_SIZE:
            raise FormatError(f"cosigner vkey {name}: key is {len(raw) - 1} bytes, want {_KEY_SIZE}")
        key = cls(name, raw[1:])
        if key.key_id.hex() != hex8:
            raise FormatError(f"cosigner vkey {name}+{hex8} does not match its key ID")
        return key

    def text(self) -> str:
        """The vkey: ``<name>+<hex key ID>+<base64(0x04 || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{encode_base64(bytes([ALG_COSIGNATURE_V1]) + self.public_key)}"

    def verify(self, checkpoint_body: bytes, cosignature: bytes) -> int | None:
        """The timestamp of ``cosignature`` (timestamp || signature) if it signs ``checkpoint_body``, else None."""
        if len(cosignature) != COSIGNATURE_SIZE:
            return None
        timestamp = int.from_bytes(cosignature[:_TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        msg = cosigned_message(checkpoint_body, timestamp)
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(cosignature[_TIMESTAMP_SIZE:], msg)
        except InvalidSignature:
            return None
        return timestamp


def cosigned_message(checkpoint_body: bytes, timestamp: int) -> bytes:
    """The message a cosignature/v1 signs (tlog-cosignature, "Ed25519 signed message").

    ``cosignature/v1\\ntime <timestamp>\\n`` then ``checkpoint_body``, the note text
    including its final newline and no signature line. Requires
    ``0 <= timestamp <= 2**63 - 1`` and a body that ends in a newline.
    """
    _check_timestamp(timestamp)
    if not isinstance(checkpoint_body, bytes) or not checkpoint_body.endswith(b"\n"):
        raise InvalidInputError("a checkpoint body must be bytes ending in a newline")
    if len(checkpoint_body) > MAX_NOTE_SIZE:
        raise InvalidInputError(f"checkpoint body is over {MAX_NOTE_SIZE} bytes")
    return _HEADER + b"time %d\n" % timestamp + checkpoint_body


def cosignature_line(name: str, key_id: bytes, timestamp: int, signature: bytes) -> str:
    """``— <name> base64(key ID || u64 BE timestamp || signature)\\n``."""
    _check_name(name)
    _check_timestamp(timestamp)
    if len(key_id) != KEY_ID_SIZE or len(signature) != _SIG_SIZE:
        raise InvalidInputError("a cosignature needs a 4-byte key ID and a 64-byte signature")
    return f"{_SIG_PREFIX}{name} {encode_base64(key_id + timestamp.to_bytes(_TIMESTAMP_SIZE, 'big') + signature)}\n"


class WitnessSigner:
    """A witness's Ed25519 private key with its name. The seed is a secret: never log it."""

    __slots__ = ("_name", "_private", "_key")

    def __init__(self, name: str, seed: bytes) -> None:
        """Requires a valid key name and a 32-byte Ed25519 seed (RFC 8032 private key)."""
        _check_name(name)
        if not isinstance(seed, bytes) or len(seed) != _KEY_SIZE:
            raise InvalidInputError(f"Ed25519 seed must be {_KEY_SIZE} bytes")
        self._name = name
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._key = CosignerKey(name, self._private.public_key().public_bytes_raw())

    @property
    def name(self) -> str:
        return self._name

    def key(self) -> CosignerKey:
        """The public key, to publish as a vkey (:meth:`CosignerKey.text`)."""
        return self._key

    def cosign(self, checkpoint_body: bytes, timestamp: int) -> str:
        """The cosignature line of ``checkpoint_body`` at ``timestamp`` (see :func:`cosigned_message`)."""
        sig = self._private.sign(cosigned_message(checkpoint_body, timestamp))
        return cosignature_line(self._name, self._key.key_id, timestamp, sig)

    def __repr__(self) -> str:
        return f"WitnessSigner(name={self._name!r}, key_id={self._key.key_id.hex()!r})"


def sign_cosignature(name: str, seed: bytes, checkpoint_body: bytes, timestamp: int) -> str:
    """The cosignature line by the key with this 32-byte ``seed``; see :meth:`WitnessSigner.cosign`."""
    return WitnessSigner(name, seed).cosign(checkpoint_body, timestamp)


def parse_cosignature(sig: NoteSignature) -> tuple[int, bytes]:
    """The (timestamp, Ed25519 signature) of a cosignature/v1 line; :class:`FormatError` if it has not that shape."""
    if len(sig.signature) != COSIGNATURE_SIZE:
        raise FormatError(f"cosignature by {sig.name} is {len(sig.signature)} bytes, want {COSIGNATURE_SIZE}")
    timestamp = int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise FormatError(f"cosignature by {sig.name} has a timestamp over 2**63 - 1")
    return timestamp, sig.signature[_TIMESTAMP_SIZE:]


def verify_cosignature(key: CosignerKey, note: bytes) -> int | None:
    """Check ``key``'s cosignature on a signed checkpoint note; return its timestamp.

    Lines are matched by name and key ID, as signed-note says. Returns None when
    the note has no line of this key. Every line of this key must verify, as for
    any known key of a note (a repeated line included); the latest timestamp is
    returned. Raises :class:`SignatureError` when one does not verify and
    :class:`FormatError` for a malformed note.
    """
    body, lines = split_signatures(note)
    latest: int | None = None
    for sig in lines:
        if sig.name != key.name or sig.key_id != key.key_id:
            continue
        timestamp = key.verify(body, sig.signature)
        if timestamp is None:
            raise SignatureError(f"cosignature by {key.name}+{key.key_id.hex()} does not verify")
        latest = timestamp if latest is None else max(latest, timestamp)
    return latest
