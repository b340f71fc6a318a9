"""The C2SP ``tlog-proof`` text form for one record (https://c2sp.org/tlog-proof). Pure.

::

    c2sp.org/tlog-proof@v1
    extra <base64 of the record's exact entry bytes>      (optional)
    index <decimal>
    <base64 proof hash, leaf's sibling first>...
    <empty line>
    <the checkpoint note, verbatim>

The spec leaves ``extra`` optional, to the application and unauthenticated; here it holds
the entry, which the inclusion proof authenticates (its leaf hash is the proved
leaf), so a proof with it is self-contained. A proof without it (the hash-only form,
``entry`` None) is accepted too: the entry is then supplied apart and checked by the same
proof (``verify_tlog_proof(..., entry=...)``, ``provenance verify --entry FILE``).

Every line of the header, ``extra`` included, is at most :data:`MAX_LINE` bytes with its
newline: Go's ``bufio.Scanner``, the usual way to read such text, stops with "token too long"
at 64 KiB. :func:`format_tlog_proof` refuses to write a longer ``extra`` line (use
:func:`extra_fits` to choose the hash-only form) and :func:`parse_tlog_proof` refuses to read one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from client.core.merkle import HASH_SIZE
from client.errors import FormatError

HEADER = "c2sp.org/tlog-proof@v1"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_PROOF = 64
MAX_LINE = 64 * 1024 - 1  # bytes of one header line with its newline: under bufio.MaxScanTokenSize (64 KiB)
_EXTRA = "extra "


@dataclass(frozen=True, slots=True)
class TlogProof:
    """One record's proof; ``entry`` None is the hash-only form (no ``extra`` line)."""

    entry: bytes | None
    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes


def _extra_line_bytes(n: int) -> int:
    """Bytes of the ``extra`` line, newline included, for an entry of ``n`` bytes."""
    return len(_EXTRA) + 4 * ((n + 2) // 3) + 1


def extra_fits(entry: bytes) -> bool:
    """Whether ``entry`` fits an ``extra`` line of at most :data:`MAX_LINE` bytes (about 48 KiB of entry)."""
    return _extra_line_bytes(len(entry)) <= MAX_LINE


def format_tlog_proof(p: TlogProof) -> bytes:
    """The text form; raises FormatError when the entry does not fit an ``extra`` line (:func:`extra_fits`)."""
    lines = [HEADER]
    if p.entry is not None:
        if not extra_fits(p.entry):
            raise FormatError(f"an entry of {len(p.entry)} bytes makes an 'extra' line over {MAX_LINE} bytes; "
                              "write the hash-only form (no extra line) and hand the entry over apart")
        lines.append(_EXTRA + base64.b64encode(p.entry).decode())
    lines.append(f"index {p.index}")
    lines += [base64.b64encode(h).decode() for h in p.proof]
    return ("\n".join(lines) + "\n\n").encode() + p.checkpoint


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise FormatError(f"tlog-proof {what} is not base64") from err
    if base64.b64encode(raw).decode() != text:
        raise FormatError(f"tlog-proof {what} is not canonical base64")
    return raw


def parse_tlog_proof(data: bytes) -> TlogProof:
    """Parse strictly; the checkpoint part is returned verbatim (the caller verifies it).

    Without an ``extra`` line the result's ``entry`` is None (the hash-only form)."""
    head, sep, checkpoint = data.partition(b"\n\n")
    if not sep:
        raise FormatError("tlog-proof has no empty line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as err:
        raise FormatError("tlog-proof header is not ASCII") from err
    if any(len(line) + 1 > MAX_LINE for line in lines):
        raise FormatError(f"tlog-proof has a line over {MAX_LINE} bytes (Go's line reader stops at 64 KiB)")
    if lines[0] != HEADER:
        raise FormatError(f"not a tlog-proof (first line must be {HEADER!r})")
    rest = lines[1:]
    entry: bytes | None = None
    if rest and rest[0].startswith(_EXTRA):
        entry = _b64(rest[0][len(_EXTRA):], "extra")
        rest = rest[1:]
    elif rest and rest[0].startswith("extra"):
        raise FormatError("tlog-proof 'extra' line must be 'extra <base64>'")
    if not rest or not rest[0].startswith("index ") or not _DECIMAL.fullmatch(rest[0][6:]):
        raise FormatError("tlog-proof 'index' line is missing or not a canonical decimal")
    if len(rest) - 1 > MAX_PROOF:
        raise FormatError(f"tlog-proof must have at most {MAX_PROOF} proof lines of {HASH_SIZE}-byte hashes")
    hashes = tuple(_b64(line, f"proof line {i}") for i, line in enumerate(rest[1:]))
    if any(len(h) != HASH_SIZE for h in hashes):
        raise FormatError(f"tlog-proof must have at most {MAX_PROOF} proof lines of {HASH_SIZE}-byte hashes")
    return TlogProof(entry, int(rest[0][6:]), hashes, checkpoint)
