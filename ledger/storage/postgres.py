"""A PostgreSQL :class:`~ledger.storage.Storage` (psycopg 3): the log's tables in one database.

The tables are those of ``ledger/storage/migrations/`` (versions: :mod:`ledger.storage.postgres_schema`).
A commit is one transaction on the writer connection: lock the ``head`` row (``SELECT ...
FOR UPDATE``: commits are serialised, also between processes), check that the batch
extends it, binary ``COPY`` of the entries and their leaf-hash prefixes, upserts of the
hash groups, aux rows and meta from arrays (``unnest``), the new head, ``COMMIT``. With
``synchronous_commit`` on (forced per connection, :mod:`ledger.storage.postgres_conn`) the
COMMIT returns only after its WAL record is flushed: that is the durability promise.
If the connection fails during COMMIT the outcome is unknown; the protocol allows it
(the caller re-reads :meth:`read_head`).

``record_signed`` is a separate synchronous transaction on the ``signed_head`` row. Unlike
RocksDB's file beside the store, it shares the database's WAL with the batches: PostgreSQL
has one log, and a cluster whose WAL is damaged is restored from a backup, not opened.
``write_meta`` commits with ``synchronous_commit`` off (it may be lost in a crash, as allowed).

Reads run on a small pool of connections (:class:`~ledger.storage.postgres_conn.Pool`);
each is one statement, so it sees whole batches only. While the server is down or
restarting every call raises :class:`StorageError` (UNAVAILABLE); once it is back, the next
call connects again: :meth:`recover` needs no restart of ours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from ledger.errors import CorruptStorageError, StorageError
from ledger.storage import DEDUP_PREFIX, Batch, HashGroupKey, TreeHead
from ledger.storage.postgres_conn import Pool, check_dsn, connect, failure, redact
from ledger.storage.postgres_schema import check_version, migrate, stored_version

log = logging.getLogger(__name__)

_MAX_INDEX = (1 << 63) - 1  # bigint
HASH = 32
_PING_AFTER_SECONDS = 1.0  # a writer idle this long is checked before a commit (the server may have restarted)

_LOCK_HEAD = "SELECT size FROM head WHERE id FOR UPDATE"
_COPY_ENTRIES = "COPY entries (idx, data) FROM STDIN (FORMAT BINARY)"
_COPY_LEAVES = "COPY leaf_index (prefix, idx) FROM STDIN (FORMAT BINARY)"
_PUT_GROUPS = ("INSERT INTO hash_groups (level, grp, data) SELECT * FROM unnest(%b::smallint[], %b::bigint[], "
               "%b::bytea[]) ON CONFLICT (level, grp) DO UPDATE SET data = EXCLUDED.data")
_PUT_AUX = ("INSERT INTO aux (key, value) SELECT * FROM unnest(%b::bytea[], %b::bytea[]) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
_PUT_META = ("INSERT INTO meta (name, value) SELECT * FROM unnest(%b::text[], %b::bytea[]) "
             "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
_SET_HEAD = "UPDATE head SET size = %b, root = %b, edge = %b WHERE id"


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None if there is none: all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    return None if not stripped else stripped[:-1] + bytes((stripped[-1] + 1,))


def _head_from_row(row: tuple[Any, ...] | None) -> TreeHead | None:
    if row is None:
        raise CorruptStorageError("the PostgreSQL store has no head row")
    size, root, edge = row
    if size is None:
        return None
    if root is None or edge is None or len(edge) % HASH:
        raise CorruptStorageError(f"malformed tree head row for size {size}")
    try:
        return TreeHead(size, bytes(root), tuple(bytes(edge[i : i + HASH]) for i in range(0, len(edge), HASH)))
    except ValueError as e:
        raise CorruptStorageError(f"malformed tree head in the PostgreSQL store: {e}") from e


class PostgresStorage:
    """The log's store in a PostgreSQL database. Open with :meth:`open`.

    Commits (and :meth:`recover`) come from one thread, on the writer connection; reads
    from any thread, on the pool.
    """

    def __init__(self, dsn: str, where: str, writer: psycopg.Connection[Any], pool_size: int) -> None:
        self._dsn = dsn
        self.where = where  # the DSN without its password: safe to log
        self._writer: psycopg.Connection[Any] | None = writer
        self._write_lock = threading.Lock()
        self._writer_used = time.monotonic()
        self._pool = Pool(dsn, where, pool_size)
        self._closed = False

    @classmethod
    def open(cls, dsn: str, *, pool_size: int = 8) -> PostgresStorage:
        """Open the store in the database ``dsn`` names, creating the schema in an empty database.

        Raises :class:`StorageError` when PostgreSQL cannot be reached (messages name the DSN
        without its password) and :class:`CorruptStorageError` for a database at another
        schema version (older: run ``provenance db migrate``; newer) or holding other tables.
        """
        check_dsn(dsn)
        where = redact(dsn)
        writer = connect(dsn, where)
        try:
            created = migrate(writer, only_fresh=True)
            check_version(stored_version(writer))
            row = writer.execute("SHOW fsync").fetchone()
            if row is not None and row[0] != "on":
                log.warning("PostgreSQL runs with fsync off: commits are not durable across a power loss",
                            extra={"store": where})
        except psycopg.Error as e:
            writer.close()
            raise failure("open", where, e) from e
        except BaseException:
            writer.close()
            raise
        log.info("opened log store", extra={"store": where, "fresh": bool(created)})
        return cls(dsn, where, writer, pool_size)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the PostgreSQL store is closed")

    def _read(self, what: str, query: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._check_open()
        rows: list[tuple[Any, ...]] = self._pool.run(
            what, lambda c: c.cursor(binary=True).execute(query, params).fetchall())
        return rows

    def read_head(self) -> TreeHead | None:
        rows = self._read("read of the tree head", "SELECT size, root, edge FROM head WHERE id")
        return _head_from_row(rows[0] if rows else None)

    def read_meta(self, name: str) -> bytes | None:
        rows = self._read("read of meta", "SELECT value FROM meta WHERE name = %b", (name,))
        return bytes(rows[0][0]) if rows else None

    def write_meta(self, name: str, value: bytes) -> None:
        def put(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit TO off")  # allowed to be lost in a crash
                conn.execute(_PUT_META, ([name], [bytes(value)]))

        self._check_open()
        self._pool.run("write of meta", put)

    def record_signed(self, size: int, root: bytes) -> None:
        self._check_open()
        self._pool.run("record of the signed head", lambda c: c.execute(
            "INSERT INTO signed_head (id, size, root) VALUES (true, %b, %b) "
            "ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size, root = EXCLUDED.root", (size, bytes(root))))

    def read_signed(self) -> tuple[int, bytes] | None:
        rows = self._read("read of the signed head", "SELECT size, root FROM signed_head WHERE id")
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def read_entries(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end:
            raise StorageError(f"bad entry range [{start}, {end})")
        if start == end:
            self._check_open()
            return []
        rows = self._read("read of entries", "SELECT data FROM entries WHERE idx >= %b AND idx < %b ORDER BY idx",
                          (start, min(end, _MAX_INDEX)))
        if len(rows) != end - start:
            head = self.read_head()
            if end > (head.size if head is not None else 0):
                raise StorageError(f"entries [{start}, {end}) are not all stored")
            raise CorruptStorageError(f"entries are missing from the store in [{start}, {end})")
        return [r[0] for r in rows]

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        wanted = sorted({i for i in indices if 0 <= i <= _MAX_INDEX})
        if not wanted:
            self._check_open()
            return [None] * len(indices)
        rows = self._read("read of entries", "SELECT idx, data FROM entries WHERE idx = ANY(%b::bigint[])", (wanted,))
        found: dict[int, bytes] = dict(rows)
        return [found.get(i) for i in indices]

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        if not keys:
            self._check_open()
            return []
        rows = self._read("read of hash groups",
                          "SELECT h.level, h.grp, h.data FROM hash_groups h JOIN unnest(%b::smallint[], "
                          "%b::bigint[]) AS k(level, grp) ON h.level = k.level AND h.grp = k.grp",
                          ([k[0] for k in keys], [k[1] for k in keys]))
        found = {(r[0], r[1]): r[2] for r in rows}
        return [found.get(k) for k in keys]

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        if not leaf_hashes:
            self._check_open()
            return []
        prefixes = [bytes(h[:DEDUP_PREFIX]) for h in leaf_hashes]
        rows = self._read("read of the leaf index",
                          "SELECT prefix, idx FROM leaf_index WHERE prefix = ANY(%b::bytea[]) ORDER BY idx",
                          (sorted(set(prefixes)),))
        found: dict[bytes, list[int]] = {}
        for prefix, idx in rows:
            found.setdefault(prefix, []).append(idx)
        return [list(found.get(p, ())) for p in prefixes]

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            self._check_open()
            return []
        rows = self._read("read of aux", "SELECT key, value FROM aux WHERE key = ANY(%b::bytea[])",
                          ([bytes(k) for k in keys],))
        found: dict[bytes, bytes] = dict(rows)
        return [found.get(bytes(k)) for k in keys]

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        if limit is not None and limit <= 0:
            self._check_open()
            return []
        prefix = bytes(prefix)
        upper = prefix_successor(prefix)
        # A key >= a prefix of only 0xff bytes starts with it: no upper bound is needed then.
        if upper is None:
            query, params = "SELECT key, value FROM aux WHERE key >= %b ORDER BY key", [prefix]
        else:
            query, params = "SELECT key, value FROM aux WHERE key >= %b AND key < %b ORDER BY key", [prefix, upper]
        if limit is not None:
            query += " LIMIT %b"
            params.append(limit)  # type: ignore[arg-type]
        return [(r[0], r[1]) for r in self._read("scan of aux", query, params)]

    # -- writes

    def commit(self, batch: Batch) -> None:
        self._check_open()
        n = len(batch.entries)
        if len(batch.leaf_hashes) != n:
            raise StorageError("batch needs one leaf hash per entry")
        if batch.head.size != batch.start + n:
            raise StorageError(f"batch [{batch.start}, {batch.head.size}) holds {n} entries")
        with self._write_lock:
            conn = self._writer_connection()
            try:
                if time.monotonic() - self._writer_used > _PING_AFTER_SECONDS:
                    try:
                        conn.execute("SELECT 1").fetchone()  # a stale connection fails here, before any write
                    except psycopg.OperationalError:
                        self._drop_writer()  # the server restarted since the last commit: connect once more
                        conn = self._writer_connection()
                self._commit_on(conn, batch)
            except psycopg.Error as e:
                self._drop_writer()
                raise failure("commit", self.where, e) from e
            self._writer_used = time.monotonic()

    def _commit_on(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        with conn.transaction():
            row = conn.execute(_LOCK_HEAD).fetchone()
            if row is None:
                raise CorruptStorageError("the PostgreSQL store has no head row")
            size = row[0] or 0
            if batch.start != size:
                raise StorageError(f"batch [{batch.start}, {batch.head.size}) does not extend stored size {size}")
            with conn.cursor() as cur:
                if batch.entries:
                    with cur.copy(_COPY_ENTRIES) as cp:
                        cp.set_types(["int8", "bytea"])
                        for row_ in zip(range(batch.start, batch.head.size), batch.entries, strict=True):
                            cp.write_row(row_)
                    with cur.copy(_COPY_LEAVES) as cp:
                        cp.set_types(["bytea", "int8"])
                        for i, leaf in enumerate(batch.leaf_hashes, start=batch.start):
                            cp.write_row((leaf[:DEDUP_PREFIX], i))
                if batch.hash_groups:
                    keys = list(batch.hash_groups)
                    cur.execute(_PUT_GROUPS, ([k[0] for k in keys], [k[1] for k in keys],
                                              [bytes(v) for v in batch.hash_groups.values()]))
                if batch.aux:
                    aux = dict(batch.aux)  # one row per key, the last value winning (as a replay would)
                    cur.execute(_PUT_AUX, (list(aux), list(aux.values())))
                if batch.meta:
                    cur.execute(_PUT_META, (list(batch.meta), [bytes(v) for v in batch.meta.values()]))
                head = batch.head
                cur.execute(_SET_HEAD, (head.size, head.root, b"".join(head.edge)))

    def _writer_connection(self) -> psycopg.Connection[Any]:
        if self._writer is None or self._writer.closed:
            self._writer = connect(self._dsn, self.where)
        return self._writer

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def recover(self) -> None:
        """Connect the writer anew (a failed commit dropped it); :class:`StorageError` while PostgreSQL is away."""
        self._check_open()
        with self._write_lock:
            self._drop_writer()
            conn = self._writer_connection()
            try:
                conn.execute("SELECT 1").fetchone()
            except psycopg.Error as e:
                self._drop_writer()
                raise failure("reconnect", self.where, e) from e

    def close(self) -> None:
        """Close every connection; later calls raise :class:`StorageError`."""
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._drop_writer()
        self._pool.close()
        log.info("closed log store", extra={"store": self.where})
