"""Cosignatures against aics-witness / aics-tlog, an independent C2SP implementation (PyPI, Python >= 3.12).

- Vectors as data (testdata/cosignatures.json, made by aics-tlog's signer): they verify with our
  verify_cosignature and the policy, and our signer, given the same seed, writes the same bytes.
- Live (tests/references.require_aics_witness: skipped off CI, failing under CI=true): aics-tlog signs the
  vectors again byte for byte; aics-tlog's verify_checkpoint accepts notes cosigned by our signer and by our
  witness server, and refuses a tampered line as we do; a running aics-witness cosigns a checkpoint of ours
  and we verify its line.

Regenerate the vectors (only if the checkpoints change), with aics-tlog alone:
``.venv-witness/bin/python tests/witness/aics_check.py --vectors > tests/witness/testdata/cosignatures.json``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from references import require_aics_witness
from witness_kit import ToyLog, post

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.cosignature import CosignerKey, WitnessSigner, verify_cosignature
from client.core.witness_policy import WitnessPolicy
from client.errors import SignatureError

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "testdata" / "cosignatures.json"
AICS_CHECK = HERE / "aics_check.py"
LOG = ToyLog().grow(9)


def _checkpoints() -> list[Checkpoint]:
    return [Checkpoint(LOG.origin, 9, LOG.root(9)),
            Checkpoint(LOG.origin, 0, LOG.root(0)),
            Checkpoint(LOG.origin, 5, LOG.root(5), ("extension line one", "two"))]


def _aics(jobs: list[dict[str, Any]], python: str) -> list[dict[str, Any]]:
    out = subprocess.run([python, str(AICS_CHECK)], input=json.dumps(jobs), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    answers: list[dict[str, Any]] = json.loads(out.stdout)
    return answers


def _aics_python() -> str:
    return str(Path(require_aics_witness()).parent / "python")


def _vectors() -> list[dict[str, Any]]:
    doc: dict[str, Any] = json.loads(VECTORS.read_text())
    vectors: list[dict[str, Any]] = doc["vectors"]
    return vectors


# -- vectors as data ---------------------------------------------------------------------------


def test_aics_vectors_verify_with_ours() -> None:
    vectors = _vectors()
    assert len(vectors) == 3
    for v in vectors:
        key = CosignerKey.from_text(v["witness_vkey"])
        note = v["checkpoint_note"].encode()
        assert verify_cosignature(key, note + v["cosignature_line"].encode()) == v["timestamp"]
        policy = WitnessPolicy.parse(f"log {v['log_vkey']}\nwitness A {v['witness_vkey']}\nquorum A\n")
        r = policy.evaluate(note + v["cosignature_line"].encode())
        assert r.satisfied and r.verified == ("A",) and r.logs == (LOG.origin,) and r.unknown_lines == ()


def test_our_signer_writes_the_same_bytes_as_aics() -> None:
    for v, cp in zip(_vectors(), _checkpoints(), strict=True):
        signer = WitnessSigner("aics.test/w1", bytes.fromhex(v["seed"]))
        assert signer.key().text() == v["witness_vkey"]
        assert v["checkpoint_note"].encode() == sign_checkpoint(cp, LOG.signer)
        assert signer.cosign(cp.to_text().encode(), v["timestamp"]) == v["cosignature_line"]


def test_an_aics_line_for_another_checkpoint_fails_with_ours() -> None:
    a, b = _vectors()[:2]
    with pytest.raises(SignatureError):
        verify_cosignature(CosignerKey.from_text(a["witness_vkey"]),
                           b["checkpoint_note"].encode() + a["cosignature_line"].encode())


# -- live against aics ------------------------------------------------------------------------


@pytest.mark.interop
def test_aics_makes_the_same_vectors_again() -> None:
    out = subprocess.run([_aics_python(), str(AICS_CHECK), "--vectors"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vectors"] == _vectors()


@pytest.mark.interop
def test_aics_verifies_our_cosignatures_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    ours = WitnessSigner("ours.test/w1", bytes(range(7, 39)))
    jobs = []
    notes = []
    for i, cp in enumerate(_checkpoints()):
        note = sign_checkpoint(cp, LOG.signer) + ours.cosign(cp.to_text().encode(), 1_700_000_100 + i).encode()
        notes.append(note)
        jobs.append({"cmd": "verify", "note": note.decode(), "log_vkey": LOG.signer.verifier().text(),
                     "witness_vkeys": [ours.key().text()], "quorum": 1})
    # A line of ours with one flipped signature bit: both sides must refuse it.
    head, _, line = notes[0][:-1].rpartition(b"\n")
    name, b64 = line.rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    tampered = head + b"\n" + name + b" " + base64.b64encode(bytes(raw)) + b"\n"
    jobs.append({**jobs[0], "note": tampered.decode()})
    answers = _aics(jobs, _aics_python())
    for a in answers[:-1]:
        assert a["ok"] and a["log_ok"] and a["witnesses"] == ["ours.test/w1"], a
    assert not answers[-1]["ok"]
    with pytest.raises(SignatureError):
        verify_cosignature(ours.key(), tampered)


@pytest.mark.interop
def test_aics_verifies_what_our_witness_server_answers(tmp_path: Path) -> None:
    from ledger.http.server import HttpServer
    from ledger.witness.http import build_router
    from ledger.witness.state import WitnessState

    signer = WitnessSigner("ours.test/server", bytes(range(3, 35)))
    with WitnessState.open(tmp_path / "w", create=True) as state:
        state.add_log(LOG.origin, LOG.signer.verifier().text())
        server = HttpServer("127.0.0.1:0", build_router(state, [signer]))
        port = server.start()
        try:
            status, body, _ = post(f"http://127.0.0.1:{port}/add-checkpoint", LOG.request(0, 9))
        finally:
            server.stop()
    assert status == 200
    note = LOG.note(9) + body
    [a] = _aics([{"cmd": "verify", "note": note.decode(), "log_vkey": LOG.signer.verifier().text(),
                  "witness_vkeys": [signer.key().text()], "quorum": 1}], _aics_python())
    assert a["ok"] and a["witnesses"] == ["ours.test/server"], a


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.interop
def test_aics_witness_cosigns_our_checkpoint_and_we_verify_it(tmp_path: Path) -> None:
    exe = require_aics_witness()
    config = tmp_path / "witness.json"
    port = _free_port()
    init = subprocess.run([exe, "init", "--config", str(config), "--name", "aics.test/live", "--listen",
                           f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert init.returncode == 0, init.stderr
    vkey = init.stdout.split()[0]
    added = subprocess.run([exe, "add-log", "--config", str(config), "--origin", LOG.origin, "--vkey",
                            LOG.signer.verifier().text()], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert added.returncode == 0, added.stderr
    proc = subprocess.Popen([exe, "serve", "--config", str(config)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "aics-witness did not start"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/add-checkpoint"
        status, first, _ = post(url, LOG.request(0, 5))
        assert status == 200
        assert post(url, LOG.request(0, 9))[:2] == (409, b"5\n")  # the same answer ours gives
        status, body, _ = post(url, LOG.request(5, 9))
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(10)
    key = CosignerKey.from_text(vkey)
    assert verify_cosignature(key, LOG.note(5) + first) is not None
    assert verify_cosignature(key, LOG.note(9) + body) is not None
    policy = WitnessPolicy.parse(f"log {LOG.signer.verifier().text()}\nwitness aics {vkey}\nquorum aics\n")
    assert policy.evaluate(LOG.note(9) + body).verified == ("aics",)
    with pytest.raises(SignatureError):
        verify_cosignature(key, LOG.note(5) + body)  # its line for 9 is not one for 5
