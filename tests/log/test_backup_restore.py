"""Backup and restore of a real data directory, and the log key's continuity and rotation.

Backup is ``provenance backup`` (a RocksDB checkpoint of a stopped server's store) or,
online, SIGUSR1 to a server started with ``--backup-dir``; restore is starting
``provenance serve`` on the copy, then a full ``provenance audit``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.cli import main
from client.core import merkle
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from client.errors import SignatureError
from tests.servers import ServerProcess, running_server

ORIGIN = "backup.example/log"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Ran:
    """``provenance ARGS`` in this process (the commands here are short; a subprocess costs ~1 s of imports)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Ran(code, out.getvalue(), err.getvalue())


def _fill(srv: ServerProcess, n: int, tag: str) -> bytes:
    with srv.client() as c:
        for i in range(0, n, 50):
            result = c.add_entries([f"{tag} {j}".encode() for j in range(i, min(n, i + 50))],
                                   wait_for_checkpoint=True)
        assert result.checkpoint is not None
        return result.checkpoint


def test_backup_then_restore_and_audit(tmp_path: Path) -> None:
    data, copy = tmp_path / "data", tmp_path / "copy"
    with running_server(data, ["--origin", ORIGIN]) as srv:
        note = _fill(srv, 120, "entry")
        with srv.client() as c:
            entries = list(c.iter_entries(0, 120))
        running = cli("backup", "--data", str(data), "--out", str(copy))
        assert running.returncode != 0
        assert "in use, probably by a running server" in running.stderr, running.stderr
        assert not (copy / "log.rocksdb").exists()
        assert srv.stop() == 0

    done = cli("backup", "--data", str(data), "--out", str(copy), "--with-key")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tree_size"] == 120 and report["signed_size"] == 120 and report["key_included"]
    assert {"log.rocksdb", "origin", "log.pub", "log.key"} <= set(report["copied"])
    assert (copy / "log.key").stat().st_mode & 0o077 == 0, "the copied key is private from its first byte"
    assert (copy / "log.pub").read_text() == (data / "log.pub").read_text()

    again = cli("backup", "--data", str(data), "--out", str(copy))
    assert again.returncode != 0 and "not an empty directory" in again.stderr
    nokey = cli("backup", "--data", str(data), "--out", str(tmp_path / "nokey"))  # the key only when asked
    assert nokey.returncode == 0, nokey.stderr
    assert not (tmp_path / "nokey" / "log.key").exists() and json.loads(nokey.stdout)["key_included"] is False
    bad = cli("backup", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"))
    assert bad.returncode != 0 and "not a provenance data directory" in bad.stderr
    inside = cli("backup", "--data", str(data), "--out", str(data / "sub"))
    assert inside.returncode != 0 and "inside the data directory" in inside.stderr

    log_key = (data / "log.pub").read_text().strip()
    verifier = Verifier.from_text(log_key)
    old = open_checkpoint(note, verifier, ORIGIN)
    with running_server(copy) as restored:  # restore = serve the copy
        with restored.client() as c:
            assert list(c.iter_entries(0, 120)) == entries
            now = open_checkpoint(c.checkpoint(), verifier, ORIGIN)
            assert (now.size, now.root) == (old.size, old.root)
            c.add_entries([b"after restore"], wait_for_checkpoint=True)
        audit = cli("audit", "--server", restored.address, "--log-key", log_key,
                    "--state", str(tmp_path / "audit.json"))
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout)["tree_size"] == 121
        assert restored.stop() == 0


