"""Building manifests from files: walk a folder, read it once, hash files, chunks and tensors with BLAKE3.

The file layer around the pure :mod:`client.core.manifest`: :mod:`.walk` (what a folder holds),
:mod:`.hashing` (the reader and hasher), :mod:`.background` (a thread for training loops),
:mod:`.progress`. Importing this package registers the built-in safetensors tensor format.
"""

from __future__ import annotations

from client.hashing import safetensors as _safetensors  # noqa: F401  (registers the format)
from client.hashing.hashing import HashConfig, hash_path, iter_entries

__all__ = ["HashConfig", "hash_path", "iter_entries"]
