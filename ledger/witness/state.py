"""The witness's durable state: configured logs, what it last cosigned per origin, and evidence. SQLite.

One file, ``<data dir>/witness.db``, in WAL mode with ``synchronous=FULL``. Durability
promise: when :meth:`WitnessState.apply` returns, the new cosigned state and any
evidence of that request are on disk and survive a crash or ``kill -9``; the caller
answers only after it returns. :meth:`apply` reads the held state, decides and writes in
one ``BEGIN IMMEDIATE`` transaction under a lock, so two requests (or two processes on one
data directory) can never both pass the old-size check against the same held size.

Tables: ``logs(origin, vkey)`` (the note keys trusted per origin), ``checkpoints(origin,
size, root, timestamp, note)`` (one row per origin, the latest cosigned), ``evidence(id,
origin, received, reason, request, held)`` (refused log-signed checkpoints, never deleted),
``meta(key, value)`` (schema version, the witness's vkey once it has served).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from client.core.note import Verifier
from client.errors import FormatError, InvalidInputError, NotFoundError
from ledger.errors import StorageError
from ledger.witness.core import Decision, Evidence, LogConfig, LogState

__all__ = ["DB_NAME", "EvidenceRecord", "WitnessState"]

_log = logging.getLogger(__name__)

DB_NAME = "witness.db"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (origin TEXT NOT NULL, vkey TEXT NOT NULL, PRIMARY KEY (origin, vkey));
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
    timestamp INTEGER NOT NULL, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, received INTEGER NOT NULL,
    reason TEXT NOT NULL, request BLOB NOT NULL, held BLOB);
"""


@dataclass(frozen=True)
class EvidenceRecord:
    """One kept piece of evidence, with its row id."""

    id: int
    evidence: Evidence


class WitnessState:
    """The open state database of one witness data directory. Thread-safe; close it when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, *, create: bool = False) -> WitnessState:
        """Open ``data_dir/witness.db``; with ``create``, make the directory (0700) and database if absent.

        Without ``create`` a missing database is a :class:`NotFoundError`: a witness whose state was lost
        must not start afresh under the same key, or it could cosign a rollback.
        """
        path = Path(data_dir) / DB_NAME
        if not path.exists():
            if not create:
                raise NotFoundError(f"no witness state in {data_dir} (create it with 'provenance witness add-log'); "
                                    "a witness whose state is lost must be retired, not restarted")
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                conn.close()
                raise StorageError(f"witness state {path} has schema {row[0]!r}, this version reads {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open witness state {path}: {e}") from e
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> WitnessState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration -----------------------------------------------------------------------

    def add_log(self, origin: str, vkey: str) -> None:
        """Trust note key ``vkey`` (an Ed25519 verifier key) for checkpoints of ``origin``."""
        if not origin or any(c < " " for c in origin):
            raise InvalidInputError(f"log origin {origin!r} is empty or has control characters")
        try:
            Verifier.from_text(vkey)
        except FormatError as e:
            raise InvalidInputError(f"log vkey for {origin}: {e}") from e
        with self._lock, self._conn:
            self._run("INSERT OR IGNORE INTO logs VALUES (?, ?)", (origin, vkey))

    def logs(self) -> dict[str, LogConfig]:
        """The configured logs by origin."""
        by_origin: dict[str, list[Verifier]] = {}
        with self._lock:
            rows = self._run("SELECT origin, vkey FROM logs ORDER BY origin, vkey", ()).fetchall()
        for origin, vkey in rows:
            by_origin.setdefault(origin, []).append(Verifier.from_text(vkey))
        return {o: LogConfig(o, tuple(vs)) for o, vs in by_origin.items()}

    def bind_key(self, vkey: str) -> None:
        """Record the witness's vkey on first serve; refuse to serve this state under another key."""
        with self._lock:
            self._run("BEGIN IMMEDIATE", ())
            try:
                row = self._run("SELECT value FROM meta WHERE key = 'witness_key'", ()).fetchone()
                if row is None:
                    self._run("INSERT INTO meta VALUES ('witness_key', ?)", (vkey,))
                elif row[0] != vkey:
                    raise InvalidInputError(f"the witness state in {self._path.parent} belongs to key {row[0]}, "
                                            f"not {vkey}: use that key or another data directory")
                self._run("COMMIT", ())
            except BaseException:
                self._conn.rollback()
                raise

    # -- cosigning ---------------------------------------------------------------------------

    def latest(self, origin: str) -> LogState | None:
        """What was last cosigned for ``origin``, or None."""
        with self._lock:
            return self._read_state(origin)

    def apply(self, origin: str, decide: Callable[[LogState | None], Decision]) -> Decision:
        """Run ``decide`` on the held state of ``origin`` and persist what it returns, atomically.

        The new state (if any) and the evidence (if any) are committed and synced before this returns.
        A new state with a smaller size than the held one is refused (:class:`StorageError`): the
        decision must never roll back a cosigned size, and this is the last place to catch it.
        """
        with self._lock:
            self._run("BEGIN IMMEDIATE", ())
            try:
                held = self._read_state(origin)
                decision = decide(held)
                new = decision.new_state
                if new is not None:
                    if new.origin != origin or (held is not None and new.size < held.size):
                        raise StorageError(f"refusing to store size {new.size} for {new.origin!r} "
                                           f"over the held size {None if held is None else held.size}")
                    self._run("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                              (origin, new.size, new.root, new.timestamp, new.note))
                ev = decision.evidence
                if ev is not None:
                    self._run("INSERT INTO evidence (origin, received, reason, request, held) VALUES (?, ?, ?, ?, ?)",
                              (ev.origin, ev.received, ev.reason, ev.request, ev.held))
                self._run("COMMIT", ())
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
        if decision.evidence is not None:
            _log.warning("kept evidence of a refused checkpoint",
                         extra={"origin": origin, "reason": decision.evidence.reason})
        return decision

    def evidence(self, origin: str | None = None) -> list[EvidenceRecord]:
        """Every kept piece of evidence (of ``origin`` only, if given), oldest first."""
        query = "SELECT id, origin, received, reason, request, held FROM evidence"
        args: tuple[str, ...] = ()
        if origin is not None:
            query, args = query + " WHERE origin = ?", (origin,)
        with self._lock:
            rows = self._run(query + " ORDER BY id", args).fetchall()
        return [EvidenceRecord(r[0], Evidence(r[1], r[2], r[3], bytes(r[4]), None if r[5] is None else bytes(r[5])))
                for r in rows]

    # -- internals ---------------------------------------------------------------------------

    def _read_state(self, origin: str) -> LogState | None:
        row = self._run("SELECT size, root, timestamp, note FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            return None
        return LogState(origin, int(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]))

    def _run(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as e:
            raise StorageError(f"witness state {self._path}: {e}") from e
