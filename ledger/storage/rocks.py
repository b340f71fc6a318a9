"""A RocksDB :class:`~ledger.storage.Storage` (through ``rocksdict``): one directory, five column families.

Layout (format ``1``; every key and value is raw bytes):

=========  ==============================  ==============================================
family     key                             value
=========  ==============================  ==============================================
entries    index, 8 bytes big-endian       the entry bytes
hashes     level (1 byte) + group (8, BE)  the group's 32-byte hashes, concatenated
leaves     first 16 bytes of a leaf hash   LEB128 varints: every index with that prefix
aux        the hook's key                  the hook's value
meta       ``format`` / ``origin`` /       format version / log origin / tree head
           ``head`` / ``checkpoint``       (size, root, edge) / last signed note
=========  ==============================  ==============================================

A commit is one ``WriteBatch``, then a sync of the write-ahead log (``flush_wal(True)``,
as durable as ``sync=True``; see :meth:`RocksStorage._write_synced`). A failed write
latches RocksDB (every later write fails too) until the instance is reopened, which
:meth:`RocksStorage.recover` does in place, under concurrent readers. The dedup family is
point-read only (a bloom filter answers most misses without I/O); hashes and the
dedup values are incompressible, so those families skip compression. The aux
family's bloom filters also index the first :data:`AUX_SCAN_PREFIX` bytes of each
key, so a scan of a prefix at least that long skips every file without it.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    SliceTransform,
    WriteBatch,
    WriteOptions,
)

from client.core.merkle import HASH_SIZE
from ledger.errors import CorruptStorageError, StorageError
from ledger.storage import DEDUP_PREFIX, Batch, HashGroupKey, TreeHead
from ledger.storage.signed_head import SignedHeadFile

log = logging.getLogger(__name__)

FORMAT_VERSION = b"1"
_FAMILIES = ("entries", "hashes", "leaves", "aux", "meta")
SIGNED_HEAD_FILE = "SIGNED-HEAD"  # next to RocksDB's own files; see ledger/storage/signed_head.py
_HEAD_VERSION = 1


def _index_key(i: int) -> bytes:
    return i.to_bytes(8, "big")


def _group_key(key: HashGroupKey) -> bytes:
    level, group = key
    return bytes((level,)) + group.to_bytes(8, "big")


def encode_varints(values: Sequence[int]) -> bytes:
    """LEB128 (unsigned) of each value, concatenated."""
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def decode_varints(data: bytes) -> list[int]:
    """Inverse of :func:`encode_varints`; raises :class:`CorruptStorageError` on truncation."""
    values: list[int] = []
    v = shift = 0
    for b in data:
        v |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 63:
                raise CorruptStorageError("dedup index value has an overlong varint")
        else:
            values.append(v)
            v = shift = 0
    if shift:
        raise CorruptStorageError("dedup index value ends inside a varint")
    return values


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None if there is none: all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def encode_head(head: TreeHead) -> bytes:
    """``version (1) || size (8, BE) || root || edge hashes``."""
    return bytes((_HEAD_VERSION,)) + head.size.to_bytes(8, "big") + head.root + b"".join(head.edge)


def decode_head(data: bytes) -> TreeHead:
    if len(data) < 41 or data[0] != _HEAD_VERSION:
        raise CorruptStorageError("stored tree head is malformed")
    size = int.from_bytes(data[1:9], "big")
    rest = data[41:]
    if len(rest) != size.bit_count() * HASH_SIZE:
        raise CorruptStorageError(f"stored tree head of size {size} has a wrong-length edge")
    edge = tuple(rest[i : i + HASH_SIZE] for i in range(0, len(rest), HASH_SIZE))
    return TreeHead(size, data[9:41], edge)


AUX_SCAN_PREFIX = 34
"""Aux key bytes the bloom filters index besides whole keys (a personality's 2-byte tag and a 32-byte
id or digest: the registry's posting-list keys). A scan of at least this many bytes of prefix, on
keys in files built by RocksDB after a flush, measured 3-5x faster with it (100,000 lists, 3 files)."""


def _options(cache: Cache, *, compress: bool, bloom: bool, write_buffer: int, scan_prefix: int = 0) -> Options:
    opts = Options(raw_mode=True)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    if bloom:
        table.set_bloom_filter(10, False)
        opts.set_memtable_whole_key_filtering(True)  # most dedup lookups are misses, most in the memtable
        opts.set_memtable_prefix_bloom_ratio(0.1)
        if scan_prefix:
            opts.set_prefix_extractor(SliceTransform.create_fixed_prefix(scan_prefix))
    opts.set_block_based_table_factory(table)
    opts.set_compression_type(DBCompressionType.lz4() if compress else DBCompressionType.none())
    opts.set_write_buffer_size(write_buffer)
    opts.set_level_compaction_dynamic_level_bytes(True)
    return opts


def _open_db(path: Path, cache: Cache, *, read_only: bool = False) -> Rdict:
    """Open the RocksDB instance at ``path`` with the store's options (rocksdict errors pass through).

    ``read_only`` replays the write-ahead log into memory and writes nothing to the store,
    so it works on a full disk.
    """
    db_opts = Options(raw_mode=True)
    db_opts.create_if_missing(not read_only)
    db_opts.create_missing_column_families(not read_only)
    db_opts.set_max_background_jobs(2)
    db_opts.set_keep_log_file_num(3)
    db_opts.set_max_total_wal_size(256 << 20)
    column_families = {
        "entries": _options(cache, compress=True, bloom=False, write_buffer=64 << 20),
        "hashes": _options(cache, compress=False, bloom=False, write_buffer=32 << 20),
        "leaves": _options(cache, compress=False, bloom=True, write_buffer=32 << 20),
        "aux": _options(cache, compress=True, bloom=True, write_buffer=16 << 20, scan_prefix=AUX_SCAN_PREFIX),
        "meta": _options(cache, compress=False, bloom=False, write_buffer=4 << 20),
    }
    access = AccessType.read_only(False) if read_only else AccessType.read_write()
    return Rdict(str(path), db_opts, column_families=column_families, access_type=access)


_REOPEN_FIRST_DELAY = 0.25  # seconds before a failed reopen is tried again; doubles per failure ...
_REOPEN_MAX_DELAY = 2.0  # ... up to this: how long writes may stay refused after the disk has room again
_REOPEN_WAIT = 5.0  # seconds a reader whose instance a reopen closed waits for the new one
_LOCK_RETRIES = 10  # a reopen's open waits this many times 50 ms for a scan to let go of the old instance


class _Handle:
    """One open RocksDB instance: the DB, a reader per column family, the family handles for writes.

    A reopen replaces the whole object. Each read takes ``RocksStorage._h`` once, so one call
    uses one instance throughout; a closed instance only raises (rocksdict checks), it never
    reads freed memory.
    """

    __slots__ = ("cf", "db", "families", "writable")

    def __init__(self, db: Rdict, *, writable: bool) -> None:
        self.db = db
        self.cf = {name: db.get_column_family(name) for name in _FAMILIES}
        self.families = {name: db.get_column_family_handle(name) for name in _FAMILIES}
        self.writable = writable

    def close(self) -> None:
        """Close the family readers and the DB, all of them even if one fails; raises the first error.

        rocksdict's close flushes (on a writable instance) and then drops its reference to the
        instance even when the flush fails; the family handles have no close and are dropped
        here. RocksDB shuts the instance down (and frees its LOCK) once the last reference
        goes: here, unless a scan's iterator still holds one.
        """
        self.families.clear()
        first: Exception | None = None
        for reader in (*self.cf.values(), self.db):
            try:
                reader.close()
            except Exception as e:
                first = first or e
        if first is not None:
            raise first


class RocksStorage:
    """The log's store in a RocksDB directory. Open with :meth:`open`.

    Reads take no lock: each uses the current :class:`_Handle` and, if a :meth:`recover`
    closed that instance under it, waits for the new one and reads again. Writes come from
    the one sequencer thread, which is also the thread that calls :meth:`recover`.
    """

    def __init__(self, db: Rdict, path: Path, cache: Cache) -> None:
        self._h: _Handle | None = _Handle(db, writable=True)
        self._path = path
        self._cache = cache
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._scattered = ReadOptions()
        self._scattered.fill_cache(False)  # type: ignore[call-arg]  # the .pyi omits the argument
        self._closed = False
        self._lock = threading.Lock()  # one of close, recover, checkpoint at a time
        self._swap = threading.Condition()  # readers wait on it while a reopen is under way
        self._reopening = False
        self._write_error: str | None = None  # why the current instance may refuse writes
        self._reopen_delay = _REOPEN_FIRST_DELAY
        self._next_reopen = 0.0
        self._signed = SignedHeadFile(path / SIGNED_HEAD_FILE)

    @classmethod
    def open(cls, path: Path | str, *, cache_bytes: int = 32 << 20) -> RocksStorage:
        """Open (creating if absent) the store at ``path``.

        Raises :class:`CorruptStorageError` for a directory that is not this format's
        store (another RocksDB database, a newer format, stray files), and
        :class:`StorageError` when RocksDB cannot open it (locked, unreadable).
        """
        path = Path(path)
        fresh = not path.exists() or not any(path.iterdir())
        if not fresh:
            if not (path / "CURRENT").is_file():
                raise CorruptStorageError(f"{path} is not empty and is not a RocksDB directory")
            try:
                families = set(Rdict.list_cf(str(path), Options(raw_mode=True)))
            except Exception as e:
                raise CorruptStorageError(f"cannot read the column families of {path}: {e}") from e
            if families != {"default", *_FAMILIES}:
                raise CorruptStorageError(f"{path} holds column families {sorted(families)}, not a log store")
        cache = Cache(cache_bytes)
        try:
            db = _open_db(path, cache)
        except Exception as e:
            raise StorageError(f"cannot open RocksDB at {path}: {e}") from e
        store = cls(db, path, cache)
        try:
            version = store._get("meta", [b"format"])[0]
            if fresh:
                batch = WriteBatch(raw_mode=True)
                batch.put(b"format", FORMAT_VERSION, store._writable().families["meta"])
                db.write(batch, store._sync)
            elif version != FORMAT_VERSION:
                raise CorruptStorageError(f"{path} has store format {version!r}, this code reads {FORMAT_VERSION!r}")
        except BaseException:
            store.close()
            raise
        log.info("opened log store", extra={"path": str(path), "fresh": fresh})
        return store

    @property
    def _cf(self) -> dict[str, Rdict]:
        """The current instance's column families (for tests that edit the store behind its back)."""
        h = self._h
        if h is None:
            raise StorageError("storage is closed")
        return h.cf

    def _get(self, family: str, keys: list[bytes], read_opt: ReadOptions | None = None) -> list[Any]:
        h = self._h
        if h is not None:
            get = h.cf[family].get
            try:
                # One get per key: rocksdict's multi-get (get(list)) measured 2-3x slower per key.
                values: list[Any] = [get(k, None, read_opt) for k in keys]
            except Exception as e:
                return self._get_again(h, e, family, keys, read_opt)
            return values
        return self._get_again(h, None, family, keys, read_opt)

    def _get_again(self, h: _Handle | None, err: Exception | None, family: str, keys: list[bytes],
                   read_opt: ReadOptions | None) -> list[Any]:
        """:meth:`_get` once more, on the instance a reopen put in place of ``h`` (see :meth:`_after_reopen`)."""
        get = self._after_reopen(h, err, f"read from {family}").cf[family].get
        try:
            return [get(k, None, read_opt) for k in keys]
        except Exception as e:
            raise StorageError(f"read from {family} failed: {e}") from e

    def _after_reopen(self, h: _Handle | None, err: Exception | None, what: str) -> _Handle:
        """The instance to retry ``what`` on after it failed with ``err`` on ``h`` (None: there was none).

        That is the one a :meth:`recover` put in place of ``h``, waiting (up to
        :data:`_REOPEN_WAIT` seconds) for a reopen under way. Raises :class:`StorageError`
        when the store is closed, when there is no instance, or when ``h`` is still current
        (then ``err`` is a real failure, not a reopen's doing).
        """
        with self._swap:
            self._swap.wait_for(lambda: not self._reopening, _REOPEN_WAIT)
            current = self._h
        if self._closed:
            raise StorageError("storage is closed") from err
        if current is None:
            raise StorageError(f"{what} failed: the store could not be reopened after a failure") from err
        if current is h:
            raise StorageError(f"{what} failed: {err}") from err
        return current

    def _writable(self) -> _Handle:
        """The current instance, for a write. Raises :class:`StorageError` if it takes none."""
        h = self._h
        if h is None:
            raise StorageError("storage is closed" if self._closed else
                               f"the store is not open for writes: {self._write_error}")
        if not h.writable:
            raise StorageError(f"the store is open read-only after a failed reopen: {self._write_error}")
        return h

    def read_head(self) -> TreeHead | None:
        raw = self._get("meta", [b"head"])[0]
        return None if raw is None else decode_head(raw)

    def read_meta(self, name: str) -> bytes | None:
        value: bytes | None = self._get("meta", [b"m:" + name.encode()])[0]
        return value

    def write_meta(self, name: str, value: bytes) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.put(b"m:" + name.encode(), bytes(value), self._writable().families["meta"])
        self._write(batch, self._nosync)

    def record_signed(self, size: int, root: bytes) -> None:
        if self._closed:
            raise StorageError("storage is closed")
        self._signed.write(size, root)

    def read_signed(self) -> tuple[int, bytes] | None:
        if self._closed:
            raise StorageError("storage is closed")
        return self._signed.read()

    def read_entries(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end:
            raise ValueError(f"bad entry range [{start}, {end})")
        got = self._get("entries", [_index_key(i) for i in range(start, end)])
        if None in got:
            raise CorruptStorageError(f"entry {start + got.index(None)} is missing from the store")
        return got

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        # Scattered reads (proof leaves, dedup checks): keep them from churning the block cache.
        return self._get("entries", [_index_key(i) for i in indices], self._scattered)

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        return self._get("hashes", [_group_key(k) for k in keys])

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        got = self._get("leaves", [h[:DEDUP_PREFIX] for h in leaf_hashes])
        return [[] if v is None else decode_varints(v) for v in got]

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._get("aux", [bytes(k) for k in keys])

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        opts = ReadOptions()
        upper = prefix_successor(prefix)
        if upper is not None:
            opts.set_iterate_upper_bound(upper)  # the iterator stops at the prefix's end, inside RocksDB
        if len(prefix) < AUX_SCAN_PREFIX:
            opts.set_total_order_seek(True)  # too short for the prefix blooms: they must not skip files

        def scan(h: _Handle) -> list[tuple[bytes, bytes]]:
            # The iterator holds its own reference to the instance: a reopen meanwhile cannot cut it short.
            items = cast(Iterator[tuple[bytes, bytes]], h.cf["aux"].items(from_key=prefix, read_opt=opts))
            return list(items if limit is None else itertools.islice(items, limit))

        h = self._h
        if h is not None:
            try:
                return scan(h)
            except Exception as e:
                err: Exception | None = e
        else:
            err = None
        try:
            return scan(self._after_reopen(h, err, "scan of aux"))
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(f"scan of aux failed: {e}") from e

    def commit(self, batch: Batch) -> None:
        head = self.read_head()
        size = head.size if head is not None else 0
        if batch.start != size or batch.head.size != size + len(batch.entries):
            raise ValueError(f"batch [{batch.start}, {batch.head.size}) does not extend stored size {size}")
        if len(batch.leaf_hashes) != len(batch.entries):
            raise ValueError("batch needs one leaf hash per entry")
        h = self._writable().families
        wb = WriteBatch(raw_mode=True)
        for i, entry in enumerate(batch.entries, start=batch.start):
            wb.put(_index_key(i), entry, h["entries"])
        # Dedup lists: extend any existing list for the prefix (collisions are rare, but real).
        prefixes: dict[bytes, list[int]] = {}
        for i, leaf in enumerate(batch.leaf_hashes, start=batch.start):
            prefixes.setdefault(leaf[:DEDUP_PREFIX], []).append(i)
        keys = list(prefixes)
        for key, old in zip(keys, self._get("leaves", keys), strict=True):
            new = encode_varints(prefixes[key])
            wb.put(key, new if old is None else old + new, h["leaves"])
        for key_, value in batch.hash_groups.items():
            wb.put(_group_key(key_), value, h["hashes"])
        # One C-level loop: a batch can carry 100,000s of aux keys (the registry's postings).
        wb.set_default_column_family(h["aux"])
        collections.deque(itertools.starmap(wb.__setitem__, batch.aux), maxlen=0)
        for name, value in batch.meta.items():
            wb.put(b"m:" + name.encode(), value, h["meta"])
        wb.put(b"head", encode_head(batch.head), h["meta"])
        self._write_synced(wb)

    def _write_synced(self, batch: WriteBatch) -> None:
        """Write ``batch`` and sync the write-ahead log before returning.

        Same durability as a write with ``sync=True``, but rocksdict holds the GIL for
        the whole of such a write, fsync included, stalling every gRPC handler for
        milliseconds per batch; ``flush_wal(True)`` (FlushWAL + SyncWAL of every live
        WAL file) releases it while the disk works.
        """
        self._write(batch, self._nosync)
        try:
            self._writable().db.flush_wal(True)
        except Exception as e:
            self._write_error = f"RocksDB write-ahead log sync failed: {e}"
            raise StorageError(self._write_error) from e

    def _write(self, batch: WriteBatch, opts: WriteOptions) -> None:
        db = self._writable().db
        try:
            db.write(batch, opts)
        except Exception as e:
            self._write_error = f"RocksDB write failed: {e}"
            raise StorageError(self._write_error) from e

    def recover(self) -> None:
        """Reopen the RocksDB instance in place if a write on it failed (see :meth:`Storage.recover`).

        RocksDB latches a failed write-ahead-log write (ENOSPC, EIO): the instance refuses
        every later write until it is reopened. The reopen closes the instance (readers
        that were using it wait for the new one, see :meth:`_after_reopen`) and opens the
        directory again, which replays the write-ahead log: a batch whose write failed is
        there whole or not at all. If the directory cannot be opened for writes (the disk is
        still full), it is opened read-only so reads go on, and this raises; reopens are
        then tried again after 0.25 s, doubling per failure up to 2 s (an open replays the
        write-ahead log: not something to repeat 5 times a second on a full disk).
        """
        with self._lock:
            if self._closed:
                raise StorageError("storage is closed")
            h = self._h
            if self._write_error is None and h is not None and h.writable:
                return
            wait = self._next_reopen - time.monotonic()
            if wait > 0:
                raise StorageError(f"{self._write_error}; the store is reopened again in {wait:.2f} s")
            with self._swap:
                self._reopening = True
            try:
                self._reopen(h)
            finally:
                with self._swap:
                    self._reopening = False
                    self._swap.notify_all()

    def _reopen(self, old: _Handle | None) -> None:
        """Close ``old`` and publish a new instance: writable, else read-only (and raise), else none (and raise)."""
        began = time.monotonic()
        if old is not None:
            try:
                old.close()
            except Exception as e:  # expected: the close's flush hits the same failure
                log.info("closing the failed RocksDB instance: %s", e, extra={"path": str(self._path)})
        try:
            db = self._open_when_released()
        except Exception as e:
            self._write_error = f"cannot reopen RocksDB for writes: {e}"
            self._next_reopen = time.monotonic() + self._reopen_delay
            self._reopen_delay = min(2 * self._reopen_delay, _REOPEN_MAX_DELAY)
            try:
                self._h = _Handle(_open_db(self._path, self._cache, read_only=True), writable=False)
            except Exception as ro:
                self._h = None
                raise StorageError(f"{self._write_error}; nor read-only: {ro}") from e
            raise StorageError(f"{self._write_error} (serving reads from a read-only instance)") from e
        self._h = _Handle(db, writable=True)
        self._write_error = None
        self._reopen_delay = _REOPEN_FIRST_DELAY
        log.warning("reopened RocksDB after a write failure",
                    extra={"path": str(self._path), "seconds": round(time.monotonic() - began, 3)})

    def _open_when_released(self) -> Rdict:
        """:func:`_open_db`, waiting briefly while this process still holds the old instance's LOCK.

        A scan that was iterating the closed instance keeps it alive until it finishes.
        """
        for attempt in range(_LOCK_RETRIES + 1):
            try:
                return _open_db(self._path, self._cache)
            except Exception as e:
                if "lock hold by current process" not in str(e) or attempt == _LOCK_RETRIES:
                    raise
                gc.collect()  # an exception's traceback may be what still holds a family handle
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def compact(self) -> None:
        """Compact every family fully (for measuring on-disk size; not needed in service)."""
        for cf in self._cf.values():
            cf.compact_range(None, None)

    def checkpoint(self, path: Path) -> None:
        """Write a consistent copy of the store to the new directory ``path`` (a RocksDB checkpoint).

        Safe while the log is committing: the copy holds whole batches only. SST files are
        hard-linked when ``path`` is on the same file system, copied otherwise.
        """
        from rocksdict import Checkpoint

        with self._lock:  # not while a reopen closes the instance
            h = self._h
            if h is None:
                raise StorageError("storage is closed" if self._closed else "the store is being reopened")
            try:
                Checkpoint(h.db).create_checkpoint(str(path))
            except Exception as e:
                raise StorageError(f"RocksDB checkpoint into {path} failed: {e}") from e

    def disk_bytes(self) -> int:
        """Bytes of the store's files on disk (SST, WAL, manifest)."""
        return sum(f.stat().st_size for f in self._path.iterdir() if f.is_file())

    def close(self) -> None:
        """Close the instance. A failed flush of the memtables is logged, not raised: it loses nothing.

        Every batch whose :meth:`commit` returned is already synced in the write-ahead log,
        which the next open replays; the flush at close only saves that replay. (A full
        disk makes it fail, and a drained shutdown must still succeed.)
        """
        with self._lock:
            if self._closed:
                return
            with self._swap:
                self._closed = True
                h, self._h = self._h, None
                self._swap.notify_all()
            try:
                if h is not None:
                    h.close()
            except Exception as e:
                log.error("closing RocksDB: flushing the memtables failed (every committed batch is in the "
                          "synced write-ahead log, replayed at the next open): %s", e, extra={"path": str(self._path)})
            finally:
                self._signed.close()
            log.info("closed log store", extra={"path": str(self._path)})