def test_lost_key_is_refused_and_rotation_keeps_old_checkpoints_verifiable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    state = tmp_path / "audit-state.json"
    with running_server(data, ["--origin", ORIGIN]) as srv:
        old_note = _fill(srv, 10, "before")
        assert cli("audit", "--server", srv.address, "--state", str(state)).returncode == 0  # trusts the old key
        assert srv.stop() == 0
    old_key = (data / "log.pub").read_text().strip()
    (data / "log.key").rename(tmp_path / "old.key")

    srv = ServerProcess(data)
    with pytest.raises(RuntimeError, match="signing key .* is missing; restore it from a backup, or pass --rotate-key"):
        srv.start()
    assert not (data / "log.key").exists(), "no new key is made behind the operator's back"

    with running_server(data, ["--rotate-key"]) as srv:
        with srv.client() as c:
            new_key = c.log_info().verifier_key
            assert new_key != old_key
            new_note = _fill(srv, 5, "after")
            old = open_checkpoint(old_note, Verifier.from_text(old_key), ORIGIN)  # still verifies with the old key
            new = open_checkpoint(new_note, Verifier.from_text(new_key), ORIGIN)
            with pytest.raises(SignatureError):
                open_checkpoint(new_note, Verifier.from_text(old_key), ORIGIN)
            # The handover is provable: the new key's tree extends the old key's tree.
            proof = c.consistency_proof(old.size, new.size).hashes
            merkle.verify_consistency(old.size, new.size, list(proof), old.root, new.root)
        # An auditor who trusted the old key re-pins only with the new key from the operator, and only
        # because the new key's tree extends the last checkpoint it trusted under the old one.
        refused = cli("audit", "--server", srv.address, "--state", str(state), "--log-key", new_key)
        assert refused.returncode != 0 and "--accept-key-rotation" in refused.stderr + refused.stdout
        unpinned = cli("audit", "--server", srv.address, "--state", str(state), "--accept-key-rotation")
        assert unpinned.returncode == 2 and "needs --log-key" in unpinned.stderr
        rotated = cli("audit", "--server", srv.address, "--state", str(state), "--log-key", new_key,
                      "--accept-key-rotation")
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["previous_size"] == 10 and new_key in state.read_text()
        assert cli("audit", "--server", srv.address, "--state", str(state)).returncode == 0  # the new key is kept
        assert srv.stop() == 0
    assert (data / "log-keys").read_text().split() == [old_key, new_key]
    history = cli("log-key", "--data", str(data), "--all")
    assert history.returncode == 0 and history.stdout.split() == [old_key, new_key]
    assert cli("log-key", "--data", str(data)).stdout.strip() == new_key

    # Back to the old key without --rotate-key: refused (log.pub names the new one).
    (data / "log.key").unlink()
    (tmp_path / "old.key").rename(data / "log.key")
    srv = ServerProcess(data)
    with pytest.raises(RuntimeError, match="differs from .*log.pub"):
        srv.start()


def test_online_backup_while_writing(tmp_path: Path) -> None:
    """SIGUSR1 copies the live store while writers keep going; the copy restores to a prefix of the log."""
    data, backups = tmp_path / "data", tmp_path / "backups"
    with running_server(data, ["--origin", ORIGIN, "--backup-dir", str(backups)]) as srv:
        _fill(srv, 100, "first")
        stop = threading.Event()

        def writer() -> None:
            with srv.client() as c:
                i = 0
                while not stop.is_set():
                    c.add_entries([f"during {i}".encode()])
                    i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 20
            while not [p for p in backups.glob("backup-*") if not p.name.endswith(".partial")]:
                assert time.monotonic() < deadline, srv.log_text()
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(20)
        with srv.client() as c:
            final_size = open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key)).size
            everything = list(c.iter_entries(0, final_size))
        assert srv.stop() == 0
    (copy,) = [p for p in backups.iterdir() if not p.name.endswith(".partial")]
    assert "online backup written" in srv.log_text()
    assert not (copy / "log.key").exists(), "routine backups leave the key out"
    shutil.copy2(data / "log.key", copy / "log.key")  # restore: the key comes from its own, safer backup
    with running_server(copy) as restored, restored.client() as c:
        size = open_checkpoint(c.checkpoint(), Verifier.from_text((data / "log.pub").read_text().strip())).size
        assert 100 <= size <= final_size
        assert list(c.iter_entries(0, size)) == everything[:size], "the copy is a prefix of the live log"
