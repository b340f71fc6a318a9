"""What the registry needs from a manifest: its digest, its canonical bytes, and every digest it contains.

Parsing and hashing happen before submission (outside the log's sequencer); the
sequencer only stores the bytes and indexes the digests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger.registry.keys import DIGEST_KINDS, DIGEST_POSTS


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """A checked manifest: ``digest`` is the manifest digest of ``encoded``; ``index_keys`` are the distinct
    digest-index list keys (``keys.DIGEST_POSTS + kind code + digest``) of its files, tensors and chunks,
    sorted. They are built here, before submission, so the sequencer only appends the log index to each;
    sorted, they go into RocksDB's memtable as one sequential run (measured 3-4x cheaper than random order)."""

    digest: bytes
    encoded: bytes
    index_keys: tuple[bytes, ...]


ManifestReader = Callable[[bytes], ManifestSummary]
"""Parse canonical manifest bytes (raising FormatError), compute the digest, list the contained digests."""


def summary_from_pairs(digest: bytes, encoded: bytes, pairs: list[tuple[str, bytes]]) -> ManifestSummary:
    """Build a summary from ``(kind name, digest)`` pairs (``file``, ``tensor``, ``chunk``), removing repeats."""
    keys = {DIGEST_POSTS + bytes([DIGEST_KINDS[kind]]) + d for kind, d in pairs}
    return ManifestSummary(digest, encoded, tuple(sorted(keys)))


def read_manifest(encoded: bytes) -> ManifestSummary:
    """The default :data:`ManifestReader`: strict parse with :mod:`client.manifest.codec`, BLAKE3 digest.

    The encoding is canonical (the decoder refuses any other form), so the digest of
    the bytes received is the manifest digest.
    """
    import blake3

    from client.manifest.codec import decode

    manifest = decode(encoded)
    file_p, chunk_p, tensor_p = (DIGEST_POSTS + bytes([DIGEST_KINDS[k]]) for k in ("file", "chunk", "tensor"))
    keys: set[bytes] = set()
    for f in manifest.files:
        keys.add(file_p + f.blake3)
        if len(f.chunks) > 1:  # a one-chunk file's chunk digest is its file digest: indexed once, as a file
            keys.update([chunk_p + c for c in f.chunks])
        keys.update([tensor_p + t.blake3 for t in f.tensors])
    return ManifestSummary(blake3.blake3(encoded).digest(), encoded, tuple(sorted(keys)))
