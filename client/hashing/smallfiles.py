"""Hash many small files in worker processes (datasets of millions of files).

For files of a few KiB the cost of hashing is Python overhead (open, fstat,
read, close, bookkeeping) held under the GIL, so threads do not add throughput;
processes do. Workers read and hash whole small files and send back only
``(size, blake3, chunk digests, first bytes)``; the parent builds the entries,
decides about tensor formats (:func:`client.formats.claims`)
and hashes anything a worker declined (too large, claimed by a tensor format)
on its own thread pool. Results are the same as the thread path's, byte for
byte (tested).
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from concurrent.futures import Future, ProcessPoolExecutor
from typing import NamedTuple

import blake3

from client.formats import HEAD_BYTES


class SmallResult(NamedTuple):
    size: int
    blake3: bytes
    chunks: tuple[bytes, ...]
    head: bytes


class Declined(NamedTuple):
    """The worker did not hash this item (a symlink, a large file, or an error to re-raise in the parent)."""

    reason: str


BatchResult = list[SmallResult | Declined]


def hash_small_batch(chunk_size: int, inline_size: int, paths: list[str | None]) -> BatchResult:
    """Hash each regular file of at most ``inline_size`` bytes; ``None`` paths (symlinks) are declined.

    Runs in a worker process. Errors are returned as Declined so the parent
    re-does the file on its own path and raises the error there, with context.
    """
    out: BatchResult = []
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for path in paths:
        if path is None:
            out.append(Declined("symlink"))
            continue
        try:
            fd = os.open(path, flags)
        except OSError as e:
            out.append(Declined(f"open: {e.strerror}"))
            continue
        try:
            st = os.fstat(fd)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode) or size > inline_size:
                out.append(Declined("large or not regular"))
                continue
            data = os.read(fd, size + 1)
            while len(data) < size:
                more = os.read(fd, size + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        if len(data) != size:
            out.append(Declined("changed size"))
            continue
        digest = blake3.blake3(data).digest()
        if size <= chunk_size:
            chunks: tuple[bytes, ...] = (digest,) if size else ()
        else:
            view = memoryview(data)
            chunks = tuple(blake3.blake3(view[o : o + chunk_size]).digest() for o in range(0, size, chunk_size))
        out.append(SmallResult(size, digest, chunks, data[:HEAD_BYTES]))
    return out


class WorkerPool:
    """A process pool started from a fork server that preloads only this module."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=ctx)

    def submit(self, chunk_size: int, inline_size: int, paths: list[str | None]) -> Future[BatchResult]:
        return self._pool.submit(hash_small_batch, chunk_size, inline_size, paths)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
