"""Whole-file digests for checking an OMS statement: SHA-256 (model-signing's default) or BLAKE3.

The file layer beside :mod:`client.hashing.hashing`: the same canonical walk (``.git*`` skipped,
names checked), each file read once in 1 MiB blocks on a few threads (hashlib and blake3 release
the GIL on large updates). Symlinks are followed (hashed as the file they point to) only when the
statement allows them, as model-signing does; otherwise the walk refuses them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import blake3

from client.core.manifest.errors import WalkError
from client.hashing.walk import WalkPolicy, walk

BLOCK = 1 << 20


def _digest(path: str, algorithm: str) -> bytes:
    h = hashlib.sha256() if algorithm == "sha256" else blake3.blake3()
    try:
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
    except OSError as err:
        raise WalkError(f"cannot read {path!r}: {err.strerror}") from err
    return h.digest()


def file_digests(root: str, algorithm: str, *, follow_symlinks: bool = False, threads: int = 4,
                 on_skip: Callable[[str], None] | None = None) -> dict[str, bytes]:
    """Relative path -> whole-file digest (``sha256`` or ``blake3``) of every file under ``root``
    (a single file is named by its base name). Raises WalkError as the canonical walk does."""
    if algorithm not in ("sha256", "blake3"):
        raise WalkError(f"unknown file digest algorithm {algorithm!r}")
    items = list(walk(root, WalkPolicy(allow_symlinks=follow_symlinks), on_skip))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        digests = list(pool.map(lambda it: _digest(it.abspath, algorithm), items))
    return {it.path: d for it, d in zip(items, digests, strict=True)}
