"""Hash one large file through bounded memory-mapped windows, on a shared thread pool.

The file is mapped ``window`` bytes at a time (a multiple of the chunk size),
read-only. Each window becomes independent jobs: the next piece of the
whole-file BLAKE3 stream (identical to ``b3sum``), one job per chunk, and one
per tensor slice (feeding that tensor's own BLAKE3 stream). A tiled file
(docs/manifest.md, "Tiled files") has no chunk jobs: its header region is one
more stream, so the file costs two passes, which two workers run side by side. The calling worker
runs jobs itself and enlists idle pool workers (:class:`JobSet`), so it never
blocks on a queued job; windows follow one another, so every stream sees its
bytes in order and at most one window is mapped: resident memory is bounded by
the window, not by the file. The BLAKE3 binding releases the GIL and reads the
mapping in place: nothing is copied.

Tensors that cannot be hashed in place (stored big-endian, or encoded: see
:class:`client.formats.base.TensorRegion`) are digested separately from ``pread`` blocks
(:func:`client.hashing.tensor_digests.special_digest`).
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import blake3

from client.hashing.config import Progress
from client.hashing.tensor_digests import special_digest

if TYPE_CHECKING:
    from client.formats.base import TensorRegion


class JobSet:
    """Jobs run by the calling worker plus up to ``helpers`` pool workers; results in job order.

    The caller runs jobs too, so this never deadlocks even on a one-thread pool;
    helpers that start late find the queue empty and return at once.
    """

    def __init__(self, jobs: Sequence[Callable[[], object]]) -> None:
        self._jobs = jobs
        self._results: list[object] = [None] * len(jobs)
        self._next = 0
        self._done = 0
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._next >= len(self._jobs) or self._error is not None:
                    return
                i = self._next
                self._next += 1
            try:
                r = self._jobs[i]()
            except BaseException as e:  # noqa: BLE001 - handed to the caller of run()
                with self._cond:
                    self._error = self._error or e
                    self._done += 1
                    self._cond.notify_all()
                return
            with self._cond:
                self._results[i] = r
                self._done += 1
                self._cond.notify_all()

    def run(self, pool: ThreadPoolExecutor, helpers: int) -> list[object]:
        for _ in range(min(helpers, len(self._jobs) - 1)):
            pool.submit(self._work)
        self._work()
        with self._cond:
            self._cond.wait_for(lambda: self._done >= self._next)
            if self._error is not None:
                raise self._error
        return self._results


def _update(h: blake3.blake3, view: memoryview, lo: int, hi: int) -> None:
    h.update(view[lo:hi])


def _digest(view: memoryview, lo: int, hi: int) -> bytes:
    return blake3.blake3(view[lo:hi]).digest()


def hash_mapped(
    fd: int,
    size: int,
    chunk_size: int,
    regions: Sequence[TensorRegion],
    *,
    header_end: int | None = None,
    window: int,
    pool: ThreadPoolExecutor,
    helpers: int,
    progress: Progress,
) -> tuple[bytes, tuple[bytes, ...], dict[str, bytes], bytes | None]:
    """(whole-file digest, chunk digests, tensor digests by name, header digest) of the open file ``fd``.

    With ``header_end`` h (a tiled file) no chunk is hashed: the chunk digests are () and the header
    digest is BLAKE3 of ``[0, h)``; otherwise the header digest is None. Requires size > 0, ``window``
    a positive multiple of both ``chunk_size`` and mmap.ALLOCATIONGRANULARITY, and regions within [0, size).
    """
    whole = blake3.blake3()
    plain = [r for r in regions if r.plain]
    header = blake3.blake3() if header_end is not None else None
    spans = [(r.start, r.end, blake3.blake3()) for r in plain]
    tensor_streams = {r.name: h for r, (_, _, h) in zip(plain, spans, strict=True)}
    if header is not None and header_end:
        spans.append((0, header_end, header))
    spans.sort(key=lambda sp: sp[0])
    chunks: list[bytes] = []
    first = 0  # spans[first:] may still overlap this or later windows
    for base in range(0, size, window):
        length = min(window, size - base)
        mm = mmap.mmap(fd, length, prot=mmap.PROT_READ, offset=base)
        view = memoryview(mm)
        try:
            jobs: list[Callable[[], object]] = [partial(_update, whole, view, 0, length)]
            slices = []
            while first < len(spans) and spans[first][1] <= base:
                first += 1
            for start, end, h in spans[first:]:
                if start >= base + length:
                    break
                lo, hi = max(start, base) - base, min(end, base + length) - base
                if lo < hi:
                    slices.append((hi - lo, partial(_update, h, view, lo, hi)))
            jobs += [job for _, job in sorted(slices, key=lambda s: -s[0])]
            n_before = len(jobs)
            if header is None:
                jobs += [partial(_digest, view, o, min(o + chunk_size, length)) for o in range(0, length, chunk_size)]
            results = JobSet(jobs).run(pool, helpers)
            chunks += [r for r in results[n_before:] if isinstance(r, bytes)]
            del jobs, slices, results
        finally:
            view.release()
            mm.close()
        progress(length, 0)
    out = {name: h.digest() for name, h in tensor_streams.items()}
    special = [r for r in regions if not r.plain]
    if special:
        from client.formats.source import FdSource

        source = FdSource("", fd, size)
        for r in special:
            out[r.name] = special_digest(r, source.read)
    return whole.digest(), tuple(chunks), out, header.digest() if header is not None else None
