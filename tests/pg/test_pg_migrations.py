"""The PostgreSQL schema: created in an empty database, migrated by `provenance db migrate`, versions refused."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from client.cli import main
from ledger.errors import CorruptStorageError
from ledger.storage.postgres import PostgresStorage
from ledger.storage.postgres_schema import CURRENT_VERSION, MIGRATIONS, migrate, stored_version
from tests.pg import PgCluster


@pytest.fixture
def empty_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """A database without any table (not from the migrated template); left for the cluster's teardown."""
    yield pg_cluster.dsn(pg_cluster.fresh_database(migrated=False))


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len(MIGRATIONS) == CURRENT_VERSION
    assert all(m.sql.strip() and m.name for m in MIGRATIONS)


def test_open_creates_the_schema_of_an_empty_database(empty_dsn: str) -> None:
    PostgresStorage.open(empty_dsn).close()
    assert _versions(empty_dsn) == list(range(1, CURRENT_VERSION + 1))
    s = PostgresStorage.open(empty_dsn)  # and opens it again as it is
    try:
        assert s.read_head() is None
    finally:
        s.close()


def test_db_migrate_applies_what_is_missing_then_nothing(empty_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--store", empty_dsn]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("applied")] == [
        f"{m.version:04d}_{m.name}" for m in MIGRATIONS]
    assert f"schema version {CURRENT_VERSION}" in out
    assert main(["db", "migrate", "--store", empty_dsn]) == 0
    assert "already current" in capsys.readouterr().out
    assert _versions(empty_dsn) == list(range(1, CURRENT_VERSION + 1))


def _at_version(dsn: str, version: int) -> None:
    """Apply only the first ``version`` migrations, as an older release left the database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for m in MIGRATIONS[:version]:
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (m.version, m.name))


@pytest.mark.skipif(CURRENT_VERSION < 2, reason="needs a schema with two migrations")
def test_an_older_schema_is_refused_until_migrated(empty_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    _at_version(empty_dsn, 1)
    with pytest.raises(CorruptStorageError, match="provenance db migrate") as err:
        PostgresStorage.open(empty_dsn)
    assert f"schema version 1, this server needs {CURRENT_VERSION}" in str(err.value)
    assert _versions(empty_dsn) == [1]  # an open never migrates an existing schema
    assert main(["db", "migrate", "--store", empty_dsn]) == 0
    assert "applied 0002_" in capsys.readouterr().out
    PostgresStorage.open(empty_dsn).close()


def test_a_newer_schema_is_refused(empty_dsn: str) -> None:
    PostgresStorage.open(empty_dsn).close()
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, 'from_the_future')",
                     (CURRENT_VERSION + 1,))
    with pytest.raises(CorruptStorageError, match="newer than this server's"):
        PostgresStorage.open(empty_dsn)
    assert main(["db", "migrate", "--store", empty_dsn]) != 0  # nor does migrate touch it
    assert _versions(empty_dsn)[-1] == CURRENT_VERSION + 1


def test_a_database_of_something_else_is_refused(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
        with pytest.raises(CorruptStorageError, match="not a log store"):
            stored_version(conn)
        with pytest.raises(CorruptStorageError, match="not a log store"):
            migrate(conn)
    with pytest.raises(CorruptStorageError, match="not a log store"):
        PostgresStorage.open(empty_dsn)


def test_db_migrate_refuses_a_directory_store(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--store", f"rocksdb:{tmp_path}"]) == 2
    assert "only postgresql:// stores" in capsys.readouterr().err


def test_two_schemas_of_one_database_are_two_stores(pg_cluster: PgCluster) -> None:
    """A DSN's search_path picks the schema: each holds its own tables and version, and a missing schema is refused."""
    from ledger.errors import StorageError
    from ledger.storage import Batch, TreeHead

    first, second = pg_cluster.fresh_schema(), pg_cluster.fresh_schema()
    a, b = PostgresStorage.open(first), PostgresStorage.open(second)
    try:
        a.commit(Batch(0, [b"only in a"], [b"\x01" * 32], {}, TreeHead(1, b"\x02" * 32, (b"\x03" * 32,))))
        assert b.read_head() is None and b.read_entries_at([0]) == [None]
        assert a.read_entries(0, 1) == [b"only in a"]
    finally:
        a.close()
        b.close()
    assert _versions(first) == _versions(second) == list(range(1, CURRENT_VERSION + 1))
    with pytest.raises(StorageError):
        PostgresStorage.open(first.replace("search_path%3D", "search_path%3Dno_such_schema_"))
