"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys. Pure: no I/O.

A signed note is a text ending in a newline, a blank line, and one or more
signature lines ``— <key name> <base64(key ID || signature)>``. Key texts use the
formats of Go's ``golang.org/x/mod/sumdb/note`` so keys move freely between the
two implementations:

- verifier key: ``<name>+<hex key ID>+<base64(0x01 || 32-byte public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>``

Parsing accepts only canonical input (lowercase 8-digit hex key IDs, canonical
standard base64) and bounds every note (:data:`MAX_NOTE_SIZE`,
:data:`MAX_SIGNATURES`). Malformed input raises :class:`FormatError`; a
signature that is missing or does not verify raises :class:`SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from client.errors import FormatError, InvalidInputError, SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "decode_base64",
    "encode_base64",
    "key_id_for",
    "open_note",
    "sign_note",
    "split_signatures",
    "valid_name",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519 (signed-note, "Signature types")."""

MAX_NOTE_SIZE = 1 << 20  # bytes
"""Largest note :func:`open_note` reads (Go's sumdb refuses notes over 1 MB too)."""

MAX_SIGNATURES = 100
"""Most signature lines per note (the spec requires at least 16; Go's note package allows 100)."""

KEY_ID_SIZE = 4
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIG_PREFIX_BYTES = _SIG_PREFIX.encode()

# Unicode White_Space, the set Go's unicode.IsSpace tests (signed-note: "MUST NOT
# contain any Unicode spaces"). Python's str.isspace differs slightly, so spell it out.
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_CONTROL_NOT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a key: non-empty, valid UTF-8, no Unicode space, no ``+``, no control character."""
    if not name or "+" in name:
        return False
    if any(c in _WHITE_SPACE or c < "\x20" for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not valid_name(name):
        raise FormatError(f"invalid key name {name!r}")


def key_id_for(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (signed-note, "Ed25519 signatures")."""
    _check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:KEY_ID_SIZE]


def decode_base64(text: str, what: str) -> bytes:
    """Decode canonical standard base64 (RFC 4648 section 4) or raise :class:`FormatError`."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as e:
        raise FormatError(f"{what} is not valid base64") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} is not canonical base64")
    return raw


def encode_base64(raw: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4)."""
    return base64.b64encode(raw).decode("ascii")


def _parse_key_id(hex8: str) -> bytes:
    if not _HEX8.fullmatch(hex8):
        raise FormatError(f"key ID {hex8!r} is not 8 lowercase hex digits")
    return bytes.fromhex(hex8)


def _parse_key_data(key64: str, what: str) -> bytes:
    """Decode ``base64(0x01 || 32 bytes)``; return the 32 bytes."""
    raw = decode_base64(key64, what)
    if not raw:
        raise FormatError(f"{what} is empty")
    if raw[0] != ALG_ED25519:
        raise FormatError(f"{what} has unknown key type 0x{raw[0]:02x}; only Ed25519 (0x01) is supported")
    if len(raw) != 1 + ED25519_KEY_SIZE:
        raise FormatError(f"{what} is {len(raw) - 1} bytes, want {ED25519_KEY_SIZE}")
    return raw[1:]


_P = 2**255 - 19
# y-coordinates of the eight points of small order on edwards25519: the identity (1), order 2 (p - 1),
# order 4 (0), and the two of the four order-8 points (tests/witness/test_cosignature.py recomputes them
# all by doubling). Under such a "public key" anyone can forge a signature of any message (for the
# identity, R = identity and S = 0 verify), and Ed25519 verifiers, ours included, accept those.
_SMALL_ORDER_Y = frozenset((
    1, _P - 1, 0,
    0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
    0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
))


def weak_key_problem(public_key: bytes) -> str | None:
    """Why a 32-byte Ed25519 public key must not be trusted (non-canonical, or of small order), or None."""
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    if y >= _P:
        return "is not a canonical Ed25519 point encoding"
    if y in _SMALL_ORDER_Y:
        return "is a point of small order (anyone could forge its signatures)"
    return None


class Verifier:
    """An Ed25519 public key with its name: checks signatures by one key."""

    __slots__ = ("_name", "_key_id", "_public_key", "_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Requires a valid name and a 32-byte Ed25519 public key; raises :class:`FormatError` otherwise."""
        _check_name(name)
        if not isinstance(public_key, bytes) or len(public_key) != ED25519_KEY_SIZE:
            raise FormatError(f"Ed25519 public key must be {ED25519_KEY_SIZE} bytes")
        problem = weak_key_problem(public_key)
        if problem is not None:
            raise FormatError(f"Ed25519 public key of {name!r} {problem}")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError as e:
            raise FormatError("invalid Ed25519 public key") from e
        self._name = name
        self._public_key = public_key
        self._key_id = key_id_for(name, public_key)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """Verifier for a raw 32-byte Ed25519 public key (like Go's NewEd25519VerifierKey)."""
        return cls(name, public_key)

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``; the key ID must match."""
        if not isinstance(text, str):
            raise FormatError("verifier key must be text")
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise FormatError("verifier key is not <name>+<key ID>+<key>")
        name, hex8, key64 = parts
        _check_name(name)
        key_id = _parse_key_id(hex8)
        verifier = cls(name, _parse_key_data(key64, "verifier key"))
        if verifier.key_id != key_id:
            raise FormatError(f"verifier key {name}+{hex8} does not match its key ID")
        return verifier

    def text(self) -> str:
        """The verifier key text, as Go's note.GenerateKey writes it."""
        return f"{self._name}+{self._key_id.hex()}+{encode_base64(bytes([ALG_ED25519]) + self._public_key)}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is a valid Ed25519 signature of ``msg`` (RFC 8032) by this key."""
        if len(sig) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return self._name == other._name and self._public_key == other._public_key

    def __hash__(self) -> int:
        return hash((self._name, self._public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.text()!r})"


class Signer:
    """An Ed25519 private key with its name. Its text is a secret: never log it."""

    __slots__ = ("_name", "_seed", "_key", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        """Requires a valid name and a 32-byte Ed25519 seed (RFC 8032 private key)."""
        _check_name(name)
        if not isinstance(seed, bytes) or len(seed) != ED25519_KEY_SIZE:
            raise FormatError(f"Ed25519 seed must be {ED25519_KEY_SIZE} bytes")
        self._name = name
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = Verifier(name, self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key named ``name``."""
        _check_name(name)
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """The key with this 32-byte seed (deterministic: for tests and key import)."""
        return cls(name, seed)

    @classmethod
    def from_private_text(cls, text: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        The key ID names the *public* key, so it is checked after deriving it.
        """
        if not isinstance(text, str) or not text.startswith(_PRIVATE_PREFIX):
            raise FormatError("signer key does not start with PRIVATE+KEY+")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise FormatError("signer key is not PRIVATE+KEY+<name>+<key ID>+<key>")
        name, hex8, key64 = parts
        _check_name(name)
        key_id = _parse_key_id(hex8)
        signer = cls(name, _parse_key_data(key64, "signer key"))
        if signer.key_id != key_id:
            raise FormatError("signer key does not match its key ID")
        return signer

    def private_text(self) -> str:
        """The signer key text, as Go's note.GenerateKey writes it. Secret."""
        return f"{_PRIVATE_PREFIX}{self._name}+{self.key_id.hex()}+{encode_base64(bytes([ALG_ED25519]) + self._seed)}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    def sign(self, msg: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``msg`` (deterministic, RFC 8032)."""
        return self._key.sign(msg)

    def verifier(self) -> Verifier:
        return self._verifier

    def __repr__(self) -> str:
        return f"Signer(name={self._name!r}, key_id={self.key_id.hex()!r})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name, its 4-byte key ID and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the signatures that verified, and those by unknown keys (ignored)."""

    text: str
    signatures: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...] = ()


def _check_text(text: str) -> bytes:
    """Note text rules (signed-note, "Format"); returns the UTF-8 bytes."""
    if not isinstance(text, str):
        raise FormatError("note text must be str")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError("note text is not valid UTF-8") from e
    if not text.endswith("\n"):
        raise FormatError("note text must end in a newline")
    if _CONTROL_NOT_NEWLINE.search(text):
        raise FormatError("note text contains a control character other than newline")
    return raw


def sign_note(text: str, signers: Sequence[Signer]) -> bytes:
    """Sign ``text`` with every signer: ``text || "\\n" || one signature line per signer`` (signed-note, "Format").

    Requires at least one signer, distinct (name, key ID) pairs, and a text that
    ends in a newline with no control characters other than newline. The result
    is at most :data:`MAX_NOTE_SIZE` bytes so that :func:`open_note` accepts it.
    """
    raw = _check_text(text)
    if not signers:
        raise InvalidInputError("a signed note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise InvalidInputError(f"at most {MAX_SIGNATURES} signatures per note")
    seen: set[tuple[str, bytes]] = set()
    lines: list[str] = []
    for signer in signers:
        key = (signer.name, signer.key_id)
        if key in seen:
            raise InvalidInputError(f"signer {signer.name}+{signer.key_id.hex()} given twice")
        seen.add(key)
        lines.append(f"{_SIG_PREFIX}{signer.name} {encode_base64(signer.key_id + signer.sign(raw))}\n")
    note = raw + b"\n" + "".join(lines).encode()
    if len(note) > MAX_NOTE_SIZE:
        raise InvalidInputError(f"signed note would be {len(note)} bytes, over {MAX_NOTE_SIZE}")
    return note


def _parse_signature_line(line: bytes) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX_BYTES):
        raise FormatError("signature line does not start with an em dash and a space")
    name, sep, b64 = line[len(_SIG_PREFIX_BYTES) :].decode("utf-8").partition(" ")
    if not sep or not valid_name(name):
        raise FormatError(f"signature line has an invalid key name {name!r}")
    raw = decode_base64(b64, f"signature by {name}")
    if len(raw) <= KEY_ID_SIZE:
        raise FormatError(f"signature by {name} is too short")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        key = (v.name, v.key_id)
        if key in known and known[key] != v:
            # Two different keys share a name and key ID: refuse rather than guess (Go does too).
            raise InvalidInputError(f"ambiguous verifiers for {v.name}+{v.key_id.hex()}")
        known[key] = v
    return known


def split_signatures(note: bytes) -> tuple[bytes, tuple[NoteSignature, ...]]:
    """Split a signed note into its text (ending in a newline) and its parsed signature lines, in order.

    Verifies nothing. Raises :class:`FormatError` for a malformed or oversized note
    (over :data:`MAX_NOTE_SIZE` bytes or :data:`MAX_SIGNATURES` signature lines).
    """
    if not isinstance(note, bytes | bytearray):
        raise FormatError("a note must be bytes")
    msg = bytes(note)
    if len(msg) > MAX_NOTE_SIZE:
        raise FormatError(f"note is {len(msg)} bytes, over the limit of {MAX_NOTE_SIZE}")
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("note is not valid UTF-8") from e
    if _CONTROL_NOT_NEWLINE.search(decoded):
        raise FormatError("note contains a control character other than newline")
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise FormatError("note has no blank line before its signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block.endswith(b"\n"):
        raise FormatError("note does not end with a signature line")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note has {len(lines)} signatures, over the limit of {MAX_SIGNATURES}")
    return text, tuple(_parse_signature_line(line) for line in lines)


def open_note(note: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and verify its signatures by the known ``verifiers``.

    Follows signed-note "Signatures": signatures by unknown keys (name and key
    ID not both matching a verifier) are ignored and returned in
    ``Note.unverified``; a signature by a known key that fails to verify rejects
    the whole note; a note with no verified signature is rejected. Raises
    :class:`FormatError` for malformed or oversized notes (over
    :data:`MAX_NOTE_SIZE` bytes or :data:`MAX_SIGNATURES` signature lines) and
    :class:`SignatureError` for signature failures.
    """
    text, parsed = split_signatures(note)

    known = _index_verifiers(verifiers)
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}  # ordered set: repeated identical lines kept once
    for sig in parsed:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified[sig] = None
            continue
        # Every signature by a known key must verify, repeated ones included.
        if not verifier.verify(text, sig.signature):
            raise SignatureError(f"invalid signature by known key {sig.name}+{sig.key_id.hex()}")
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        raise SignatureError("note has no signature by a known key")
    return Note(text.decode("utf-8"), tuple(verified.values()), tuple(unverified))
