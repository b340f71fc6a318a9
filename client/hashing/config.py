"""How to hash: :class:`HashConfig`, validated once, and the progress callback type."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from client.core.manifest.model import DEFAULT_CHUNK_SIZE, FORMAT_VERSION, check_chunk_size, check_version
from client.errors import InvalidInputError


@dataclass(frozen=True)
class HashConfig:
    """How to hash. Only ``chunk_size`` and ``version`` change digests (both are recorded in the manifest).

    threads: worker threads (files and jobs in parallel); read_size: read buffer
    of the read path; mmap_threshold: files larger than this are memory-mapped;
    max_pending: files in flight (bounds memory); inline_size: files up to this
    size are hashed by the walking thread itself (their cost is Python overhead
    under the GIL, which a hand-off to another thread only adds to); tensors:
    parse known tensor formats; allow_symlinks: record symlinks as links;
    processes: when > 1, once a tree has shown many small files, hash the
    rest of its small files in that many worker processes (smallfiles.py);
    map_window: bytes of a large file mapped at once (a power of two >= 4096;
    bounds resident memory); version: the manifest format version to build (2 tiles a file
    whose tensors tile its data section, 1 gives every file fixed chunks; ``hash --verify``
    re-hashes in the version of the manifest it checks).
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    read_size: int = 1 << 20
    mmap_threshold: int = 8 << 20
    max_pending: int = 512
    inline_size: int = 64 << 10
    processes: int = 0
    map_window: int = 64 << 20
    tensors: bool = True
    allow_symlinks: bool = False
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_chunk_size(self.chunk_size)
        check_version(self.version)
        if not 1 <= self.threads <= 1024:
            raise InvalidInputError(f"threads must be in [1, 1024], got {self.threads}")
        if not 1 <= self.read_size <= 1 << 30:
            raise InvalidInputError(f"read size must be in [1, 2**30], got {self.read_size}")
        if self.map_window < mmap.ALLOCATIONGRANULARITY or self.map_window & (self.map_window - 1):
            raise InvalidInputError(f"map window must be a power of two >= 4096, got {self.map_window}")
        if not 0 <= self.processes <= 1024:
            raise InvalidInputError(f"processes must be in [0, 1024], got {self.processes}")
        if self.mmap_threshold < 0 or self.max_pending < 1:
            raise InvalidInputError("mmap_threshold must be >= 0 and max_pending >= 1")


Progress = Callable[[int, int], None]
"""``progress(bytes, files)``: called (from worker threads) as bytes are hashed and files complete."""


def no_progress(_b: int, _f: int) -> None:
    return None
