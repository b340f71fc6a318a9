"""`provenance serve --store postgresql://...`: a database restart is waited out, and the DSN's password never shows.

A restart of PostgreSQL under a running server: calls while it is down answer UNAVAILABLE (or,
writes, wait it out), later ones succeed without a restart of ours, and every acknowledged entry
is at its index.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.merkle import verify_consistency
from client.core.note import Verifier
from client.errors import UnavailableError
from ledger.app.serve import build_config
from tests.pg import PASSWORD, PgCluster
from tests.servers import running_server


def _add_until(c: object, stop: threading.Event, acked: dict[bytes, tuple[int, float]], errors: list[str]) -> None:
    """Add one entry at a time until ``stop``; record each acknowledged entry's index and time, and each refusal."""
    n = 0
    while not stop.is_set():
        entry = f"under restart {n}".encode()
        n += 1
        try:
            (got,) = c.add_entries([entry]).entries  # type: ignore[attr-defined]
            acked[entry] = (got.index, time.monotonic())
        except UnavailableError as e:
            errors.append(str(e))
            time.sleep(0.05)


def test_database_restart_is_waited_out(tmp_path: Path, pg_cluster: PgCluster, pg_dsn: str) -> None:
    with running_server(tmp_path / "data", ["--store", pg_dsn]) as srv, srv.client(timeout=5.0) as c:
        verifier = Verifier.from_text(c.log_info().verifier_key)

        def checkpoint() -> Checkpoint:
            return open_checkpoint(c.checkpoint(), verifier)

        first = [got.index for got in c.add_entries([b"before 0", b"before 1"], wait_for_checkpoint=True).entries]
        before = checkpoint()
        acked: dict[bytes, tuple[int, float]] = {}
        errors: list[str] = []
        stop = threading.Event()
        writer = threading.Thread(target=_add_until, args=(c, stop, acked, errors))
        writer.start()
        try:
            time.sleep(0.3)
            pg_cluster.stop()
            with pytest.raises(UnavailableError):  # a read must ask the database: UNAVAILABLE, not a hang
                list(c.iter_entries(0, 2))
            time.sleep(0.5)
            pg_cluster.start()
            back = time.monotonic()
            deadline = back + 30  # the writer's calls succeed again without a restart of ours
            while time.monotonic() < deadline and not any(t > back for _, t in list(acked.values())):
                time.sleep(0.05)
        finally:
            stop.set()
            writer.join(30)
        got_after = c.add_entries([b"after"], wait_for_checkpoint=True).entries
        after = checkpoint()
        entries = list(c.iter_entries(0, after.size))
        assert first == [0, 1]
        assert any(t > back for _, t in acked.values()), "no call succeeded after PostgreSQL came back"
        assert all(entries[i] == e for e, (i, _) in acked.items()), "an acknowledged entry is not at its index"
        assert entries[got_after[0].index] == b"after"
        proof = c.consistency_proof(before.size, after.size)
        verify_consistency(before.size, after.size, list(proof.hashes), before.root, after.root)
        assert srv.proc is not None and srv.proc.poll() is None  # the same process throughout
    log = srv.log_text()
    assert PASSWORD not in log
    assert "postgresql://provenance@127.0.0.1" in log  # the store is named, without its password


def test_dsn_password_is_in_no_message(tmp_path: Path, pg_cluster: PgCluster, pg_dsn: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from client.cli import main
    from ledger.errors import StorageError
    from ledger.storage.postgres import PostgresStorage

    config = build_config(tmp_path / "data", "127.0.0.1:0", None, None, store=pg_dsn)
    assert PASSWORD not in repr(config) and PASSWORD not in config.store_spec.describe()
    wrong = pg_dsn.replace(PASSWORD, "not-the-password-1234")
    with pytest.raises(StorageError) as err:
        PostgresStorage.open(wrong)
    assert "not-the-password-1234" not in str(err.value) and "authentication failed" in str(err.value)
    closed_port = pg_dsn.replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(StorageError, match="cannot connect") as err:
        PostgresStorage.open(closed_port)
    assert PASSWORD not in str(err.value)
    assert main(["serve", "--data", str(tmp_path / "data"), "--store", wrong, "--listen", "127.0.0.1:0"]) != 0
    assert main(["db", "migrate", "--store", wrong]) != 0
    out, errtext = capsys.readouterr()
    assert "not-the-password-1234" not in out + errtext


def test_serve_refuses_store_flags_that_do_not_fit_a_database(tmp_path: Path) -> None:
    from client.errors import InvalidInputError

    dsn = f"postgresql://ledger:{PASSWORD}@db.example/provenance"
    with pytest.raises(InvalidInputError, match="pg_dump"):
        build_config(tmp_path / "data", "127.0.0.1:0", None, None, store=dsn, backup_dir=tmp_path / "backups")
    with pytest.raises(InvalidInputError, match="unknown store scheme"):
        build_config(tmp_path / "data", "127.0.0.1:0", None, None, store="mysql://ledger@db/provenance")
    config = build_config(tmp_path / "data", "127.0.0.1:0", None, None, store=dsn)
    assert config.store_spec.dsn == dsn and not config.store_spec.is_directory
