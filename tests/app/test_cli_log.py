"""The log commands end to end against a real server process (the CLI itself runs in process)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import main
from client.core import merkle
from client.core.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, sign_checkpoint
from client.core.note import Signer, Verifier
from client.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.servers import ServerProcess, running_server

ORIGIN = "cli.example/log"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("cli") / "data", ["--origin", ORIGIN]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def verifier(server: ServerProcess) -> Verifier:
    return Verifier.from_text((server.data_dir / "log.pub").read_text().strip())


def append(capfd: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path, *blobs: bytes,
           wait: bool = False) -> list[dict[str, object]]:
    files = []
    for i, blob in enumerate(blobs):
        f = tmp_path / f"blob{i}"
        f.write_bytes(blob)
        files.append(str(f))
    code, out, err = run(capfd, "log", "append", "--server", server.address, *(["--wait"] if wait else []), *files)
    assert code == EXIT_OK, err
    return lines(out)


def test_log_key_from_server_and_data_dir(capfd: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    code, from_server, _ = run(capfd, "log-key", "--server", server.address)
    assert code == EXIT_OK
    code, from_data, _ = run(capfd, "log-key", "--data", str(server.data_dir))
    assert code == EXIT_OK
    assert from_server == from_data == verifier(server).text() + "\n"
    assert Verifier.from_text(from_server.strip()).name == ORIGIN


def test_checkpoint_prints_the_note_exactly(capfd: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    code, out, _ = run(capfd, "checkpoint", "--server", server.address)
    assert code == EXIT_OK
    with server.client() as c:
        assert out.encode() == c.checkpoint()
    assert open_checkpoint(out.encode(), verifier(server)).origin == ORIGIN


def test_append_wait_prints_verifiable_proofs(
    capfd: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path
) -> None:
    blobs = [b"alpha", b"beta", b"gamma"]
    rows = append(capfd, server, tmp_path, *blobs, wait=True)
    assert len(rows) == 3
    for blob, row in zip(blobs, rows, strict=True):
        assert row["leaf_hash"] == b64(merkle.leaf_hash(blob))
        cp = open_checkpoint(str(row["checkpoint"]).encode(), verifier(server))
        proof = [base64.b64decode(h) for h in row["inclusion_proof"]]  # type: ignore[union-attr]
        merkle.verify_inclusion(int(row["index"]), cp.size, merkle.leaf_hash(blob), proof, cp.root)  # type: ignore[call-overload]
    plain = append(capfd, server, tmp_path, b"delta")
    assert set(plain[0]) >= {"index", "leaf_hash"} and "inclusion_proof" not in plain[0]


def test_entries_inclusion_consistency(
    capfd: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path
) -> None:
    rows = append(capfd, server, tmp_path, b"one", b"two", b"three", wait=True)
    first = int(rows[0]["index"])  # type: ignore[call-overload]
    code, out, _ = run(capfd, "log", "entries", "--server", server.address, "--start", str(first),
                       "--end", str(first + 3))
    assert code == EXIT_OK
    assert [(r["index"], r["entry"]) for r in lines(out)] == [
        (first + i, b64(b)) for i, b in enumerate([b"one", b"two", b"three"])
    ]

    cp = open_checkpoint(str(rows[0]["checkpoint"]).encode(), verifier(server))
    leaf = merkle.leaf_hash(b"two")
    for how in (["--index", str(first + 1)], ["--leaf-hash", leaf.hex()], ["--leaf-hash", b64(leaf)]):
        code, out, err = run(capfd, "log", "inclusion", "--server", server.address, *how, "--size", str(cp.size))
        assert code == EXIT_OK, err
        (p,) = lines(out)
        assert p["tree_size"] == cp.size and p["index"] == first + 1 and p["leaf_hash"] == b64(leaf)
        proof = [base64.b64decode(h) for h in p["proof"]]  # type: ignore[attr-defined]
        merkle.verify_inclusion(first + 1, cp.size, leaf, proof, cp.root)

    append(capfd, server, tmp_path, b"four")
    with server.client() as c:
        new = open_checkpoint(c.checkpoint(), verifier(server))
    code, out, _ = run(capfd, "log", "consistency", "--server", server.address, "--from", str(cp.size),
                       "--to", str(new.size))
    assert code == EXIT_OK
    (c_,) = lines(out)
    assert (c_["old_size"], c_["new_size"]) == (cp.size, new.size)
    merkle.verify_consistency(cp.size, new.size, [base64.b64decode(h) for h in c_["proof"]],  # type: ignore[attr-defined]
                              cp.root, new.root)


def test_errors_exit_codes(capfd: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    code, _, err = run(capfd, "log", "inclusion", "--server", server.address, "--index", str(1 << 40))
    assert code == EXIT_USAGE and "OUT_OF_RANGE" in err
    code, _, err = run(capfd, "log", "inclusion", "--server", server.address, "--leaf-hash", "zz")
    assert code == EXIT_USAGE


def test_audit_trust_on_first_use_then_consistency(
    capfd: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path, state_dir: Path
) -> None:
    append(capfd, server, tmp_path, b"audit me")
    code, out, err = run(capfd, "audit", "--server", server.address)
    assert code == EXIT_OK, out + err
    first = lines(out)[0]
    assert first["ok"] is True and first["previous_size"] is None
    state = json.loads((state_dir / "audit-state.json").read_text())
    assert state["logs"][ORIGIN]["verifier_key"] == verifier(server).text()

    append(capfd, server, tmp_path, b"and me")
    code, out, err = run(capfd, "audit", "--server", server.address, "--log-key", verifier(server).text())
    assert code == EXIT_OK, out + err
    second = lines(out)[0]
    assert second["previous_size"] == first["tree_size"]
    assert int(second["tree_size"]) > int(first["tree_size"])  # type: ignore[call-overload]


def test_audit_detects_a_fork_and_prints_evidence(
    capfd: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path
) -> None:
    append(capfd, server, tmp_path, b"fork 1", b"fork 2", b"fork 3")
    # A checkpoint the log "signed" for a tree that is not a prefix of the one it serves now.
    signer = Signer.from_private_text((server.data_dir / "log.key").read_text().strip())
    forked = Checkpoint(ORIGIN, 2, merkle.leaf_hash(b"not the real root"))
    note = sign_checkpoint(forked, signer)
    state = tmp_path / "forked.json"
    state.write_text(json.dumps({"version": 1, "logs": {ORIGIN: {
        "verifier_key": signer.verifier().text(), "size": 2, "root": b64(forked.root), "note": note.decode()}}}))
    before = state.read_text()
    code, out, err = run(capfd, "audit", "--server", server.address, "--state", str(state))
    assert code == EXIT_FAILED, out + err
    evidence = lines(out)[0]
    assert evidence["ok"] is False
    assert evidence["old_checkpoint"] == note.decode()
    assert open_checkpoint(str(evidence["new_checkpoint"]).encode(), signer.verifier()).size > 2
    assert isinstance(evidence["proof"], list) and evidence["proof"]
    assert state.read_text() == before, "a failed audit must not move the trusted state"


def test_audit_refuses_a_wrong_pinned_key(capfd: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    other = Signer.generate(ORIGIN).verifier().text()
    code, _, err = run(capfd, "audit", "--server", server.address, "--log-key", other)
    assert code == EXIT_FAILED, err


def test_serve_refuses_another_origin_for_the_data_dir(
    capfd: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    code, _, err = run(capfd, "serve", "--data", str(server.data_dir), "--listen", "127.0.0.1:1",
                       "--origin", "someone.else/log")
    assert code == EXIT_USAGE
    assert "refusing" in err and ORIGIN in err


def test_state_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from client.cli.log_cmds import state_path

    monkeypatch.delenv("PROVENANCE_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_path(None) == tmp_path / ".config" / "provenance" / "audit-state.json"
    assert os.fspath(state_path(tmp_path / "x.json")) == os.fspath(tmp_path / "x.json")


def test_audit_catches_a_root_that_does_not_match_the_entries(capfd: pytest.CaptureFixture[str]) -> None:
    from tests.fake_log import FakeLog
    from tests.inproc import serving

    class LyingLog(FakeLog):
        def latest(self):  # type: ignore[no-untyped-def]
            honest = super().latest().checkpoint
            cp = Checkpoint(honest.origin, honest.size, merkle.leaf_hash(b"a root of some other tree"))
            return SignedCheckpoint(cp, sign_checkpoint(cp, self.signer))

    log = LyingLog()
    log.submit([b"x", b"y", b"z"])
    with serving(log) as (address, _):
        code, out, err = run(capfd, "audit", "--server", address)
    assert code == EXIT_FAILED, out + err
    evidence = lines(out)[0]
    assert evidence["ok"] is False and "different root" in str(evidence["error"])
    honest_root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in (b"x", b"y", b"z")])
    assert evidence["computed_root"] == b64(honest_root)
