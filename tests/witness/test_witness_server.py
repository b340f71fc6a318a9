"""``provenance witness`` end to end: a throwaway witness process on a loopback port, restarted and killed."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from witness_kit import ToyLog, WitnessProcess, get, provenance

from client.core.cosignature import CosignerKey, verify_cosignature
from client.core.note import open_note


@pytest.fixture()
def witness_dir(tmp_path: Path) -> tuple[Path, Path, ToyLog]:
    key, data = tmp_path / "w.key", tmp_path / "data"
    out = provenance("witness", "init", "--key", str(key), "--name", "witness.test/w1")
    assert out.returncode == 0, out.stderr
    CosignerKey.from_text(out.stdout.strip())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    log = ToyLog().grow(40)
    out = provenance("witness", "add-log", "--data", str(data), "--vkey", log.signer.verifier().text())
    assert out.returncode == 0 and log.origin in out.stdout, out.stderr
    return key, data, log


def test_protocol_codes_restart_and_evidence(witness_dir: tuple[Path, Path, ToyLog], tmp_path: Path) -> None:
    key, data, log = witness_dir
    w = WitnessProcess(key, data).start()
    try:
        wkey = CosignerKey.from_text(w.vkey)
        status, body, _ = w.add(ToyLog(origin="example.com/unknown").grow(3).request(0, 3))
        assert status == 404
        from client.core.note import Signer
        stranger = Signer.from_seed(log.origin, bytes(32))
        assert w.add(log.request(0, 5, note=log.note(5, stranger)))[0] == 403

        status, body, _ = w.add(log.request(0, 5))
        assert status == 200 and verify_cosignature(wkey, log.note(5) + body) is not None
        status, body, _ = w.add(log.request(5, 20))
        assert status == 200
        # Rollback: an older size is answered with the held one.
        assert w.add(log.request(5, 8)) == (409, b"20\n", "text/x.tlog.size")
        # Fork: same size, another root, signed by the log's key.
        fork = log.forked(12)
        assert w.add(fork.request(20, 20))[0] == 422
        assert w.add(fork.request(20, 30))[0] == 422
        # Monitoring: the latest cosigned checkpoint, log signature and cosignature.
        origin_hash = hashlib.sha256(log.origin.encode()).hexdigest()
        code, note = get(f"{w.url}/{origin_hash}/checkpoint")
        assert code == 200 and note.startswith(log.note(20).split(b"\n\n")[0])
        assert open_note(note, [log.signer.verifier()]).text.startswith(log.origin)
        assert verify_cosignature(wkey, note) is not None
        assert get(f"{w.url}/{'0' * 64}/checkpoint")[0] == 404
        assert get(f"{w.url}/add-checkpoint")[0] == 405
    finally:
        assert w.stop() == 0

    # The state and the evidence survive a restart.
    out = provenance("witness", "status", "--data", str(data))
    assert "size 20 cosigned" in out.stdout and "evidence kept: 2" in out.stdout, out.stdout + out.stderr
    w = WitnessProcess(key, data).start()
    try:
        assert w.add(log.request(0, 25)) == (409, b"20\n", "text/x.tlog.size")
        assert w.add(log.forked(12).request(20, 20))[0] == 422
        assert w.add(log.request(20, 25))[0] == 200
    finally:
        w.stop()
    out = provenance("witness", "evidence", "--data", str(data), "--out", str(tmp_path / "ev"))
    assert out.returncode == 0 and "wrote 3 evidence" in out.stdout
    files = sorted((tmp_path / "ev").iterdir())
    assert len(files) == 3
    first = files[0].read_bytes()
    assert b"reason: fork" in first and log.forked(12).note(20) in first and log.note(20).split(b"\n\n")[0] in first


def test_kill_9_loses_no_cosigned_size(witness_dir: tuple[Path, Path, ToyLog]) -> None:
    key, data, log = witness_dir
    log.grow(400)
    w = WitnessProcess(key, data).start()
    acked: list[int] = []
    killed = threading.Event()

    def feed() -> None:
        size = 0
        for n in range(1, 401):
            try:
                status, _, _ = w.add(log.request(size, n))
            except OSError:
                return  # the witness is gone
            if status != 200:
                return
            size = n
            acked.append(n)
            if n == 60:
                killed.set()

    t = threading.Thread(target=feed)
    t.start()
    assert killed.wait(60)
    w.kill()
    t.join(30)
    assert acked, "no checkpoint was cosigned before the kill"
    w = WitnessProcess(key, data).start()
    try:
        status, body, _ = w.add(log.request(0, 400))
        assert status == 409
        held = int(body)
        # Every acknowledged cosignature is on disk; at most the one in flight was also stored.
        assert acked[-1] <= held <= acked[-1] + 1
    finally:
        w.stop()


def test_serve_refuses_missing_state_another_key_and_an_open_key(tmp_path: Path,
                                                                witness_dir: tuple[Path, Path, ToyLog]) -> None:
    key, data, _ = witness_dir
    out = provenance("witness", "serve", "--key", str(key), "--data", str(tmp_path / "nothing"), "--listen",
                     "127.0.0.1:0")
    assert out.returncode == 3 and "must be retired" in out.stderr
    WitnessProcess(key, data).start().stop()  # binds the state to this key
    other = tmp_path / "other.key"
    assert provenance("witness", "init", "--key", str(other), "--name", "witness.test/w2").returncode == 0
    out = provenance("witness", "serve", "--key", str(other), "--data", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 2 and "belongs to key witness.test/w1+" in out.stderr
    os.chmod(other, 0o644)
    out = provenance("witness", "serve", "--key", str(other), "--data", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 2 and "chmod 600" in out.stderr
    out = provenance("witness", "init", "--key", str(key), "--name", "witness.test/w1")
    assert out.returncode == 2 and "never overwritten" in out.stderr
