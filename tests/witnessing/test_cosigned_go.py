"""Go's golang.org/x/mod/sumdb/note opens the checkpoints a witnessed ``serve`` hands out.

The checker is W1's tests/interop/gocheck/cosig (GOPATH mode against Debian's
golang-golang-x-mod-dev): the log's key a plain note verifier, each witness key a note.Verifier
checking Ed25519 over the cosignature/v1 message. Here the cosignatures come from the running
witnesses (aics-witness and ours), gathered by the log, served over gRPC and carried by a bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.references import REPO, require_go_sumdb
from tests.witnessing.conftest import Witnessed, WitnessPool

pytestmark = pytest.mark.interop

SRC = REPO / "tests" / "interop" / "gocheck" / "cosig"


@pytest.fixture(scope="module")
def go_cosig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go_bin, gopath = require_go_sumdb()
    if not (SRC / "main.go").exists():
        pytest.skip("the Go cosignature checker (tests/interop/gocheck/cosig) is not on this tree")
    out = tmp_path_factory.mktemp("gocosig-witnessing")
    env = {**os.environ, "GOPATH": str(gopath), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    env.setdefault("GOCACHE", str(Path.home() / ".cache/go-build"))  # a warm cache builds in well under a second
    built = subprocess.run([go_bin, "build", "-o", str(out / "cosig"), "."], cwd=SRC, env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return out / "cosig"


def test_go_opens_the_served_cosigned_checkpoint(go_cosig: Path, witnessed: Witnessed,
                                                 witness_pool: WitnessPool) -> None:
    with witnessed.client() as c:
        got = c.add_entries([b"for go"], wait_for_cosignatures=True)
    assert got.checkpoint is not None
    vkeys = [w.vkey for w in witness_pool.pair]
    req = {"note": got.checkpoint.decode(), "log_vkey": witnessed.signer.verifier().text(), "witness_vkeys": vkeys}
    tampered = dict(req, note=got.checkpoint.decode().replace("\n\n", "\n\n", 1)[:-3] + "AA\n")
    out = subprocess.run([str(go_cosig)], input=json.dumps([req, tampered]), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    ok, bad = json.loads(out.stdout)
    names = [w.key.name for w in witness_pool.pair]
    assert ok["ok"], ok
    assert ok["verified"] == [witnessed.signer.name, *names] and ok["unverified"] == []
    assert set(ok["timestamps"]) == set(names)
    assert not bad["ok"] or names[-1] not in bad["verified"]  # the mangled last line does not verify
