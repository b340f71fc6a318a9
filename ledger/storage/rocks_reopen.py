"""The RocksDB instance a :class:`~ledger.storage.rocks.RocksStorage` reads through, and replacing it in place.

RocksDB latches a failed write-ahead-log write (ENOSPC, EIO): the instance refuses
every later write until it is reopened. :class:`LiveInstance` holds the current
instance (a :class:`Handle`) and implements :meth:`Storage.recover` for RocksDB: close
the failed instance, open the directory again (which replays the write-ahead log: a
batch whose write failed is there whole or not at all), and let readers that were on
the old instance wait for the new one. Also here: the options every instance is
opened with (:func:`open_db`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path

from rocksdict import AccessType, BlockBasedOptions, Cache, DBCompressionType, Options, Rdict, SliceTransform

from ledger.errors import CorruptStorageError, StorageError
from ledger.storage.rocks_codec import AUX_SCAN_PREFIX, FAMILIES

log = logging.getLogger(__name__)

_REOPEN_FIRST_DELAY = 0.25  # seconds before a failed reopen is tried again; doubles per failure ...
_REOPEN_MAX_DELAY = 2.0  # ... up to this: how long writes may stay refused after the disk has room again
_REOPEN_WAIT = 5.0  # seconds a reader whose instance a reopen closed waits for the new one
_LOCK_RETRIES = 10  # a reopen's open waits this many times 50 ms for a scan to let go of the old instance


def read_failure(what: str, err: BaseException | None) -> StorageError:
    """The error for ``what`` failing with RocksDB's ``err``: :class:`CorruptStorageError` when RocksDB
    reports corruption (a block checksum that does not match, a torn file), else :class:`StorageError`."""
    cls = CorruptStorageError if err is not None and "Corruption" in str(err) else StorageError
    return cls(f"{what} failed: {err}")


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


def open_db(path: Path, cache: Cache, *, read_only: bool = False) -> Rdict:
    """Open the RocksDB instance at ``path`` with the store's options (rocksdict errors pass through).

    The dedup family is point-read only (a bloom filter answers most misses without
    I/O); hashes and the dedup values are incompressible, so those families skip
    compression. The aux family's bloom filters also index the first
    :data:`AUX_SCAN_PREFIX` bytes of each key, so a scan of a prefix at least that long
    skips every file without it. ``read_only`` replays the write-ahead log into memory
    and writes nothing to the store, so it works on a full disk.
    """
    db_opts = Options(raw_mode=True)
    db_opts.set_paranoid_checks(True)  # RocksDB's default, stated: stop at the first corruption it sees
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


class Handle:
    """One open RocksDB instance: the DB, a reader per column family, the family handles for writes.

    A reopen replaces the whole object. Each read takes ``LiveInstance.h`` once, so one call
    uses one instance throughout; a closed instance only raises (rocksdict checks), it never
    reads freed memory.
    """

    __slots__ = ("cf", "db", "families", "writable")

    def __init__(self, db: Rdict, *, writable: bool) -> None:
        self.db = db
        self.cf = {name: db.get_column_family(name) for name in FAMILIES}
        self.families = {name: db.get_column_family_handle(name) for name in FAMILIES}
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


class LiveInstance:
    """The current :class:`Handle` of one store directory (``h``; None once closed or unopenable).

    Readers read ``h`` without a lock; :meth:`recover` (the committing thread only) swaps it.
    ``write_error`` says why the current instance may refuse writes: set by the store when a
    write fails, cleared by a successful reopen.
    """

    def __init__(self, db: Rdict, path: Path, cache: Cache, *, writable: bool = True) -> None:
        self.h: Handle | None = Handle(db, writable=writable)
        self.path = path
        self._cache = cache
        self.closed = False
        self.write_error: str | None = None
        self.lock = threading.Lock()  # one of close, recover, checkpoint at a time
        self._swap = threading.Condition()  # readers wait on it while a reopen is under way
        self._reopening = False
        self._reopen_delay = _REOPEN_FIRST_DELAY
        self._next_reopen = 0.0

    def after_reopen(self, h: Handle | None, err: Exception | None, what: str) -> Handle:
        """The instance to retry ``what`` on after it failed with ``err`` on ``h`` (None: there was none).

        That is the one a :meth:`recover` put in place of ``h``, waiting (up to
        :data:`_REOPEN_WAIT` seconds) for a reopen under way. Raises :class:`StorageError`
        when the store is closed, when there is no instance, or when ``h`` is still current
        (then ``err`` is a real failure, not a reopen's doing).
        """
        with self._swap:
            self._swap.wait_for(lambda: not self._reopening, _REOPEN_WAIT)
            current = self.h
        if self.closed:
            raise StorageError("storage is closed") from err
        if current is None:
            raise StorageError(f"{what} failed: the store could not be reopened after a failure") from err
        if current is h:
            raise read_failure(what, err) from err
        return current

    def writable(self) -> Handle:
        """The current instance, for a write. Raises :class:`StorageError` if it takes none."""
        h = self.h
        if h is None:
            raise StorageError("storage is closed" if self.closed else
                               f"the store is not open for writes: {self.write_error}")
        if not h.writable:
            raise StorageError(f"the store is open read-only after a failed reopen: {self.write_error}")
        return h

    def recover(self) -> None:
        """Reopen the instance in place if a write on it failed (see :meth:`Storage.recover`).

        The reopen closes the instance (readers that were using it wait for the new one, see
        :meth:`after_reopen`) and opens the directory again. If it cannot be opened for
        writes (the disk is still full), it is opened read-only so reads go on, and this
        raises; reopens are then tried again after 0.25 s, doubling per failure up to 2 s
        (an open replays the write-ahead log: not something to repeat 5 times a second on a
        full disk).
        """
        with self.lock:
            if self.closed:
                raise StorageError("storage is closed")
            h = self.h
            if self.write_error is None and h is not None and h.writable:
                return
            wait = self._next_reopen - time.monotonic()
            if wait > 0:
                raise StorageError(f"{self.write_error}; the store is reopened again in {wait:.2f} s")
            with self._swap:
                self._reopening = True
            try:
                self._reopen(h)
            finally:
                with self._swap:
                    self._reopening = False
                    self._swap.notify_all()

    def _reopen(self, old: Handle | None) -> None:
        """Close ``old`` and publish a new instance: writable, else read-only (and raise), else none (and raise)."""
        began = time.monotonic()
        if old is not None:
            try:
                old.close()
            except Exception as e:  # expected: the close's flush hits the same failure
                log.info("closing the failed RocksDB instance: %s", e, extra={"path": str(self.path)})
        try:
            db = self._open_when_released()
        except Exception as e:
            self.write_error = f"cannot reopen RocksDB for writes: {e}"
            self._next_reopen = time.monotonic() + self._reopen_delay
            self._reopen_delay = min(2 * self._reopen_delay, _REOPEN_MAX_DELAY)
            try:
                self.h = Handle(open_db(self.path, self._cache, read_only=True), writable=False)
            except Exception as ro:
                self.h = None
                raise StorageError(f"{self.write_error}; nor read-only: {ro}") from e
            raise StorageError(f"{self.write_error} (serving reads from a read-only instance)") from e
        self.h = Handle(db, writable=True)
        self.write_error = None
        self._reopen_delay = _REOPEN_FIRST_DELAY
        log.warning("reopened RocksDB after a write failure",
                    extra={"path": str(self.path), "seconds": round(time.monotonic() - began, 3)})

    def _open_when_released(self) -> Rdict:
        """:func:`open_db`, waiting briefly while this process still holds the old instance's LOCK.

        A scan that was iterating the closed instance keeps it alive until it finishes.
        """
        for attempt in range(_LOCK_RETRIES + 1):
            try:
                return open_db(self.path, self._cache)
            except Exception as e:
                if "lock hold by current process" not in str(e) or attempt == _LOCK_RETRIES:
                    raise
                gc.collect()  # an exception's traceback may be what still holds a family handle
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def detach(self) -> Handle | None:
        """Mark the store closed and take the instance away from readers (who then raise).

        Requires :attr:`lock` held; the caller closes the returned instance.
        """
        with self._swap:
            self.closed = True
            h, self.h = self.h, None
            self._swap.notify_all()
        return h
