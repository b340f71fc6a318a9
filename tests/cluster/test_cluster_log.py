"""Two cluster frontends in one process on one database: sequencing, signing, failover, fencing.

The frontends are :class:`ledger.cluster.log.ClusterLog` objects on a throwaway PostgreSQL 15
database (``tests/pg.py``); ``test_frontends.py`` runs real ``provenance serve`` processes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.core.checkpoint import open_checkpoint
from client.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from client.core.note import Signer
from client.errors import InvalidInputError, UnavailableError
from ledger.cluster import sql
from ledger.cluster.config import ClusterConfig
from ledger.cluster.log import ClusterLog
from ledger.errors import KeyFileError
from ledger.log.config import LogConfig
from ledger.log.hook import Appended
from ledger.storage.postgres import PostgresStorage
from tests.pg import PgCluster
from tests.references import require_postgres

ORIGIN = "example.test/cluster"


@pytest.fixture
def key() -> Signer:
    return Signer.generate(ORIGIN)


def _open(dsn: str, key: Signer, name: str) -> ClusterLog:
    config = ClusterConfig(dsn, holder=name, takeover_seconds=0.2, poll_seconds=0.2, start_seconds=10)
    return ClusterLog.open(PostgresStorage.open(dsn), config, key, LogConfig(ORIGIN))


@pytest.fixture
def pair(pg_dsn: str, key: Signer) -> Iterator[tuple[ClusterLog, ClusterLog]]:
    a = _open(pg_dsn, key, "a")
    b = _open(pg_dsn, key, "b")
    yield a, b
    b.close()
    a.close()


def _wait(cond: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_writes_through_both_get_every_index_once_and_the_same_checkpoints(pair: tuple[ClusterLog, ClusterLog]) -> None:
    a, b = pair
    futures = []
    for i in range(20):
        front = a if i % 2 else b
        futures.append((front, [f"{i}-{j}".encode() for j in range(50)], None))
    submitted = [(f, entries, f.submit(entries)) for f, entries, _ in futures]
    indices: dict[int, bytes] = {}
    for _, entries, fut in submitted:
        for entry, result in zip(entries, fut.result(20), strict=True):
            assert isinstance(result, Appended) and not result.duplicate
            assert result.index not in indices
            indices[result.index] = entry
    assert sorted(indices) == list(range(1000))
    _wait(lambda: a.size == b.size == 1000)
    assert a.latest().note == b.latest().note
    root = a.latest().checkpoint.root
    for front in (a, b):
        for i in (0, 499, 999):
            assert front.entries(i, i + 1) == [indices[i]]
            verify_inclusion(i, 1000, leaf_hash(indices[i]), front.inclusion_proof(i, 1000), root)
        verify_consistency(300, 1000, front.consistency_proof(300, 1000), front.root_at(300), root)
        # Each frontend proved every checkpoint it served consistent with the one before (the signer's
        # own too, read back from the row before it was announced): none failed its check.
        assert front.damage is None and front.health()


def test_a_duplicate_through_the_other_frontend_keeps_its_index(pair: tuple[ClusterLog, ClusterLog]) -> None:
    a, b = pair
    first = a.add([b"x", b"y"], timeout=20)
    again = b.add([b"y", b"z"], timeout=20)
    assert isinstance(first[1], Appended) and isinstance(again[0], Appended) and isinstance(again[1], Appended)
    assert again[0].index == first[1].index and again[0].duplicate
    assert again[1].index == 2 and not again[1].duplicate


def test_the_other_frontend_takes_over_signing(pair: tuple[ClusterLog, ClusterLog]) -> None:
    a, b = pair
    _wait(lambda: a.is_signer or b.is_signer)
    signer, standby = (a, b) if a.is_signer else (b, a)
    standby.add([b"before"], timeout=20)
    signer._role.stop()  # the signer's session ends: its advisory lock frees
    began = time.monotonic()
    _wait(lambda: standby.is_signer, 10)
    assert time.monotonic() - began < 10
    results = standby.add([b"after"], timeout=20)
    assert isinstance(results[0], Appended) and results[0].index == 1
    assert standby.latest().checkpoint.size == 2


def test_a_signer_whose_lease_moved_on_commits_nothing(pg_dsn: str, key: Signer) -> None:
    a = _open(pg_dsn, key, "a")
    try:
        _wait(lambda: a.is_signer)
        epoch = a._role.epoch
        other = sql.connect(pg_dsn)
        with other.transaction():
            assert sql.take_lease(other, "intruder") == epoch + 1
        with other.transaction(), pytest.raises(sql.FencedError):
            sql.check_lease(other, epoch)
        other.close()
        # The old holder's next step fails its lease check; it gives up the role and, holding no
        # lock any more, takes it again at a new epoch, resuming from the stored head.
        a.add([b"fenced"], timeout=20)
        assert a._role.epoch > epoch + 1
        assert a.latest().checkpoint.size == 1
        check = sql.connect(pg_dsn)
        rows = check.execute("SELECT size, epoch FROM checkpoints ORDER BY size").fetchall()
        check.close()
        assert rows[-1] == (1, a._role.epoch), "the new entry was signed at the new epoch, not the fenced one"
    finally:
        a.close()


def test_a_database_restart_is_waited_out_with_unavailable(pg_cluster: PgCluster, pg_dsn: str, key: Signer) -> None:
    a = _open(pg_dsn, key, "a")
    try:
        a.add([b"before"], timeout=20)
        pg_cluster.stop()  # immediate: in-flight sessions are cut, the signer's lock with them
        try:
            with pytest.raises(UnavailableError):
                a.add([b"during"], timeout=20)
            _wait(lambda: not a.health())
        finally:
            pg_cluster.start()
        deadline = time.monotonic() + 30
        while True:  # what a client does on UNAVAILABLE: retry (a duplicate keeps its index)
            try:
                results = a.add([b"during", b"after"], timeout=20)
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the frontend did not resume after the restart"
                time.sleep(0.2)
        assert [r.index for r in results if isinstance(r, Appended)] == [1, 2]
        assert a.latest().checkpoint.size == 3
        _wait(a.health)
    finally:
        a.close()


def test_a_frontend_with_another_key_refuses_to_join_and_signs_nothing(pg_dsn: str, key: Signer) -> None:
    a = _open(pg_dsn, key, "a")
    a.add([b"x"], timeout=20)
    a.close()  # the signer lock is free: the intruder's signer role gets it first
    other = sql.connect(pg_dsn)
    with other.transaction():  # an entry sequenced, waiting to be signed
        start = sql.lock_coordinator(other)
        sql.append_sequenced(other, start, [b"y"], [leaf_hash(b"y")], ())
    with pytest.raises(KeyFileError):
        _open(pg_dsn, Signer.generate(ORIGIN), "intruder")
    notes = [bytes(r[0]) for r in other.execute("SELECT note FROM checkpoints").fetchall()]
    other.close()
    assert notes and all(open_checkpoint(n, key.verifier(), ORIGIN).size <= 1 for n in notes)


def test_pg_dump_and_pg_restore_as_docs_operations_says(pg_cluster: PgCluster, pg_dsn: str, key: Signer,
                                                         tmp_path: Path) -> None:
    a = _open(pg_dsn, key, "a")
    a.add([b"one", b"two"], timeout=20)
    signed = a.latest()
    a.close()
    conn = sql.connect(pg_dsn)
    with conn.transaction():  # acknowledged by a frontend that died before anyone signed it
        sql.append_sequenced(conn, sql.lock_coordinator(conn), [b"three"], [leaf_hash(b"three")], ())
    conn.close()
    dump = tmp_path / "provenance.dump"
    bins = require_postgres()
    subprocess.run([str(bins / "pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", pg_dsn], check=True,
                   capture_output=True, timeout=60)
    restored = pg_cluster.fresh_database(migrated=False)
    try:
        subprocess.run([str(bins / "pg_restore"), "--no-owner", f"--dbname={pg_cluster.dsn(restored)}", str(dump)],
                       check=True, capture_output=True, timeout=60)
        b = _open(pg_cluster.dsn(restored), key, "b")
        try:
            _wait(lambda: b.size == 3)  # the sequenced entry was in the dump, and is signed now
            assert b.entries(0, 3) == [b"one", b"two", b"three"]
            assert b.root_at(2) == signed.checkpoint.root
        finally:
            b.close()
    finally:
        pg_cluster.drop_database(restored)


def test_db_copy_out_of_a_cluster_waits_for_the_sequenced_entries_to_be_signed(pg_dsn: str, key: Signer,
                                                                                tmp_path: Path) -> None:
    from ledger.app import dbcopy

    a = _open(pg_dsn, key, "a")
    a.add([b"one"], timeout=20)
    a.close()
    conn = sql.connect(pg_dsn)
    with conn.transaction():  # acknowledged, its frontend gone before anyone signed it
        sql.append_sequenced(conn, sql.lock_coordinator(conn), [b"two"], [leaf_hash(b"two")], [(b"x", b"1")])
    conn.close()
    with pytest.raises(InvalidInputError, match="beyond its tree head"):
        dbcopy.copy(pg_dsn, str(tmp_path / "copy1"))
    b = _open(pg_dsn, key, "b")
    _wait(lambda: b.size == 2)
    b.close()
    report = dbcopy.copy(pg_dsn, str(tmp_path / "copy2"))
    assert report.size == 2


def test_two_log_stores_in_two_schemas_of_one_database_each_have_a_signer(pg_cluster: PgCluster,
                                                                          key: Signer) -> None:
    first = _open(pg_cluster.fresh_schema(), key, "first")
    try:
        second = _open(pg_cluster.fresh_schema(), key, "second")  # its own signer lock: it signs its own log
        try:
            first.add([b"a"], timeout=20)
            second.add([b"b", b"c"], timeout=20)
            assert first.is_signer and second.is_signer
            assert (first.size, second.size) == (1, 2)
            assert first.entries(0, 1) == [b"a"] and second.entries(0, 2) == [b"b", b"c"]
        finally:
            second.close()
    finally:
        first.close()
