"""Tensor digests of one file: find its tensors through the format layer, digest what cannot be
hashed in place, build the manifest's tensor entries.

The tensor digest is BLAKE3 over the tensor's elements in row-major order, little-endian
(docs/manifest.md, "Tensor digests"). Plain regions are hashed by the read and mmap paths as the
file streams past (:mod:`.hashing`, :mod:`.mapped`); a region stored big-endian or encoded
(ONNX varints) is digested here from :func:`client.formats.element_bytes`, in bounded pieces.
A file the format layer claims but cannot parse is hashed as plain bytes (no tensors) with a
warning, so a damaged copy can still be compared against its manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import blake3

from client import formats
from client.core.manifest.errors import TensorFormatError
from client.core.manifest.model import TILED_SINCE, TensorEntry, tiling_start

if TYPE_CHECKING:
    from client.formats.base import TensorRegion
    from client.formats.source import Source

log = logging.getLogger(__name__)


def tiled_header_end(regions: Sequence[TensorRegion], size: int, version: int) -> int | None:
    """``h`` when the file is recorded tiled (docs/manifest.md, "Tiled files"): a manifest version that
    has tiled files, every region plain (so each tensor digest is BLAKE3 of its byte range) and the
    regions back to back over ``[h, size)``, ``h < size``. None: the file gets fixed chunks."""
    if version < TILED_SINCE or not regions or not all(r.plain for r in regions):
        return None
    return tiling_start(((r.start, r.end) for r in regions), size)


def regions_of(path: str, head: bytes, source: Source) -> tuple[str, list[TensorRegion]]:
    """(format name, regions) of a file, or ("", []) if it holds no tensors or does not parse."""
    candidate = formats.claimed_by(path, head)
    if candidate is None:
        return "", []
    try:
        lay = formats.layout_of(path, head, source)
    except TensorFormatError as e:
        log.warning("%s: not parsed as %s, hashed as plain bytes: %s", path, candidate, e)
        return "", []
    if lay is None:
        return "", []
    for name, reason in lay.skipped:
        log.warning("%s: tensor %r has no tensor digest: %s", path, name, reason)
    for r in lay.tensors:
        if r.end > source.size:
            raise TensorFormatError(f"{path}: {lay.format} layout has a region past the file end")
    return lay.format, list(lay.tensors)


def special_digest(r: TensorRegion, read: Callable[[int, int], bytes]) -> bytes:
    """The digest of a region that is not plain (byte-swapped or encoded)."""
    h = blake3.blake3()
    for piece in formats.element_bytes(r, read):
        h.update(piece)
    return h.digest()


def tensor_entries(regions: Sequence[TensorRegion], digests: Sequence[bytes]) -> tuple[TensorEntry, ...]:
    """Manifest tensor entries, sorted by name."""
    if not regions:
        return ()
    entries = [
        TensorEntry(name=r.name, dtype=r.dtype, shape=r.shape, start=r.start, end=r.end, blake3=d)
        for r, d in zip(regions, digests, strict=True)
    ]
    return tuple(sorted(entries, key=lambda t: t.name))
