"""Manifests: what bytes a checkpoint or dataset held (BLAKE3 files, chunks, tensors).

Public API (docs/manifest.md)::

    from client.manifest import HashConfig, hash_path, encode, decode, manifest_digest
    m = hash_path("model/", HashConfig(threads=2))

Pure cores: ``model``, ``codec``, ``jsonform``, ``diff``, ``oms``, ``safetensors``
(parsing only); file layer: ``walk``, ``hashing``, ``background``, ``progress``.
Importing this package registers the built-in safetensors tensor format.
"""

from __future__ import annotations

from client.manifest import safetensors as _safetensors  # noqa: F401  (registers the format)
from client.manifest.codec import decode, digest_pairs, encode, manifest_digest
from client.manifest.hashing import HashConfig, hash_path, iter_entries
from client.manifest.jsonform import from_json, to_json
from client.manifest.model import FileEntry, Manifest, SymlinkEntry, TensorEntry

__all__ = [
    "FileEntry",
    "HashConfig",
    "Manifest",
    "SymlinkEntry",
    "TensorEntry",
    "decode",
    "digest_pairs",
    "encode",
    "from_json",
    "hash_path",
    "iter_entries",
    "manifest_digest",
    "to_json",
]
