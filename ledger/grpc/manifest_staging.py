"""Manifests in parts: the bounds on them (:class:`ManifestLimits`) and the staging area that holds an
uploaded manifest until its ``Register`` (:class:`ManifestStaging`).

``UploadManifest`` stages one manifest (``proto/provenance/registry/v1/registry.proto``); a
``Register`` that names its digest without sending the bytes takes it from here. Staging is in
memory and bounded in bytes and in age, so an upload never registered cannot pin memory.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

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


class ManifestStaging:
    """Uploaded manifests waiting for their ``Register``, in memory, keyed by manifest digest.

    Bounded: staged manifests plus the bytes of uploads still arriving (reserved part by part
    with :meth:`reserve`) never exceed ``max_bytes``; to make room the oldest staged manifest
    is evicted first, and a manifest staged more than ``max_age`` seconds ago is dropped. When
    uploads in progress alone fill the budget, :meth:`reserve` refuses (RESOURCE_EXHAUSTED).
    No I/O and no locking: use it from one thread (the server's event loop).
    """

    def __init__(self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._clock = clock
        self._staged: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()  # oldest first
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
        data, _ = self._staged.pop(digest)
        self._held -= len(data)
        _log.info("staged manifest dropped (%s)", why, extra={"manifest": digest.hex(), "bytes": len(data)})

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
        if digest in self._staged:
            self._evict(digest, "staged again")
        self.reserve(len(data))
        self._reserved -= len(data)
        self._staged[digest] = (data, self._clock())
        self._held += len(data)

    def get(self, digest: bytes) -> bytes | None:
        self._expire()
        got = self._staged.get(digest)
        return None if got is None else got[0]

    def drop(self, digest: bytes) -> None:
        if digest in self._staged:
            self._evict(digest, "registered")
