"""The C2SP ``tlog-proof`` text form for one record (https://c2sp.org/tlog-proof). Pure.

::

    c2sp.org/tlog-proof@v1
    extra <base64 of the record's exact entry bytes>
    index <decimal>
    <base64 proof hash, leaf's sibling first>...
    <empty line>
    <the checkpoint note, verbatim>

The spec leaves ``extra`` to the application and unauthenticated; here it holds
the entry, which the inclusion proof authenticates (its leaf hash is the proved
leaf), so the proof is self-contained.
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


@dataclass(frozen=True, slots=True)
class TlogProof:
    entry: bytes
    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes


def format_tlog_proof(p: TlogProof) -> bytes:
    lines = [HEADER, "extra " + base64.b64encode(p.entry).decode(), f"index {p.index}"]
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
    """Parse strictly; the checkpoint part is returned verbatim (the caller verifies it)."""
    head, sep, checkpoint = data.partition(b"\n\n")
    if not sep:
        raise FormatError("tlog-proof has no empty line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as err:
        raise FormatError("tlog-proof header is not ASCII") from err
    if lines[0] != HEADER:
        raise FormatError(f"not a tlog-proof (first line must be {HEADER!r})")
    rest = lines[1:]
    if not rest or not rest[0].startswith("extra "):
        raise FormatError("this tlog-proof has no 'extra' line carrying the record")
    entry = _b64(rest[0][6:], "extra")
    if len(rest) < 2 or not rest[1].startswith("index ") or not _DECIMAL.fullmatch(rest[1][6:]):
        raise FormatError("tlog-proof 'index' line is missing or not a canonical decimal")
    hashes = tuple(_b64(line, f"proof line {i}") for i, line in enumerate(rest[2:]))
    if len(hashes) > MAX_PROOF or any(len(h) != HASH_SIZE for h in hashes):
        raise FormatError(f"tlog-proof must have at most {MAX_PROOF} proof lines of {HASH_SIZE}-byte hashes")
    return TlogProof(entry, int(rest[1][6:]), hashes, checkpoint)
