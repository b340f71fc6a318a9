"""A RocksDB :class:`~ledger.storage.Storage` (through ``rocksdict``): one directory, five column families.

The byte layout is :mod:`ledger.storage.rocks_codec`; the open instance, its options
and its reopening in place after a latched write failure are
:mod:`ledger.storage.rocks_reopen`. A commit is one ``WriteBatch``, then a sync of
the write-ahead log (``flush_wal(True)``, as durable as ``sync=True``; see
:meth:`RocksStorage._write_synced`). The last signed tree head is also recorded in a
small synced file beside RocksDB's own (:mod:`ledger.storage.signed_head`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rocksdict import Cache, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from ledger.errors import CorruptStorageError, StorageError, StoreInUseError
from ledger.storage import DEDUP_PREFIX, Batch, HashGroupKey, TreeHead
from ledger.storage.rocks_codec import (
    AUX_SCAN_PREFIX,
    FAMILIES,
    FORMAT_VERSION,
    decode_head,
    decode_varints,
    encode_head,
    encode_varints,
    group_key,
    index_key,
    meta_key,
    prefix_successor,
)
from ledger.storage.rocks_reopen import Handle, LiveInstance, open_db, read_failure
from ledger.storage.scrub import ScrubPace, scrub_pass
from ledger.storage.signed_head import SignedHeadFile

log = logging.getLogger(__name__)

SIGNED_HEAD_FILE = "SIGNED-HEAD"  # next to RocksDB's own files; see ledger/storage/signed_head.py


class RocksStorage:
    """The log's store in a RocksDB directory. Open with :meth:`open`.

    Reads take no lock: each uses the current instance and, if a :meth:`recover` closed
    that instance under it, waits for the new one and reads again. Writes come from the
    one sequencer thread, which is also the thread that calls :meth:`recover`.
    """

    def __init__(self, db: Rdict, path: Path, cache: Cache, *, writable: bool = True) -> None:
        self._live = LiveInstance(db, path, cache, writable=writable)
        self._path = path
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        # Every read verifies block checksums (RocksDB's default, stated): a flipped byte is a
        # CorruptStorageError (DATA_LOSS), never data served.
        self._read = ReadOptions()
        self._read.set_verify_checksums(True)
        self._scattered = ReadOptions()
        self._scattered.set_verify_checksums(True)
        self._scattered.fill_cache(False)  # type: ignore[call-arg]  # the .pyi omits the argument
        self._signed = SignedHeadFile(path / SIGNED_HEAD_FILE, read_only=not writable)

    @classmethod
    def open(cls, path: Path | str, *, cache_bytes: int = 32 << 20, read_only: bool = False) -> RocksStorage:
        """Open (creating if absent) the store at ``path`` with a block cache of ``cache_bytes``.

        Raises :class:`CorruptStorageError` for a directory that is not this format's
        store (another RocksDB database, a newer format, stray files), and
        :class:`StorageError` when RocksDB cannot open it (:class:`StoreInUseError` when
        another process holds its LOCK). ``read_only`` (``provenance fsck``) creates
        nothing and writes nothing; every write then raises :class:`StorageError`.
        """
        path = Path(path)
        fresh = not path.exists() or not any(path.iterdir())
        if fresh and read_only:
            raise StorageError(f"{path} holds no store")
        if not fresh:
            if not (path / "CURRENT").is_file():
                raise CorruptStorageError(f"{path} is not empty and is not a RocksDB directory")
            try:
                families = set(Rdict.list_cf(str(path), Options(raw_mode=True)))
            except Exception as e:
                raise CorruptStorageError(f"cannot read the column families of {path}: {e}") from e
            if families != {"default", *FAMILIES}:
                raise CorruptStorageError(f"{path} holds column families {sorted(families)}, not a log store")
        cache = Cache(cache_bytes)
        try:
            db = open_db(path, cache, read_only=read_only)
        except Exception as e:
            if "lock" in str(e).lower():
                raise StoreInUseError(f"{path} is in use (another process or handle holds its LOCK): {e}") from e
            raise StorageError(f"cannot open RocksDB at {path}: {e}") from e
        store = cls(db, path, cache, writable=not read_only)
        try:
            version = store._get("meta", [b"format"])[0]
            if fresh:
                batch = WriteBatch(raw_mode=True)
                batch.put(b"format", FORMAT_VERSION, store._live.writable().families["meta"])
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
        h = self._live.h
        if h is None:
            raise StorageError("storage is closed")
        return h.cf

    def _get(self, family: str, keys: list[bytes], read_opt: ReadOptions | None = None) -> list[Any]:
        read_opt = read_opt or self._read
        h = self._live.h
        if h is not None:
            get = h.cf[family].get
            try:
                # One get per key: rocksdict's multi-get (get(list)) measured 2-3x slower per key.
                values: list[Any] = [get(k, None, read_opt) for k in keys]
            except Exception as e:
                return self._get_again(h, e, family, keys, read_opt)
            return values
        return self._get_again(h, None, family, keys, read_opt)

    def _get_again(self, h: Handle | None, err: Exception | None, family: str, keys: list[bytes],
                   read_opt: ReadOptions | None) -> list[Any]:
        """:meth:`_get` once more, on the instance a reopen put in place of ``h`` (see LiveInstance.after_reopen)."""
        get = self._live.after_reopen(h, err, f"read from {family}").cf[family].get
        try:
            return [get(k, None, read_opt) for k in keys]
        except Exception as e:
            raise read_failure(f"read from {family}", e) from e

    def read_head(self) -> TreeHead | None:
        raw = self._get("meta", [b"head"])[0]
        return None if raw is None else decode_head(raw)

    def read_meta(self, name: str) -> bytes | None:
        value: bytes | None = self._get("meta", [meta_key(name)])[0]
        return value

    def write_meta(self, name: str, value: bytes) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.put(meta_key(name), bytes(value), self._live.writable().families["meta"])
        self._write(batch, self._nosync)

    def record_signed(self, size: int, root: bytes) -> None:
        if self._live.closed:
            raise StorageError("storage is closed")
        self._signed.write(size, root)

    def read_signed(self) -> tuple[int, bytes] | None:
        if self._live.closed:
            raise StorageError("storage is closed")
        return self._signed.read()

    def read_entries(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end:
            raise StorageError(f"bad entry range [{start}, {end})")
        got = self._get("entries", [index_key(i) for i in range(start, end)])
        if None in got:
            raise CorruptStorageError(f"entry {start + got.index(None)} is missing from the store")
        return got

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        # Scattered reads (proof leaves, dedup checks): keep them from churning the block cache.
        return self._get("entries", [index_key(i) for i in indices], self._scattered)

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        return self._get("hashes", [group_key(k) for k in keys])

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        got = self._get("leaves", [h[:DEDUP_PREFIX] for h in leaf_hashes])
        return [[] if v is None else decode_varints(v) for v in got]

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._get("aux", [bytes(k) for k in keys])

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        opts = ReadOptions()
        opts.set_verify_checksums(True)
        upper = prefix_successor(prefix)
        if upper is not None:
            opts.set_iterate_upper_bound(upper)  # the iterator stops at the prefix's end, inside RocksDB
        if len(prefix) < AUX_SCAN_PREFIX:
            opts.set_total_order_seek(True)  # too short for the prefix blooms: they must not skip files

        def scan(h: Handle) -> list[tuple[bytes, bytes]]:
            # The iterator holds its own reference to the instance: a reopen meanwhile cannot cut it short.
            # A raw iterator, whose status is checked at the end: rocksdict's items() ends silently at a
            # block that fails its checksum, which would serve a cut-short posting list as if whole.
            it = h.cf["aux"].iter(opts)
            it.seek(prefix)
            out: list[tuple[bytes, bytes]] = []
            while it.valid() and (limit is None or len(out) < limit):
                out.append((it.key(), it.value()))
                it.next()
            it.status()
            return out

        h = self._live.h
        if h is not None:
            try:
                return scan(h)
            except Exception as e:
                err: Exception | None = e
        else:
            err = None
        try:
            return scan(self._live.after_reopen(h, err, "scan of aux"))
        except StorageError:
            raise
        except Exception as e:
            raise read_failure("scan of aux", e) from e

    def commit(self, batch: Batch) -> None:
        head = self.read_head()
        size = head.size if head is not None else 0
        if batch.start != size or batch.head.size != size + len(batch.entries):
            raise StorageError(f"batch [{batch.start}, {batch.head.size}) does not extend stored size {size}")
        if len(batch.leaf_hashes) != len(batch.entries):
            raise StorageError("batch needs one leaf hash per entry")
        h = self._live.writable().families
        wb = WriteBatch(raw_mode=True)
        for i, entry in enumerate(batch.entries, start=batch.start):
            wb.put(index_key(i), entry, h["entries"])
        # Dedup lists: extend any existing list for the prefix (collisions are rare, but real).
        prefixes: dict[bytes, list[int]] = {}
        for i, leaf in enumerate(batch.leaf_hashes, start=batch.start):
            prefixes.setdefault(leaf[:DEDUP_PREFIX], []).append(i)
        keys = list(prefixes)
        for key, old in zip(keys, self._get("leaves", keys), strict=True):
            new = encode_varints(prefixes[key])
            wb.put(key, new if old is None else old + new, h["leaves"])
        for key_, value in batch.hash_groups.items():
            wb.put(group_key(key_), value, h["hashes"])
        # One C-level loop: a batch can carry 100,000s of aux keys (the registry's postings).
        wb.set_default_column_family(h["aux"])
        collections.deque(itertools.starmap(wb.__setitem__, batch.aux), maxlen=0)
        for name, value in batch.meta.items():
            wb.put(meta_key(name), value, h["meta"])
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
            self._live.writable().db.flush_wal(True)
        except Exception as e:
            self._live.write_error = f"RocksDB write-ahead log sync failed: {e}"
            raise StorageError(self._live.write_error) from e

    def _write(self, batch: WriteBatch, opts: WriteOptions) -> None:
        db = self._live.writable().db
        try:
            db.write(batch, opts)
        except Exception as e:
            self._live.write_error = f"RocksDB write failed: {e}"
            raise StorageError(self._live.write_error) from e

    def recover(self) -> None:
        """Reopen the RocksDB instance in place if a write on it failed (:meth:`LiveInstance.recover`)."""
        self._live.recover()

    def scrub(self, pace: ScrubPace, stop: threading.Event | None = None) -> list[str]:
        """Read every stored byte back, checksums verified, at ``pace``; the damage found (:func:`scrub_pass`)."""
        return scrub_pass(lambda: self._live.h, pace, stop)

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

        with self._live.lock:  # not while a reopen closes the instance
            h = self._live.h
            if h is None:
                raise StorageError("storage is closed" if self._live.closed else "the store is being reopened")
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
        with self._live.lock:
            if self._live.closed:
                return
            h = self._live.detach()
            try:
                if h is not None:
                    h.close()
            except Exception as e:
                log.error("closing RocksDB: flushing the memtables failed (every committed batch is in the "
                          "synced write-ahead log, replayed at the next open): %s", e, extra={"path": str(self._path)})
            finally:
                self._signed.close()
            log.info("closed log store", extra={"path": str(self._path)})
