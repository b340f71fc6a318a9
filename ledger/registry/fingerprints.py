"""Checkpoint fingerprints in the registry: checked before submission, stored at admission.

A checkpoint record may name its model fingerprint (docs/records.md, docs/descent.md §4) as
*published* -- the registration carries the canonical bytes, which the registry stores
content-addressed (like manifests) after checking that their BLAKE3 is the digest the record
signs -- or as *committed*: only the digest is logged, and the registry must never receive the
bytes. :func:`prepare` runs outside the sequencer (hash, strict decode, screening signatures);
:func:`admit` runs in the sequencer and only does point reads and writes.

Stored per published fingerprint: ``rF digest -> bytes``, ``rG digest -> screening signatures``
(what :class:`client.core.descent.index.FingerprintIndex` keeps in memory, so loading the index never
decodes a fingerprint), the posting ``rP index -> digest`` (every publishing checkpoint, log order)
and, for published and committed ones, ``rf digest index -> mode``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

import blake3
import numpy as np
import numpy.typing as npt

from client.core.descent.fingerprint import Fingerprint, decode
from client.core.descent.index import SIG_DIM, screen_signatures
from client.core.records import ModelCheckpoint, Statement
from client.errors import FormatError, InvalidInputError
from ledger.registry import keys as K

MAX_FINGERPRINT = 48 << 20
"""Largest fingerprint a registration may carry (bytes); a multi-GB model's is a few MB (docs/descent.md)."""

MODE_PUBLISHED = b"\x01"
MODE_COMMITTED = b"\x02"
_COUNT = struct.Struct("<I")


class FingerprintMissingError(InvalidInputError):
    """A checkpoint publishes a fingerprint that was not sent with it and is not stored."""


class FingerprintMismatchError(InvalidInputError):
    """The fingerprint bytes sent are not the ones the record names, or the record does not publish one."""


@dataclass(frozen=True, slots=True)
class FingerprintSummary:
    """Checked fingerprint bytes: ``digest`` is their BLAKE3, ``signatures`` their screening signatures."""

    digest: bytes
    encoded: bytes
    signatures: bytes


@dataclass(frozen=True, slots=True)
class Signatures:
    """What the screen needs of one fingerprint: its sketched tensors' digests and row/column signatures."""

    digests: list[bytes]
    rows: list[npt.NDArray[np.float32]]
    cols: list[npt.NDArray[np.float32]]


def encode_signatures(fp: Fingerprint) -> bytes:
    """The screening signatures of ``fp``'s sketched tensors, as :func:`pack_signatures` lays them out."""
    return pack_signatures(*screen_signatures(fp))


def pack_signatures(digests: list[bytes], rows: list[npt.NDArray[np.float32]],
                    cols: list[npt.NDArray[np.float32]]) -> bytes:
    """``u32 n | n x 32-byte digest | n x SIG_DIM float32 row signatures | same for columns`` (little-endian).

    Requires len(digests) == len(rows) == len(cols), each signature of SIG_DIM values."""
    empty = np.zeros((0, SIG_DIM), "<f4")
    r = np.stack(rows).astype("<f4") if rows else empty
    c = np.stack(cols).astype("<f4") if cols else empty
    return _COUNT.pack(len(digests)) + b"".join(digests) + r.tobytes() + c.tobytes()


def decode_signatures(data: bytes) -> Signatures:
    """Inverse of :func:`encode_signatures`; raises FormatError on a wrong length."""
    if len(data) < _COUNT.size:
        raise FormatError("stored fingerprint signatures are truncated")
    (n,) = _COUNT.unpack_from(data)
    want = _COUNT.size + n * 32 + 2 * n * SIG_DIM * 4
    if len(data) != want:
        raise FormatError(f"stored fingerprint signatures are {len(data)} bytes, expected {want}")
    off = _COUNT.size
    digests = [data[off + 32 * i : off + 32 * (i + 1)] for i in range(n)]
    off += 32 * n
    sigs = np.frombuffer(data, "<f4", 2 * n * SIG_DIM, off).reshape(2, n, SIG_DIM).astype(np.float32)
    return Signatures(digests, list(sigs[0]), list(sigs[1]))


def prepare(statement: Statement, data: bytes | None) -> FingerprintSummary | None:
    """Check fingerprint bytes sent with a record (outside the sequencer). None when none were sent.

    Refuses bytes for a record that does not publish a fingerprint (a committed one stays
    unpublished), bytes whose BLAKE3 is not the signed digest, and non-canonical bytes.
    """
    if not data:
        return None
    if not isinstance(statement, ModelCheckpoint) or statement.fingerprint is None:
        raise FingerprintMismatchError(f"a fingerprint was sent with a {statement.KIND.label} record that names none")
    if not statement.fingerprint.published:
        raise FingerprintMismatchError("the record commits to its fingerprint without publishing it; "
                                       "the registry does not accept its bytes")
    if len(data) > MAX_FINGERPRINT:
        raise InvalidInputError(f"fingerprint is {len(data)} bytes, more than {MAX_FINGERPRINT}")
    digest = blake3.blake3(data).digest()
    if digest != statement.fingerprint.digest:
        raise FingerprintMismatchError(f"the fingerprint sent has digest blake3:{digest.hex()}, "
                                       f"the record names blake3:{statement.fingerprint.digest.hex()}")
    fp = decode(data, source="registered fingerprint")
    return FingerprintSummary(digest, data, encode_signatures(fp))


class Writes(Protocol):
    """The slice of the hook's per-entry writes used here (see ``ledger.registry.hook``)."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def post(self, list_key: bytes, index: int, label: bytes = b"") -> None: ...


def admit(w: Writes, s: ModelCheckpoint, summary: FingerprintSummary | None, index: int) -> None:
    """Index writes for the checkpoint at ``index`` (in the sequencer). Raises the refusal."""
    fc = s.fingerprint
    if fc is None:
        if summary is not None:
            raise FingerprintMismatchError("a fingerprint was sent with a checkpoint record that names none")
        return
    if not fc.published:
        if summary is not None:
            raise FingerprintMismatchError("the record commits to its fingerprint without publishing it")
        w.post(K.FINGERPRINT_POSTS + fc.digest, index, MODE_COMMITTED)
        return
    if w.get(K.FINGERPRINT_SIGS + fc.digest) is None:
        if summary is None:
            raise FingerprintMissingError(f"fingerprint blake3:{fc.digest.hex()} is published by the record "
                                          "but was not sent with it and is not stored")
        if summary.digest != fc.digest:
            raise FingerprintMismatchError(f"the fingerprint sent has digest blake3:{summary.digest.hex()}, "
                                           f"the record names blake3:{fc.digest.hex()}")
        w.put(K.FINGERPRINT + fc.digest, summary.encoded)
        w.put(K.FINGERPRINT_SIGS + fc.digest, summary.signatures)
    w.post(K.PUBLISHED_POSTS, index, fc.digest)
    w.post(K.FINGERPRINT_POSTS + fc.digest, index, MODE_PUBLISHED)
