"""Hash files into manifest entries: whole-file, chunk and tensor BLAKE3 digests.

The file layer around the pure model. Two paths produce identical digests
(tested across read sizes, thresholds and thread counts):

* files up to ``mmap_threshold`` are read with ``os.read``/``readinto`` in
  ``read_size`` pieces, and every piece feeds the whole-file, chunk and tensor
  hashers in one pass (a file of at most one chunk is hashed once: its chunk
  digest *is* its file digest; a tiled file, whose tensors tile its data section,
  has no chunk hashers: its header region and tensors are its pieces);
* larger files are memory-mapped read-only, a bounded window at a time, and
  split into independent jobs on a shared thread pool: the whole-file digest
  (one BLAKE3 stream, identical to ``b3sum``), one job per chunk, and tensor
  slices (:mod:`client.hashing.mapped`). The BLAKE3 binding releases the GIL,
  so jobs run in parallel without copies;
* with ``processes``, the small files of a large tree go to worker processes
  (:mod:`client.hashing.smallfiles`).

Why each kind of digest costs a pass: BLAKE3 binds each 1 KiB block to its
position (the chunk counter), so the digest of a chunk or tensor hashed on its
own shares no compression with the whole-file tree, except for the first
chunk. Without chaining-value access (the ``blake3`` binding exposes none) no
work can be reused; a tiled file (manifest version 2) drops the chunk pass instead
(two passes, not three); see docs/manifest.md, "Performance".

Memory: at most ``threads`` windows are mapped; anonymous memory is bounded by
the pending-file window, never by the number or size of files.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import blake3

from client import formats
from client.core.manifest.errors import FileChangedError
from client.core.manifest.model import Entry, FileEntry, Manifest, SymlinkEntry, TensorEntry
from client.hashing.config import HashConfig, Progress, no_progress
from client.hashing.mapped import hash_mapped
from client.hashing.tensor_digests import regions_of, special_digest, tensor_entries, tiled_header_end
from client.hashing.walk import WalkItem, WalkPolicy, walk

if TYPE_CHECKING:
    from client.formats.base import TensorRegion
    from client.hashing import smallfiles

log = logging.getLogger(__name__)

#: Walk items per pool task: amortises the executor's per-task cost over many files.
_BATCH = 8
#: Small files hashed in thread mode before switching to worker processes (when enabled).
_PROCESS_AFTER = 2048
#: Walk items per worker-process task.
_PROCESS_BATCH = 512


def _pread_exact(fd: int, offset: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length:
        b = os.pread(fd, length, offset)
        if not b:
            raise FileChangedError("file shrank while it was being read")
        parts.append(b)
        offset += len(b)
        length -= len(b)
    return b"".join(parts)


class Hasher:
    """Hashes walk items on a thread pool; use as a context manager.

    Requires the config validated (HashConfig does it). Thread-safe for one
    caller at a time; results come back in submission order.
    """

    def __init__(self, config: HashConfig, progress: Progress = no_progress) -> None:
        self.config = config
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="manifest-hash")
        self._local = threading.local()

    def __enter__(self) -> Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- tensor detection -------------------------------------------------------------------

    def _fd_regions(self, item: WalkItem, fd: int, size: int) -> tuple[str, list[TensorRegion]]:
        if not self.config.tensors:
            return "", []
        head = _pread_exact(fd, 0, min(size, formats.HEAD_BYTES))
        if not formats.claims(item.path, head):
            return "", []
        from client.formats.source import FdSource

        return regions_of(item.path, head, FdSource(item.path, fd, size))

    # -- read path ------------------------------------------------------------------------

    def _buffer(self) -> bytearray:
        buf: bytearray | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) != self.config.read_size:
            buf = bytearray(self.config.read_size)
            self._local.buf = buf
        return buf

    def _open(self, item: WalkItem) -> tuple[int, os.stat_result]:
        try:
            fd = os.open(item.abspath, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise FileChangedError(f"cannot open {item.path!r}: {e.strerror}") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FileChangedError(f"{item.path!r} is no longer a regular file")
        return fd, st

    def _hash_open(self, item: WalkItem, fd: int, st: os.stat_result) -> FileEntry:
        if st.st_size > self.config.mmap_threshold:
            return self._mapped_file(item, fd, st)
        return self._read_small(item, fd, st.st_size)

    def _read_file(self, item: WalkItem) -> FileEntry:
        fd, st = self._open(item)
        try:
            return self._hash_open(item, fd, st)
        finally:
            os.close(fd)

    def _read_small(self, item: WalkItem, fd: int, size: int) -> FileEntry:
        cs = self.config.chunk_size
        if size <= self.config.read_size:
            # A regular file reads short only at its end: size bytes for size + 1 asked is EOF.
            data = os.read(fd, size + 1)
            while len(data) < size:
                more = os.read(fd, size + 1 - len(data))
                if not more:
                    break
                data += more
            if len(data) != size:
                raise FileChangedError(f"{item.path!r} changed size while it was being read")
            return self._from_bytes(item.path, data)
        # Streaming one pass: whole-file, chunk (or header) and tensor hashers fed from the same buffer.
        fmt, regions = self._fd_regions(item, fd, size)
        h_end = tiled_header_end(regions, size, self.config.version)
        whole = blake3.blake3()
        chunk = blake3.blake3()
        chunks: list[bytes] = []
        plain = [r for r in regions if r.plain]
        spans = [(r.start, r.end) for r in plain] + ([(0, h_end)] if h_end is not None else [])
        hashers = [blake3.blake3() for _ in spans]
        buf = self._buffer()
        view = memoryview(buf)
        offset = 0
        os.lseek(fd, 0, os.SEEK_SET)
        while offset < size:
            n = os.readv(fd, [view[: min(len(buf), size - offset)]])
            if n == 0:
                raise FileChangedError(f"{item.path!r} shrank while it was being read")
            piece = view[:n]
            whole.update(piece)
            pos = n if h_end is not None else 0  # a tiled file has no chunks
            while pos < n:
                take = min(n - pos, cs - (offset + pos) % cs)
                chunk.update(piece[pos : pos + take])
                pos += take
                if (offset + pos) % cs == 0 or offset + pos == size:
                    chunks.append(chunk.digest())
                    chunk = blake3.blake3()
            for (start, end), h in zip(spans, hashers, strict=True):
                lo, hi = max(start, offset), min(end, offset + n)
                if lo < hi:
                    h.update(piece[lo - offset : hi - offset])
            offset += n
            self.progress(n, 0)
        if os.read(fd, 1):
            raise FileChangedError(f"{item.path!r} grew while it was being read")
        digests = {r.name: h.digest() for r, h in zip(plain, hashers[: len(plain)], strict=True)}
        for r in regions:
            if not r.plain:
                digests[r.name] = special_digest(r, lambda o, n: _pread_exact(fd, o, n))
        tens = tensor_entries(regions, [digests[r.name] for r in regions])
        header = hashers[-1].digest() if h_end is not None else None
        self.progress(0, 1)
        return FileEntry(item.path, size, whole.digest(), tuple(chunks), fmt, tens, header)

    def _from_bytes(self, path: str, data: bytes) -> FileEntry:
        size, cs = len(data), self.config.chunk_size
        digest = blake3.blake3(data).digest()
        view = memoryview(data)
        fmt, tens, h_end = "", tuple[TensorEntry, ...](), None
        head = data[: formats.HEAD_BYTES]
        if self.config.tensors and formats.claims(path, head):
            from client.formats.source import BytesSource

            src = BytesSource(path, data)
            fmt, regions = regions_of(path, head, src)
            h_end = tiled_header_end(regions, size, self.config.version)
            tens = tensor_entries(regions, [
                blake3.blake3(view[r.start : r.end]).digest() if r.plain else special_digest(r, src.read)
                for r in regions
            ])
        header = blake3.blake3(view[:h_end]).digest() if h_end is not None else None
        if h_end is not None or not size:
            chunks: tuple[bytes, ...] = ()
        elif size <= cs:
            chunks = (digest,)
        else:
            chunks = tuple(blake3.blake3(view[o : o + cs]).digest() for o in range(0, size, cs))
        self.progress(size, 1)
        return FileEntry(path, size, digest, chunks, fmt, tens, header)

    # -- mmap path ------------------------------------------------------------------------

    def _mapped_file(self, item: WalkItem, fd: int, st: os.stat_result) -> FileEntry:
        """Memory-mapped path (see :mod:`client.hashing.mapped`); refuses a file that changed meanwhile."""
        size, cs = st.st_size, self.config.chunk_size
        fmt, regions = self._fd_regions(item, fd, size)
        h_end = tiled_header_end(regions, size, self.config.version)
        digest, chunks, tdigests, header = hash_mapped(
            fd,
            size,
            cs,
            regions,
            header_end=h_end,
            window=max(self.config.map_window, cs),
            pool=self._pool,
            helpers=self.config.threads - 1,
            progress=self.progress,
        )
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise FileChangedError(f"{item.path!r} changed while it was being hashed")
        tens = tensor_entries(regions, [tdigests[r.name] for r in regions])
        self.progress(0, 1)
        return FileEntry(item.path, size, digest, chunks, fmt, tens, header)

    def _entry(self, item: WalkItem) -> Entry:
        if item.is_symlink:
            self.progress(0, 1)
            return SymlinkEntry(item.path, item.target)
        return self._read_file(item)

    def entries(self, items: Iterator[WalkItem]) -> Iterator[Entry]:
        """Hash ``items`` in parallel; yield entries in the items' order, at most max_pending in flight.

        Small files are hashed by the calling thread; larger ones go to the pool
        in batches. A large file's worker works through its own jobs and enlists
        idle workers as helpers (:class:`_JobSet`), so no worker ever blocks on a
        queued job. With ``processes > 1``, after _PROCESS_AFTER small files the
        rest of the walk is handed to worker processes (:mod:`smallfiles`).
        """
        it = iter(items)
        yield from self._thread_entries(it)
        yield from self._process_entries(it)

    def _thread_entries(self, items: Iterator[WalkItem]) -> Iterator[Entry]:
        """Thread mode; returns early (leaving ``items`` unfinished) when switching to processes."""
        pending: deque[list[Entry] | Future[list[Entry]]] = deque()
        in_flight = 0
        inlined = 0
        switch = self.config.processes > 1
        batch: list[WalkItem] = []
        inline_size = self.config.inline_size
        for item in items:
            ready: Entry | None = None
            if item.is_symlink:
                ready = self._entry(item)
            else:
                fd, st = self._open(item)
                try:
                    if st.st_size <= inline_size:
                        # Python-bound work: done here, one GIL holder, no task or thread hand-off.
                        ready = self._hash_open(item, fd, st)
                        inlined += 1
                    else:
                        batch.append(item)
                finally:
                    os.close(fd)
            if ready is not None:
                if not pending and not batch:
                    yield ready  # nothing queued ahead of it
                    if switch and inlined >= _PROCESS_AFTER:
                        return
                    continue
                if batch:  # keep canonical order: earlier items go first
                    pending.append(self._pool.submit(self._batch, batch))
                    batch = []
                pending.append([ready])
            in_flight += 1
            if batch and (len(batch) >= _BATCH or in_flight >= self.config.max_pending):
                pending.append(self._pool.submit(self._batch, batch))
                batch = []
            while pending and (in_flight >= self.config.max_pending or _ready(pending[0])):
                done = _take(pending.popleft())
                in_flight -= len(done)
                yield from done
            if switch and inlined >= _PROCESS_AFTER:
                break  # finish what is queued, then hand the rest of ``items`` to processes
        if batch:
            pending.append(self._pool.submit(self._batch, batch))
        while pending:
            yield from _take(pending.popleft())

    def _process_entries(self, items: Iterator[WalkItem]) -> Iterator[Entry]:
        first = next(items, None)
        if first is None:
            return
        from client.hashing import smallfiles

        cs, inline = self.config.chunk_size, self.config.inline_size
        limit = max(2 * self.config.processes, self.config.max_pending // _PROCESS_BATCH)
        pool = smallfiles.WorkerPool(self.config.processes)
        pending: deque[tuple[Future[smallfiles.BatchResult], list[WalkItem]]] = deque()
        try:
            batch: list[WalkItem] = [first]
            for item in items:
                batch.append(item)
                if len(batch) >= _PROCESS_BATCH:
                    pending.append((pool.submit(cs, inline, _paths(batch)), batch))
                    batch = []
                    while pending and (len(pending) >= limit or pending[0][0].done()):
                        yield from self._collect(*pending.popleft())
            if batch:
                pending.append((pool.submit(cs, inline, _paths(batch)), batch))
            while pending:
                yield from self._collect(*pending.popleft())
        finally:
            pool.close()

    def _collect(self, future: Future[smallfiles.BatchResult], items: list[WalkItem]) -> Iterator[Entry]:
        from client.hashing.smallfiles import Declined

        check_tensors = self.config.tensors
        for item, r in zip(items, future.result(), strict=True):
            if isinstance(r, Declined) or (check_tensors and formats.claims(item.path, r.head)):
                yield self._entry(item)  # symlink, large, tensor format, or an error to raise here
                continue
            self.progress(r.size, 1)
            yield FileEntry(item.path, r.size, r.blake3, r.chunks)

    def _batch(self, items: Sequence[WalkItem]) -> list[Entry]:
        return [self._entry(item) for item in items]


def _paths(items: Sequence[WalkItem]) -> list[str | None]:
    return [None if i.is_symlink else i.abspath for i in items]


def _ready(p: list[Entry] | Future[list[Entry]]) -> bool:
    return isinstance(p, list) or p.done()


def _take(p: list[Entry] | Future[list[Entry]]) -> list[Entry]:
    return p if isinstance(p, list) else p.result()


def iter_entries(
    root: str,
    config: HashConfig,
    *,
    progress: Progress = no_progress,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[Entry]:
    """Stream the entries of ``root`` in canonical order (bounded memory; see module docstring)."""
    items = walk(root, WalkPolicy(allow_symlinks=config.allow_symlinks), on_skip=on_skip)
    with Hasher(config, progress=progress) as h:
        yield from h.entries(items)


def hash_path(
    root: str,
    config: HashConfig | None = None,
    *,
    progress: Progress = no_progress,
    on_skip: Callable[[str], None] | None = None,
) -> Manifest:
    """The manifest of a file or directory. Raises WalkError for refused or empty input."""
    cfg = config if config is not None else HashConfig()
    entries = tuple(iter_entries(root, cfg, progress=progress, on_skip=on_skip))
    return Manifest(chunk_size=cfg.chunk_size, entries=entries, version=cfg.version)
