"""The PostgreSQL store's schema under version control: numbered migrations and the version check at open.

Each migration is a file ``ledger/storage/migrations/NNNN_name.sql`` (package data), applied
once, in order, each in its own transaction together with its row in ``schema_version``;
the schema's version is the highest applied number. A store opens only at exactly
:data:`CURRENT_VERSION`: an older one is refused with a message naming ``provenance db
migrate`` (migrating is an operator's step, never a side effect of a start), a newer one
(written by a later release) is refused too. A database holding no tables at all is a fresh
store: :func:`migrate` creates the schema. Concurrent migrators (several frontends, an
operator) are serialised by a transaction-scoped advisory lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from ledger.errors import CorruptStorageError, StorageError

MIGRATE_COMMAND = "provenance db migrate --store postgresql://..."
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x70726F76  # "prov": the advisory lock that serialises migrations of one database


@dataclass(frozen=True)
class Migration:
    """One numbered schema step: ``version`` (1, 2, ...), its name and its SQL."""

    version: int
    name: str
    sql: str


def _load() -> tuple[Migration, ...]:
    found = []
    for item in resources.files("ledger.storage").joinpath("migrations").iterdir():
        m = _FILE.fullmatch(item.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), m.group(2), item.read_text(encoding="utf-8")))
    found.sort(key=lambda mg: mg.version)
    if [mg.version for mg in found] != list(range(1, len(found) + 1)):
        raise CorruptStorageError(f"the migrations are not numbered 1..n: {[mg.version for mg in found]}")
    return tuple(found)


MIGRATIONS = _load()
CURRENT_VERSION = MIGRATIONS[-1].version
"""The schema version this code reads and writes."""


def stored_version(conn: psycopg.Connection[Any]) -> int | None:
    """The database's schema version; None for a database without ``schema_version`` (never migrated).

    Raises :class:`CorruptStorageError` for a database that holds other tables but no
    ``schema_version`` (not a log store: refuse it rather than add our tables to it).
    """
    if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()").fetchone()
        if row is not None and row[0] != 0:
            raise CorruptStorageError("the database holds tables but no schema_version: it is not a log store "
                                      "(point the DSN at an empty database, or at the log's own)")
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row is None or row[0] is None:
        raise CorruptStorageError("the log store's schema_version table is empty")
    version: int = row[0]
    return version


def check_version(version: int | None) -> None:
    """Refuse a store at another schema version than :data:`CURRENT_VERSION` (see the module docstring).

    ``None`` (a fresh database) is refused as well: the caller migrates it first.
    """
    if version == CURRENT_VERSION:
        return
    if version is None or version < CURRENT_VERSION:
        raise CorruptStorageError(
            f"the PostgreSQL store has schema version {version or 0}, this server needs {CURRENT_VERSION}: "
            f"run `{MIGRATE_COMMAND}` (with the server stopped, or before starting the new release)")
    raise CorruptStorageError(
        f"the PostgreSQL store has schema version {version}, newer than this server's {CURRENT_VERSION} "
        "(written by a later release): run that release, or restore a backup made before the upgrade")


def migrate(conn: psycopg.Connection[Any], *, only_fresh: bool = False) -> list[Migration]:
    """Apply every migration the database lacks, each in its own transaction; the ones applied, in order.

    With ``only_fresh`` nothing is applied to a database already holding a schema (an open
    creates the schema of a fresh database but never migrates an existing one). Requires an
    autocommit connection. Raises :class:`CorruptStorageError` for a newer or foreign schema
    and :class:`StorageError` when PostgreSQL fails.
    """
    applied: list[Migration] = []
    try:
        while True:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                version = stored_version(conn) or 0
                if version > CURRENT_VERSION:
                    check_version(version)
                if version == CURRENT_VERSION or (only_fresh and version != 0 and not applied):
                    return applied
                step = MIGRATIONS[version]  # the next one: version + 1
                conn.execute(step.sql.encode())
                conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (step.version, step.name))
            applied.append(step)
    except psycopg.Error as e:
        raise StorageError(f"migrating the PostgreSQL schema failed: {e}") from e
