"""``Match``: which registered checkpoints share exact content with a suspect, or are related to it.

Exact: each suspect tensor or chunk digest is looked up in the digest postings (the records that
first stored a manifest containing it), then every checkpoint with one of those manifests; the
answer lists, per checkpoint, which of the suspect's digests it holds, earliest registration first.

Statistical: the published fingerprints are screened and tested with
:class:`client.core.descent.index.FingerprintIndex`. The index is built lazily on the first match from
the stored screening signatures (never from the fingerprints themselves), keeps only signatures
and digests in memory, loads the few fingerprints that reach the full test from the store, and
catches up with fingerprints registered since at every match (one prefix scan of the ``rP``
postings). Committed fingerprints are never in it: their bytes are not held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from client.core.descent.fingerprint import Fingerprint, decode
from client.core.descent.index import FingerprintIndex, Match
from client.core.records import Dataset, Kind, ModelCheckpoint
from client.errors import InvalidInputError, NotFoundError
from ledger.registry import keys as K
from ledger.registry import postings
from ledger.registry.fingerprints import decode_signatures
from ledger.registry.queries import LoggedRecord, RegistryLog, RegistryReader

log = logging.getLogger(__name__)

MAX_DIGESTS = 200_000  # per kind in one Match call
FIRST_STORES = 64  # manifests followed per digest (the earliest ones that stored it)
DEFAULT_CANDIDATES = 20
MAX_CANDIDATES = 200
LOAD_BATCH = 512  # signature blobs per multi-read while building the index


@dataclass
class ExactHit:
    """A checkpoint holding some of the suspect's digests (positions in the request's lists)."""

    record: LoggedRecord
    tensors: list[int] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RelatedHit:
    record: LoggedRecord
    fingerprint_digest: bytes
    match: Match


class Matcher:
    """Answers ``Match`` over one registry. Thread-safe (matches run one at a time)."""

    def __init__(self, log_: RegistryLog, reader: RegistryReader) -> None:
        self._log = log_
        self._reader = reader
        self._index: FingerprintIndex | None = None
        self._digest_of: dict[str, bytes] = {}  # index key (log index as text) -> fingerprint digest
        self._next = 0  # first log index not yet looked at
        self._lock = threading.Lock()
        self._manifest_of: dict[int, bytes] = {}

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    # --- exact ------------------------------------------------------------------------------

    def exact(self, tensors: Sequence[bytes], chunks: Sequence[bytes], limit: int) -> list[ExactHit]:
        """Checkpoints holding any of ``tensors`` or ``chunks`` (32-byte BLAKE3), earliest first."""
        for what, ds in (("tensor", tensors), ("chunk", chunks)):
            if len(ds) > MAX_DIGESTS:
                raise InvalidInputError(f"at most {MAX_DIGESTS} {what} digests per match, got {len(ds)}")
            for d in ds:
                if len(d) != 32:
                    raise InvalidInputError(f"a {what} digest must be 32 bytes, got {len(d)}")
        hits: dict[int, ExactHit] = {}
        for pos, d in enumerate(tensors):
            for i in self._holders(d, ("tensor",)):
                self._hit(hits, i).tensors.append(pos)
        for pos, d in enumerate(chunks):
            for i in self._holders(d, ("chunk", "file")):
                self._hit(hits, i).chunks.append(pos)
        out = [h for _, h in sorted(hits.items()) if h.record.signed.record.kind is Kind.CHECKPOINT]
        return out[:limit]

    def _hit(self, hits: dict[int, ExactHit], index: int) -> ExactHit:
        h = hits.get(index)
        if h is None:
            h = hits[index] = ExactHit(self._reader.at(index))
        return h

    def _holders(self, digest: bytes, kinds: tuple[str, ...]) -> set[int]:
        scan = self._log.scan_aux
        manifests: set[bytes] = set()
        for kind in kinds:
            key = K.DIGEST_POSTS + bytes([K.DIGEST_KINDS[kind]]) + digest
            for i in postings.read(scan, key, FIRST_STORES):
                m = self._manifest_of.get(i)
                if m is None:
                    s = self._reader.at(i).signed.record.statement
                    m = s.manifest if isinstance(s, ModelCheckpoint | Dataset) else b""
                    self._manifest_of[i] = m
                if m:
                    manifests.add(m)
        found: set[int] = set()
        for m in manifests:
            found.update(postings.read(scan, K.MANIFEST_POSTS + m, MAX_CANDIDATES))
        return found

    # --- statistical -------------------------------------------------------------------------

    def _load(self, key: str) -> Fingerprint:
        digest = self._digest_of[key]
        data = self._log.get_aux_many([K.FINGERPRINT + digest])[0]
        if data is None:
            raise NotFoundError(f"fingerprint blake3:{digest.hex()} is indexed but not stored")
        return decode(data, source=f"stored fingerprint blake3:{digest.hex()}")

    def refresh(self) -> int:
        """Add fingerprints published since the last call (all of them the first time). Returns how many."""
        if self._index is None:
            self._index = FingerprintIndex(load=self._load)
        new = [(i, d) for i, d in postings.read_labelled(self._log.scan_aux, K.PUBLISHED_POSTS) if i >= self._next]
        for start in range(0, len(new), LOAD_BATCH):
            part = new[start : start + LOAD_BATCH]
            blobs = self._log.get_aux_many([K.FINGERPRINT_SIGS + d for _, d in part])
            for (i, d), blob in zip(part, blobs, strict=True):
                if blob is None:
                    log.error("published fingerprint has no stored signatures", extra={"index": i})
                    continue
                sigs = decode_signatures(blob)
                key = str(i)
                self._digest_of[key] = d
                self._index.add_signatures(key, sigs.digests, sigs.rows, sigs.cols)
        if new:
            self._next = new[-1][0] + 1
            log.info("fingerprint index updated", extra={"added": len(new), "fingerprints": len(self._index)})
        return len(new)

    def related(self, suspect: Fingerprint, alpha: float, limit: int) -> tuple[list[RelatedHit], int]:
        """Published fingerprints tested against ``suspect``, most significant first, and how many are held."""
        if not 0 < alpha < 1:
            raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}")
        with self._lock:
            self.refresh()
            assert self._index is not None
            matches = self._index.match(suspect, alpha=alpha)
            held = len(self._index)
            digests = dict(self._digest_of)
        return [RelatedHit(self._reader.at(int(m.key)), digests[m.key], m) for m in matches[:limit]], held

    def fingerprint(self, digest: bytes) -> bytes:
        """A published fingerprint's bytes."""
        data = self._log.get_aux_many([K.FINGERPRINT + digest])[0]
        if data is None:
            raise NotFoundError(f"no published fingerprint blake3:{digest.hex()} is stored")
        return data


def candidates(limit: int) -> int:
    return min(limit or DEFAULT_CANDIDATES, MAX_CANDIDATES)


__all__ = ["ExactHit", "Matcher", "RelatedHit", "candidates"]
