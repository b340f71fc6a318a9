"""Building manifests from files: walk a folder, read it once, hash files, chunks and tensors with BLAKE3.

The file layer around the pure :mod:`client.core.manifest`: :mod:`.walk` (what a folder holds),
:mod:`.config` (how to hash), :mod:`.hashing` (the reader and hasher), :mod:`.mapped` (large files),
:mod:`.tensor_digests` (tensors found by the format layer, :mod:`client.formats`),
:mod:`.smallfiles` (worker processes), :mod:`.background` (a thread for training loops), :mod:`.progress`.
"""

from __future__ import annotations

from client.hashing.config import HashConfig
from client.hashing.hashing import hash_path, iter_entries

__all__ = ["HashConfig", "hash_path", "iter_entries"]
