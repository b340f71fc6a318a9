"""C2SP transparency log checkpoints (https://c2sp.org/tlog-checkpoint). Pure: no I/O.

A checkpoint is the signed-note text::

    <origin>
    <tree size in decimal>
    <base64 of the RFC 9162 root hash>
    [extension lines]

signed by the log's key (:mod:`client.core.note`). Parsing is strict: canonical
decimal, canonical base64 of exactly 32 bytes, non-empty lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from client.core.note import (
    MAX_NOTE_SIZE,
    Signer,
    Verifier,
    decode_base64,
    encode_base64,
    open_note,
    sign_note,
)
from client.errors import FormatError, SignatureError

__all__ = ["MAX_TREE_SIZE", "Checkpoint", "SignedCheckpoint", "open_checkpoint", "sign_checkpoint"]

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size a checkpoint may carry (sizes are signed 64-bit integers elsewhere, as in Go's tlog)."""

ROOT_SIZE = 32

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile("[\x00-\x1f]")


def _check_line(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise FormatError(f"{what} must be a non-empty string")
    if _CONTROL.search(value):
        raise FormatError(f"{what} contains a newline or control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(f"{what} is not valid UTF-8") from e


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: ``size`` leaves with RFC 9162 root ``root``, for the log named ``origin``.

    Validated when constructed (tlog-checkpoint, "Note text"): non-empty origin and
    extension lines without control characters, ``0 <= size <= MAX_TREE_SIZE``,
    a 32-byte root. Raises :class:`FormatError` otherwise.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise FormatError(f"checkpoint size {self.size!r} is not an integer in [0, 2**63)")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise FormatError(f"checkpoint root must be {ROOT_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise FormatError("checkpoint extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "checkpoint extension line")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root, then extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), encode_base64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text; only the canonical form :meth:`to_text` writes is accepted."""
        if not isinstance(text, str):
            raise FormatError("checkpoint text must be str")
        if len(text) > MAX_NOTE_SIZE:
            raise FormatError("checkpoint text is too long")
        if not text.endswith("\n"):
            raise FormatError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("checkpoint text needs origin, size and root lines")
        origin, size_text, root_text, *extensions = lines
        if not _DECIMAL.fullmatch(size_text):
            raise FormatError(f"checkpoint size {size_text[:40]!r} is not a canonical decimal")
        root = decode_base64(root_text, "checkpoint root")
        # The constructor checks the size range, the root length and the lines.
        return cls(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with the exact signed note it was read from (what a court is shown)."""

    checkpoint: Checkpoint
    note: bytes

    @classmethod
    def open(cls, note: bytes, verifier: Verifier, origin: str | None = None) -> SignedCheckpoint:
        """:func:`open_checkpoint`, keeping the note bytes."""
        return cls(open_checkpoint(note, verifier, origin), bytes(note))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """The signed note of ``cp`` by the log's key ``signer`` (its name SHOULD equal ``cp.origin``)."""
    return sign_note(cp.to_text(), [signer])


def open_checkpoint(note: bytes, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify the log's signature on a checkpoint note, then parse it.

    The note must carry a valid signature by ``verifier`` (signatures by other
    keys, such as witnesses, are ignored). The checkpoint's origin must equal
    ``origin``, or the verifier's name when ``origin`` is None. Raises
    :class:`FormatError` for a malformed note or text, :class:`SignatureError`
    for a missing or bad signature or an unexpected origin.
    """
    opened = open_note(note, [verifier])
    cp = Checkpoint.from_text(opened.text)
    want = verifier.name if origin is None else origin
    if cp.origin != want:
        raise SignatureError(f"checkpoint origin {cp.origin!r} is not the expected {want!r}")
    return cp
