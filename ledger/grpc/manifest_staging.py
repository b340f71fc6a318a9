"""Manifests in parts: the bounds on them (:class:`ManifestLimits`) and the staging area that holds an
uploaded manifest until its ``Register`` (:class:`ManifestStaging`).

``UploadManifest`` stages one manifest (``proto/provenance/registry/v1/registry.proto``); a
``Register`` that names its digest without sending the bytes takes it from here. Uploads are
spooled to unnamed temporary files (:class:`Spool`) part by part, as they arrive and once staged,
so unfinished or never-registered uploads hold disk, not memory (three unfinished 400 MB uploads
took 4 GB of the server's RSS when parts were kept in memory). Staging is bounded in bytes and in
age, so an upload never registered cannot pin disk either. The files live in ``spool_dir``, or the
system's temporary directory (``TMPDIR``); on a tmpfs that is memory again, so point it at a disk.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from client.errors import InvalidInputError, ResourceExhaustedError
from ledger.app.config import ServerConfig

MESSAGE_OVERHEAD = 64  # bytes a GetManifestResponse / ManifestPart adds around its manifest bytes, rounded up
STAGING_FACTOR = 2  # staged and arriving manifests together: at most this many times max_manifest_bytes
STAGING_SECONDS = 3600.0  # a staged manifest not registered within this is dropped

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """Bounds on manifests in parts. ``staging_bytes`` caps staged plus still-arriving uploads together."""

    max_manifest_bytes: int = 2 << 30
    max_send_message_bytes: int = 64 << 20
    staging_bytes: int = STAGING_FACTOR * (2 << 30)
    staging_seconds: float = STAGING_SECONDS

    def __post_init__(self) -> None:
        if self.max_manifest_bytes <= 0 or self.max_send_message_bytes <= MESSAGE_OVERHEAD:
            raise InvalidInputError("manifest and send limits must be positive")
        if self.staging_bytes < self.max_manifest_bytes or not self.staging_seconds > 0:
            raise InvalidInputError("staging must hold at least one largest manifest, for a positive time")

    @classmethod
    def from_config(cls, config: ServerConfig) -> ManifestLimits:
        return cls(config.max_manifest_bytes, config.max_send_message_bytes,
                   STAGING_FACTOR * config.max_manifest_bytes, STAGING_SECONDS)


class Spool:
    """The bytes of one manifest upload in an unnamed temporary file (gone once closed, or when the
    process dies). Memory held: none beyond the part being written or the bytes :meth:`read` returns."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (held open until close())
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def read(self) -> bytes:
        """Everything written so far."""
        self._file.flush()
        self._file.seek(0)
        data: bytes = self._file.read()
        self._file.seek(0, 2)
        return data

    def close(self) -> None:
        self._file.close()


class ManifestStaging:
    """Uploaded manifests waiting for their ``Register``, spooled to disk, keyed by manifest digest.

    Bounded: staged manifests plus the bytes of uploads still arriving (reserved part by part
    with :meth:`reserve`) never exceed ``max_bytes``; to make room the oldest staged manifest
    is evicted first, and a manifest staged more than ``max_age`` seconds ago is dropped. When
    uploads in progress alone fill the budget, :meth:`reserve` refuses (RESOURCE_EXHAUSTED).
    :meth:`spool` makes the file an upload writes to (in ``spool_dir``; None: ``TMPDIR``).
    No locking: use it from one thread (the server's event loop).
    """

    def __init__(self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic,
                 spool_dir: Path | None = None) -> None:
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._clock = clock
        self._spool_dir = spool_dir
        self._staged: OrderedDict[bytes, tuple[Spool, float]] = OrderedDict()  # oldest first
        self._held = 0  # bytes of staged manifests
        self._reserved = 0  # bytes of uploads still arriving

    def __len__(self) -> int:
        return len(self._staged)

    def __contains__(self, digest: object) -> bool:
        self._expire()
        return digest in self._staged

    @property
    def held_bytes(self) -> int:
        return self._held

    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    def _expire(self) -> None:
        cutoff = self._clock() - self._max_age
        while self._staged:
            digest, (_, at) = next(iter(self._staged.items()))
            if at > cutoff:
                break
            self._evict(digest, "expired")

    def _evict(self, digest: bytes, why: str) -> None:
        spool, _ = self._staged.pop(digest)
        self._held -= spool.size
        spool.close()
        _log.info("staged manifest dropped (%s)", why, extra={"manifest": digest.hex(), "bytes": spool.size})

    def spool(self) -> Spool:
        """A new empty spool file for an upload (stage it with :meth:`put_spool`, or close it)."""
        return Spool(self._spool_dir)

    def reserve(self, n: int) -> None:
        """Count ``n`` more bytes of an upload in progress, evicting the oldest staged manifests to make room."""
        self._expire()
        while self._staged and self._held + self._reserved + n > self._max_bytes:
            self._evict(next(iter(self._staged)), "evicted to make room")
        if self._reserved + n > self._max_bytes:
            raise ResourceExhaustedError(
                f"manifest staging is full ({self._reserved} bytes of uploads in progress, limit {self._max_bytes}); "
                "retry later")
        self._reserved += n

    def release(self, n: int) -> None:
        """Forget ``n`` reserved bytes (an upload that failed, or that was staged)."""
        self._reserved -= n

    def put(self, digest: bytes, data: bytes) -> None:
        """Stage ``data`` (its reservation already released); a manifest staged again counts as new."""
        spool = self.spool()
        try:
            spool.write(data)
        except BaseException:
            spool.close()
            raise
        self.put_spool(digest, spool)

    def put_spool(self, digest: bytes, spool: Spool) -> None:
        """Stage the bytes in ``spool``, which staging now owns (closed here if it cannot be staged)."""
        try:
            if digest in self._staged:
                self._evict(digest, "staged again")
            self.reserve(spool.size)
        except BaseException:
            spool.close()
            raise
        self._reserved -= spool.size
        self._staged[digest] = (spool, self._clock())
        self._held += spool.size

    def get(self, digest: bytes) -> bytes | None:
        """The staged manifest's bytes (read back from its file), or None."""
        self._expire()
        got = self._staged.get(digest)
        return None if got is None else got[0].read()

    def drop(self, digest: bytes) -> None:
        if digest in self._staged:
            self._evict(digest, "registered")
