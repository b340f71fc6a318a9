"""Go's tlog and line reader on what issue 15 point 7 changed: empty entries and long tlog-proof lines.

- a zero-byte entry, logged and proved by our log, is checked by Go's ``tlog.CheckRecord`` with Go's
  own ``tlog.RecordHash`` of the empty record (RFC 9162 allows an empty leaf);
- every tlog-proof we write, with an ``extra`` line as long as we allow and in the hash-only form of a
  record too large for one, reads with Go's ``bufio.Scanner`` (64 KiB lines), which stops on the
  extra line of such a record written whole.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from references import require_go_sumdb
from registry_kit import open_env

from client.core import merkle
from client.core.bundle import format_tlog_proof
from client.core.bundle.tlog_proof import TlogProof, extra_fits
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier

pytestmark = pytest.mark.interop

GOCHECK_SRC = Path(__file__).parent / "gocheck"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class GoCheck:
    binary: Path

    def one(self, request: dict[str, Any]) -> dict[str, Any]:
        """Go's answer to one request (see gocheck/main.go)."""
        done = subprocess.run([str(self.binary)], input=json.dumps([request]).encode(), capture_output=True,
                              check=False, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        return answers[0]


@pytest.fixture(scope="module")
def go(tmp_path_factory: pytest.TempPathFactory) -> GoCheck:
    go_bin, gopath = require_go_sumdb()
    out = tmp_path_factory.mktemp("gocheck-small")
    env = {**os.environ, "GOPATH": str(gopath), "GO111MODULE": "off", "GOFLAGS": "",
           "GOCACHE": str(out / "cache"), "CGO_ENABLED": "0"}
    built = subprocess.run([go_bin, "build", "-o", str(out / "gocheck"), "."], cwd=GOCHECK_SRC, env=env,
                           capture_output=True, check=False, timeout=600)
    assert built.returncode == 0, f"building gocheck failed:\n{built.stderr.decode()}"
    return GoCheck(out / "gocheck")


def test_go_checks_the_proof_of_a_zero_byte_entry(go: GoCheck) -> None:
    env = open_env()
    try:
        env.log.add([b"first"])
        env.log.add([b""])
        env.log.add([b"third", b"fourth"])
        size = env.log.size
        cp = open_checkpoint(env.log.latest().note, Verifier.from_text(env.log_key))
        index = 1
        assert env.log.entries(index, index + 1) == [b""]
        go_hash = base64.b64decode(go.one({"cmd": "record_hash", "leaf": b64(b"")})["root"])
        assert go_hash == merkle.leaf_hash(b"")
        proof = env.log.inclusion_proof(index, size)
        answer = go.one({"cmd": "check_record", "index": index, "size": size, "leaf": b64(go_hash),
                         "root": b64(cp.root), "proof": [b64(h) for h in proof]})
        assert answer["ok"], answer
    finally:
        env.close()


def _lines_go_reads(go: GoCheck, text: bytes) -> dict[str, object]:
    return go.one({"cmd": "scan_lines", "note": b64(text)})


def test_go_reads_every_tlog_proof_we_write(go: GoCheck) -> None:
    proof = tuple(bytes([i]) * 32 for i in range(5))
    checkpoint = b"example.com/log\n9\n" + base64.b64encode(b"\x01" * 32) + b"\n\n\xe2\x80\x94 sig\n"
    n = max(n for n in range(49_000, 49_200) if extra_fits(b"\x00" * n))
    longest = format_tlog_proof(TlogProof(b"\x00" * n, 3, proof, checkpoint))
    answer = _lines_go_reads(go, longest)
    assert answer["ok"], answer
    assert answer["tree_size"] == longest.count(b"\n")
    too_big = b"\x00" * 80_000
    assert not extra_fits(too_big)
    hash_only = format_tlog_proof(TlogProof(None, 3, proof, checkpoint))
    assert _lines_go_reads(go, hash_only)["ok"]
    # What the fix avoids: the same record written whole stops Go's reader.
    whole = b"c2sp.org/tlog-proof@v1\nextra " + base64.b64encode(too_big) + hash_only[len(b"c2sp.org/tlog-proof@v1"):]
    answer = _lines_go_reads(go, whole)
    assert not answer["ok"] and "too long" in str(answer["err"]), answer
