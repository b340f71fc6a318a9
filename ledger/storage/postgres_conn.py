"""Connections of the PostgreSQL store: a small pool, PostgreSQL's errors as ours, DSNs without passwords.

Every connection is autocommit (a transaction is an explicit ``conn.transaction()``) and
durable: ``synchronous_commit`` is forced on where the server's default turned it off, so a
transaction's COMMIT returns only once its WAL record is flushed. A connection that fails
is dropped, never reused; the next call connects anew, which is how the store waits out a
database restart (each call in between raises :class:`StorageError`, UNAVAILABLE).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.errors import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "provenance-ledger"
DEFAULTS = {
    "connect_timeout": str(CONNECT_TIMEOUT_SECONDS),
    "application_name": APPLICATION_NAME,
    # A server that vanished without closing the connection (host down, partition) fails a call
    # within about 30 s instead of hanging it: keepalives on idle connections, a send deadline on busy ones.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",  # ms
}
"""libpq parameters used where the DSN does not set them."""
_DURABLE = ("SELECT set_config('synchronous_commit', 'on', false) "
            "WHERE current_setting('synchronous_commit') = 'off'")


def redact(dsn: str) -> str:
    """``dsn`` as ``postgresql://USER@HOST:PORT/DB`` for logs and messages: no password, no other options."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(a DSN that does not parse)"
    user = f"{quote(str(parts['user']), safe='')}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    if "," in host or host.startswith("/"):
        host = quote(host, safe=",")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{quote(str(parts.get('dbname') or ''), safe='')}"


def check_dsn(dsn: str) -> None:
    """Raise :class:`StorageError` for a DSN libpq cannot parse (the message holds no part of it)."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error:
        raise StorageError("the PostgreSQL DSN does not parse (see libpq's connection strings)") from None


def connect(dsn: str, where: str) -> psycopg.Connection[Any]:
    """A new durable autocommit connection; :class:`StorageError` naming ``where`` (a redacted DSN) if none."""
    try:
        given = conninfo_to_dict(dsn)
        conninfo = make_conninfo(dsn, **{k: v for k, v in DEFAULTS.items() if k not in given})
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as e:
        raise StorageError(f"cannot connect to PostgreSQL at {where}: {_text(e)}") from None
    try:
        conn.execute(_DURABLE)
    except psycopg.Error as e:
        conn.close()
        raise StorageError(f"PostgreSQL at {where} failed: {_text(e)}") from None
    return conn


def _text(e: psycopg.Error) -> str:
    """The first line of PostgreSQL's message (libpq's messages never hold the password)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def failure(what: str, where: str, e: psycopg.Error) -> StorageError:
    """PostgreSQL's error ``e`` during ``what`` as a :class:`StorageError` (UNAVAILABLE: retry later)."""
    return StorageError(f"PostgreSQL {what} at {where} failed: {_text(e)}")


class Pool:
    """Up to ``size`` connections shared by the reading threads; one is held only for one call."""

    def __init__(self, dsn: str, where: str, size: int = 8) -> None:
        self._dsn = dsn
        self._where = where
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.closed = False

    def run(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(conn)`` on a pooled connection; PostgreSQL's errors become :class:`StorageError`.

        ``fn`` must be safe to run twice (a read, an idempotent upsert): an idle connection
        that fails (the server restarted since it was last used) is replaced by a new one and
        ``fn`` runs again, so the first call after a restart does not fail needlessly.
        """
        if self.closed:
            raise StorageError("the PostgreSQL store is closed")
        with self._slots:
            conn: psycopg.Connection[Any] | None = None
            try:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                if conn is not None:
                    try:
                        result = fn(conn)
                    except psycopg.OperationalError:
                        conn.close()
                        conn = None
                if conn is None:
                    conn = connect(self._dsn, self._where)
                    result = fn(conn)
            except psycopg.Error as e:
                if conn is not None:
                    conn.close()  # a failed connection is never reused
                raise failure(what, self._where, e) from e
            except StorageError:
                if conn is not None:
                    self._give_back(conn)  # our own refusal (a bad range, corrupt data): the connection is fine
                raise
            except BaseException:
                if conn is not None:
                    conn.close()  # interrupted mid-call: its protocol state is unknown
                raise
            self._give_back(conn)
            return result

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if self.closed or conn.closed:
                conn.close()
            else:
                self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()
