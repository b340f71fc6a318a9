"""Go's golang.org/x/mod/sumdb/note opens notes cosigned by us (tests/interop/gocheck/cosig).

The Go program knows only the specs: the log's key is a plain note verifier, each witness key a
note.Verifier that checks Ed25519 over the cosignature/v1 message. Built in GOPATH mode against
Debian's golang-golang-x-mod-dev (tests/references.require_go_sumdb: skipped off CI, failing under CI=true).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from references import require_go_sumdb
from witness_kit import ToyLog

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.cosignature import WitnessSigner, verify_cosignature
from client.errors import SignatureError
from ledger.witness.core import LogConfig, add_checkpoint

pytestmark = pytest.mark.interop

SRC = Path(__file__).resolve().parents[1] / "interop" / "gocheck" / "cosig"
LOG = ToyLog().grow(12)
W1 = WitnessSigner("witness.test/w1", bytes(range(11, 43)))
W2 = WitnessSigner("witness.test/w2", bytes(range(12, 44)))


@pytest.fixture(scope="module")
def go_cosig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go_bin, gopath = require_go_sumdb()
    out = tmp_path_factory.mktemp("gocosig")
    env = {**os.environ, "GOPATH": str(gopath), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           "GOCACHE": str(out / "cache")}
    built = subprocess.run([go_bin, "build", "-o", str(out / "cosig"), "."], cwd=SRC, env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return out / "cosig"


def _go(binary: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = subprocess.run([str(binary)], input=json.dumps(requests), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answers: list[dict[str, Any]] = json.loads(out.stdout)
    return answers


def _req(note: bytes, *witnesses: WitnessSigner) -> dict[str, Any]:
    return {"note": note.decode(), "log_vkey": LOG.signer.verifier().text(),
            "witness_vkeys": [w.key().text() for w in witnesses]}


def _flip_last_line(note: bytes) -> bytes:
    head, _, line = note[:-1].rpartition(b"\n")
    name, b64 = line.rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    return head + b"\n" + name + b" " + base64.b64encode(bytes(raw)) + b"\n"


def test_go_verifies_our_cosigned_notes(go_cosig: Path) -> None:
    cps = [Checkpoint(LOG.origin, 12, LOG.root(12)), Checkpoint(LOG.origin, 0, LOG.root(0)),
           Checkpoint(LOG.origin, 7, LOG.root(7), ("an extension line",))]
    reqs = []
    for i, cp in enumerate(cps):
        body = cp.to_text().encode()
        note = sign_checkpoint(cp, LOG.signer) + W1.cosign(body, 1_700_000_000 + i).encode() \
            + W2.cosign(body, 1_800_000_000).encode()
        reqs.append(_req(note, W1, W2))
    for a in _go(go_cosig, reqs):
        assert a["ok"], a
        assert a["verified"] == [LOG.origin, "witness.test/w1", "witness.test/w2"] and a["unverified"] == []
    assert _go(go_cosig, reqs[:1])[0]["timestamps"] == {"witness.test/w1": 1_700_000_000,
                                                        "witness.test/w2": 1_800_000_000}


def test_go_verifies_what_our_witness_core_answers(go_cosig: Path) -> None:
    logs = {LOG.origin: LogConfig(LOG.origin, (LOG.signer.verifier(),))}
    d = add_checkpoint(logs, {}, LOG.request(0, 12), 1_750_000_000, [W1, W2])
    assert d.status == 200 and d.new_state is not None
    [a] = _go(go_cosig, [_req(LOG.note(12) + d.body, W1, W2)])
    assert a["ok"] and a["verified"] == [LOG.origin, "witness.test/w1", "witness.test/w2"], a
    # The note the witness serves to monitors opens in Go too.
    [a] = _go(go_cosig, [_req(d.new_state.note, W1, W2)])
    assert a["ok"] and len(a["verified"]) == 3, a


def test_go_and_we_refuse_the_same_bad_cosignatures(go_cosig: Path) -> None:
    body = Checkpoint(LOG.origin, 12, LOG.root(12)).to_text().encode()
    good = LOG.note(12) + W1.cosign(body, 5).encode()
    other = Checkpoint(LOG.origin, 11, LOG.root(11)).to_text().encode()
    cases = {
        "flipped bit": _flip_last_line(good),
        "line for another checkpoint": LOG.note(12) + W1.cosign(other, 5).encode(),
    }
    answers = _go(go_cosig, [_req(n, W1) for n in cases.values()])
    for (what, note), a in zip(cases.items(), answers, strict=True):
        assert not a["ok"] and "invalid signature" in a["err"], (what, a)
        with pytest.raises(SignatureError, match="does not verify"):
            verify_cosignature(W1.key(), note)
    # Without the witness's key Go ignores its line, as signed-note says (and as we do).
    [a] = _go(go_cosig, [_req(good)])
    assert a["ok"] and a["verified"] == [LOG.origin] and a["unverified"] == ["witness.test/w1"]
    assert verify_cosignature(W2.key(), good) is None
