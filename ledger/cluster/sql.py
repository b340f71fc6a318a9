"""The cluster's SQL: every statement ``ledger/cluster`` runs, over the tables of migrations 0001 and 0002.

:class:`ConnReads` answers the read half of the :class:`~ledger.storage.Storage` protocol on
one given connection, inside whatever transaction that connection is in, so a sequencing
transaction's dedup check and the integration hook's reads see the state under the
coordinator row's lock (and the transaction's own writes). The functions below are the
writes of sequencing (:func:`append_sequenced`) and of the signer (:func:`commit_signed`).
Nothing here decides anything; ``sequencing.py`` and ``signer.py`` do.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from client.core.merkle import HASH_SIZE
from ledger.errors import CorruptStorageError, StorageError
from ledger.storage import DEDUP_PREFIX, Batch, HashGroupKey, TreeHead
from ledger.storage.postgres_conn import redact

Conn = psycopg.Connection[tuple[Any, ...]]

# The signer role's advisory lock: pg_try_advisory_lock(SIGNER_LOCK, hashtext(current_schema())), one per
# log store (a database may hold several, one per schema). Two-int keys: apart from the migrations' one-bigint lock.
SIGNER_LOCK = 0x70726F76  # "prov"
# NOTIFY channels are per database: each notification carries its store's schema, and listeners ignore the others.
SEQUENCED = "provenance_sequenced"  # entries were sequenced (wakes the signer)
SIGNED = "provenance_checkpoint"  # a checkpoint was committed (wakes every frontend)


SESSION_TIMEOUT = "15s"  # a session this long idle inside a transaction (or, the signer's, idle at all) is ended


def connect(dsn: str, *, autocommit: bool = False, application: str = "provenance-cluster",
            idle_ends_session: bool = False) -> Conn:
    """A new durable connection with short connect and keepalive timeouts (a dead peer is noticed in seconds).

    The server ends the session if it sits idle inside a transaction for :data:`SESSION_TIMEOUT`
    (a frontend that vanished mid-sequencing frees the coordinator row whatever the server's TCP
    keepalive settings) and, with ``idle_ends_session`` (the signer's: it runs a statement every
    fraction of a second while alive), if it sits idle at all that long, which frees the signer lock.
    Raises :class:`StorageError` (its text never holds the DSN's password).
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5, application_name=application,
                               keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
        conn.execute("SET synchronous_commit TO on")  # COMMIT returns once its WAL is flushed, whatever the default
        conn.execute(f"SET idle_in_transaction_session_timeout TO '{SESSION_TIMEOUT}'")
        if idle_ends_session:
            conn.execute(f"SET idle_session_timeout TO '{SESSION_TIMEOUT}'")
        conn.autocommit = autocommit
        return conn
    except psycopg.Error as err:
        raise StorageError(f"cannot connect to PostgreSQL at {redact(dsn)}: {type(err).__name__}") from None


class ConnReads:
    """The reads of :class:`~ledger.storage.Storage` on one connection (see the module docstring).

    A :class:`~ledger.storage.Storage` that refuses writes. Not thread-safe: the connection
    belongs to the thread that made it. Entries beyond the tree head (sequenced, not yet
    integrated) are visible here, unlike through a tree read.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def read_head(self) -> TreeHead | None:
        row = self.conn.execute("SELECT size, root, edge FROM head").fetchone()
        if row is None or row[0] is None:
            return None
        edge = bytes(row[2])
        try:
            hashes = tuple(edge[i : i + HASH_SIZE] for i in range(0, len(edge), HASH_SIZE))
            return TreeHead(row[0], bytes(row[1]), hashes)
        except ValueError as err:
            raise CorruptStorageError(f"stored tree head: {err}") from None

    def read_meta(self, name: str) -> bytes | None:
        row = self.conn.execute("SELECT value FROM meta WHERE name = %s", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def read_entries(self, start: int, end: int) -> list[bytes]:
        rows = self.conn.execute("SELECT idx, data FROM entries WHERE idx >= %s AND idx < %s ORDER BY idx",
                                 (start, end)).fetchall()
        if len(rows) != end - start:
            raise CorruptStorageError(f"entries [{start}, {end}) are incomplete in the store")
        return [bytes(r[1]) for r in rows]

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        if not indices:
            return []
        rows = self.conn.execute("SELECT idx, data FROM entries WHERE idx = ANY(%b)", (list(indices),)).fetchall()
        found = {r[0]: bytes(r[1]) for r in rows}
        return [found.get(i) for i in indices]

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        if not keys:
            return []
        rows = self.conn.execute(
            "SELECT g.level, g.grp, g.data FROM hash_groups g JOIN unnest(%s::smallint[], %s::bigint[])"
            " AS k(level, grp) ON g.level = k.level AND g.grp = k.grp",
            ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
        found = {(r[0], r[1]): bytes(r[2]) for r in rows}
        return [found.get(k) for k in keys]

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        if not leaf_hashes:
            return []
        prefixes = [h[:DEDUP_PREFIX] for h in leaf_hashes]
        rows = self.conn.execute("SELECT prefix, idx FROM leaf_index WHERE prefix = ANY(%b)", (prefixes,)).fetchall()
        found: dict[bytes, list[int]] = {}
        for prefix, idx in rows:
            found.setdefault(bytes(prefix), []).append(idx)
        return [sorted(found.get(p, [])) for p in prefixes]

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        rows = self.conn.execute("SELECT key, value FROM aux WHERE key = ANY(%b)", (list(keys),)).fetchall()
        found = {bytes(r[0]): bytes(r[1]) for r in rows}
        return [found.get(k) for k in keys]

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        upper = _prefix_end(prefix)
        sql = "SELECT key, value FROM aux WHERE key >= %s" + (" AND key < %s" if upper is not None else "")
        params: list[Any] = [prefix] + ([upper] if upper is not None else [])
        sql += " ORDER BY key" + (" LIMIT %s" if limit is not None else "")
        if limit is not None:
            params.append(limit)
        return [(bytes(k), bytes(v)) for k, v in self.conn.execute(sql, params).fetchall()]


    def read_signed(self) -> tuple[int, bytes] | None:
        row = self.conn.execute("SELECT size, root FROM signed_head").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # The write half is not this object's: sequencing and signing write with the functions below.

    def write_meta(self, name: str, value: bytes) -> None:
        raise StorageError("cluster reads do not write")

    def record_signed(self, size: int, root: bytes) -> None:
        raise StorageError("cluster reads do not write")

    def commit(self, batch: Batch) -> None:
        raise StorageError("cluster reads do not write")

    def recover(self) -> None:
        """Nothing to clear: a failed read leaves the connection to be replaced by its owner."""

    def close(self) -> None:
        self.conn.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no upper bound)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


# ---------------------------------------------------------------------------------- sequencing

_INDEX_FIELD = struct.Struct(">q")  # a bigint in PostgreSQL's binary COPY format
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _binary_copy(rows: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Rows of two already-encoded binary fields as one binary COPY stream (what write_row does, per row, slower)."""
    pack = struct.Struct(">hi").pack
    length = struct.Struct(">i").pack
    return b"".join([_COPY_HEADER, *(pack(2, len(a)) + a + length(len(b)) + b for a, b in rows), _COPY_TRAILER])



def lock_coordinator(conn: Conn) -> int:
    """Inside a transaction: lock the coordinator row; the next index to assign.

    That is the row's ``next_index``, or the tree head's size if larger (a log copied in by
    ``provenance db copy`` has a head the coordinator never saw).
    """
    row = conn.execute("SELECT c.next_index, COALESCE(h.size, 0) FROM coordinator c, head h FOR UPDATE OF c").fetchone()
    if row is None:
        raise CorruptStorageError("the database has no coordinator row: run provenance db migrate")
    return max(int(row[0]), int(row[1]))


def append_sequenced(conn: Conn, start: int, entries: Sequence[bytes], leaf_hashes: Sequence[bytes],
                     aux: Iterable[tuple[bytes, bytes]]) -> None:
    """Inside the coordinator's transaction: entries at ``[start, start + n)``, their dedup keys, the hook's
    aux writes, the coordinator moved on, and a NOTIFY for the signer (delivered at commit)."""
    with conn.cursor() as cur:
        with cur.copy("COPY entries (idx, data) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_binary_copy([(_INDEX_FIELD.pack(i), e) for i, e in enumerate(entries, start)]))
        with cur.copy("COPY leaf_index (prefix, idx) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_binary_copy([(h[:DEDUP_PREFIX], _INDEX_FIELD.pack(i))
                                     for i, h in enumerate(leaf_hashes, start)]))
        pairs = list(dict(aux).items())  # a later write of a key replaces an earlier one, as in a batch
        if pairs:
            cur.executemany("INSERT INTO aux (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                            "SET value = EXCLUDED.value", pairs)
        cur.execute("UPDATE coordinator SET next_index = %s", (start + len(entries),))
        cur.execute("SELECT pg_notify(%s, current_schema())", (SEQUENCED,))


def next_index(conn: Conn) -> int:
    """The coordinator's committed next index (no lock)."""
    row = conn.execute("SELECT next_index FROM coordinator").fetchone()
    return 0 if row is None else int(row[0])


# ---------------------------------------------------------------------------------- the signer


def try_signer_lock(conn: Conn) -> bool:
    """Try to take this store's signer lock, session-level, on ``conn`` (autocommit); held until it closes."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (SIGNER_LOCK,)).fetchone()
    return bool(row and row[0])


def take_lease(conn: Conn, holder: str) -> int:
    """Inside a transaction: increment the fencing epoch; the new epoch (this signer's)."""
    row = conn.execute("UPDATE signer_lease SET epoch = epoch + 1, holder = %s, since = now() RETURNING epoch",
                       (holder,)).fetchone()
    if row is None:
        raise CorruptStorageError("the database has no signer_lease row: run provenance db migrate")
    return int(row[0])


def check_lease(conn: Conn, epoch: int) -> None:
    """Inside a transaction: lock the lease row; raise :class:`StorageError` unless it still holds ``epoch``."""
    row = conn.execute("SELECT epoch FROM signer_lease FOR UPDATE").fetchone()
    if row is None or int(row[0]) != epoch:
        raise FencedError(f"the signer lease moved on to epoch {None if row is None else row[0]} (ours: {epoch})")


class FencedError(StorageError):
    """Another process took the signer role: this one must not commit or publish anything more."""


def schema(conn: Conn) -> str:
    """The schema the connection's store lives in (what its NOTIFY payloads carry)."""
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise StorageError("the DSN's search_path names no existing schema")
    return str(row[0])


def latest_checkpoint(conn: Conn) -> tuple[int, bytes, bytes] | None:
    """``(size, root, note)`` of the largest committed checkpoint, or None."""
    row = conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))


