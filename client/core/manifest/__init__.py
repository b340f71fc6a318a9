"""Manifests: what bytes a checkpoint or dataset held (BLAKE3 files, chunks, tensors). Pure.

The model (:mod:`.model`), its one canonical encoding and digest (:mod:`.codec`), the JSON form
(:mod:`.jsonform`), differences (:mod:`.diff`) and the OpenSSF Model Signing statement (:mod:`.oms`).
Building a manifest from files is :mod:`client.hashing` (docs/manifest.md)::

    from client.hashing import HashConfig, hash_path
    from client.core.manifest import encode, manifest_digest
    m = hash_path("model/", HashConfig(threads=2))
"""

from __future__ import annotations

from client.core.manifest.codec import decode, digest_pairs, encode, manifest_digest
from client.core.manifest.jsonform import from_json, to_json
from client.core.manifest.model import FileEntry, Manifest, SymlinkEntry, TensorEntry

__all__ = [
    "FileEntry",
    "Manifest",
    "SymlinkEntry",
    "TensorEntry",
    "decode",
    "digest_pairs",
    "encode",
    "from_json",
    "manifest_digest",
    "to_json",
]
