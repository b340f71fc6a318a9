"""What the registry needs from a manifest: its digest, its canonical bytes, and every digest it contains.

Parsing and hashing happen before submission (outside the log's sequencer); the
sequencer only stores the bytes and indexes the digests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger.registry.keys import DIGEST_KINDS


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """A checked manifest: ``digest`` is the manifest digest of ``encoded``; ``digests`` are distinct
    ``(kind code, digest)`` pairs of its files, tensors and chunks (kind codes in ``keys.DIGEST_KINDS``)."""

    digest: bytes
    encoded: bytes
    digests: tuple[tuple[int, bytes], ...]


ManifestReader = Callable[[bytes], ManifestSummary]
"""Parse canonical manifest bytes (raising FormatError), compute the digest, list the contained digests."""


def summary_from_pairs(digest: bytes, encoded: bytes, pairs: list[tuple[str, bytes]]) -> ManifestSummary:
    """Build a summary from ``(kind name, digest)`` pairs (``file``, ``tensor``, ``chunk``), removing repeats."""
    seen: dict[tuple[int, bytes], None] = {}
    for kind, d in pairs:
        seen[(DIGEST_KINDS[kind], d)] = None
    return ManifestSummary(digest, encoded, tuple(seen))


def read_manifest(encoded: bytes) -> ManifestSummary:
    """The default :data:`ManifestReader`: strict parse with :mod:`client.manifest.codec`, BLAKE3 digest.

    The encoding is canonical (the decoder refuses any other form), so the digest of
    the bytes received is the manifest digest.
    """
    import blake3

    from client.manifest.codec import decode

    manifest = decode(encoded)
    pairs: dict[tuple[int, bytes], None] = {}
    file_kind, chunk_kind, tensor_kind = DIGEST_KINDS["file"], DIGEST_KINDS["chunk"], DIGEST_KINDS["tensor"]
    for f in manifest.files:
        pairs[(file_kind, f.blake3)] = None
        for c in f.chunks:
            pairs[(chunk_kind, c)] = None
        for t in f.tensors:
            pairs[(tensor_kind, t.blake3)] = None
    return ManifestSummary(blake3.blake3(encoded).digest(), encoded, tuple(pairs))