def init_log(conn: Conn, origin: str, head: TreeHead) -> None:
    """Inside the signer's transaction: the first tree head and the origin of a fresh database."""
    conn.execute("INSERT INTO meta (name, value) VALUES ('origin', %s)", (origin.encode(),))
    conn.execute("UPDATE head SET size = %s, root = %s, edge = %s", (head.size, head.root, b"".join(head.edge)))


def commit_signed(conn: Conn, epoch: int, old_size: int, head: TreeHead, groups: Mapping[HashGroupKey, bytes],
                  note: bytes, history: int | None = None) -> None:
    """Inside the signer's transaction, after :func:`check_lease`: the tree hashes, the new head (which must
    move on from ``old_size``), the signed-head record, the checkpoint row and its NOTIFY; with ``history``,
    prunes checkpoint rows beyond the newest ``history``."""
    with conn.cursor() as cur:
        if groups:
            cur.executemany("INSERT INTO hash_groups (level, grp, data) VALUES (%s, %s, %s) ON CONFLICT (level, grp)"
                            " DO UPDATE SET data = EXCLUDED.data", [(k[0], k[1], v) for k, v in groups.items()])
        cur.execute("UPDATE head SET size = %s, root = %s, edge = %s WHERE size = %s",
                    (head.size, head.root, b"".join(head.edge), old_size))
        if cur.rowcount != 1:
            raise FencedError(f"the tree head is no longer at size {old_size}")
        cur.execute("INSERT INTO signed_head (id, size, root) VALUES (true, %s, %s) ON CONFLICT (id) DO UPDATE "
                    "SET size = EXCLUDED.size, root = EXCLUDED.root", (head.size, head.root))
        cur.execute("INSERT INTO meta (name, value) VALUES ('checkpoint', %s) ON CONFLICT (name) DO UPDATE "
                    "SET value = EXCLUDED.value", (note,))
        cur.execute("INSERT INTO checkpoints (size, root, note, epoch) VALUES (%s, %s, %s, %s) ON CONFLICT (size) "
                    "DO NOTHING", (head.size, head.root, note, epoch))
        if history is not None:
            cur.execute("DELETE FROM checkpoints WHERE size < (SELECT size FROM checkpoints ORDER BY size DESC "
                        "OFFSET %s LIMIT 1)", (history,))
        cur.execute("SELECT pg_notify(%s, current_schema())", (SIGNED,))
