"""The registry's other CLI commands against a real server: identity rotate/revoke, attest, dispute, show, find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import running_server

from client.api import Registrar
from client.core.records import RecordSigner
from tests.cli_kit import cli

pytestmark = pytest.mark.slow


def test_identity_claims_and_queries(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    k1, k2, aud = tmp_path / "k1", tmp_path / "k2", tmp_path / "aud"
    for k in (k1, k2, aud):
        cli(capsys, "keygen", "--out", str(k))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "weights.bin").write_bytes(b"\x01" * 5000)
    with running_server(tmp_path / "data") as srv:
        s = ["--server", srv.address]
        cli(capsys, "identity", "register", "lab", "--key", str(k1), *s)
        cli(capsys, "identity", "register", "auditor", "--key", str(aud), *s)
        base = json.loads(cli(capsys, "register", "checkpoint", str(tmp_path / "w"), "--name", "m", "--step", "1",
                              "--meta", "lr=3e-4", "--config-digest", "sha256:" + "ab" * 32,
                              "--key", str(k1), "--json", *s))
        cli(capsys, "identity", "rotate", "lab", "--key", str(k1), "--new-key", str(k2), *s)
        out = cli(capsys, "register", "checkpoint", str(tmp_path / "w"), "--name", "m", "--step", "2",
                  "--key", str(k1), *s, code=1)
        assert "rotated out" in out and "PERMISSION_DENIED" in out
        child = json.loads(cli(capsys, "register", "checkpoint", str(tmp_path / "w"), "--name", "m", "--step", "2",
                               "--parent", "m@1:continued-training", "--key", str(k2), "--json", *s))
        att = json.loads(cli(capsys, "attest", child["id"], "descends-from", "m@1", "--summary", "same weights",
                             "--key", str(aud), "--json", *s))
        cli(capsys, "dispute", att["id"], "--reason", "step 2 was retrained", "--key", str(k2), *s)
        shown = cli(capsys, "show", "m@2", *s)
        assert "claim at index" in shown and "descends-from" in shown
        shown_json = json.loads(cli(capsys, "show", "@" + str(base["index"]), "--json", *s))
        assert shown_json["record"]["metadata"] == {"lr": "3e-4"}
        assert shown_json["signer"] == {"name": "lab", "status": "retired"}
        found = json.loads(cli(capsys, "find", "blake3:" + shown_json["record"]["manifest"], "--json", *s))
        assert [m["id"] for m in found] == [base["id"], child["id"]]  # same bytes registered twice
        cli(capsys, "identity", "revoke", "lab", "--key", str(k2), *s)
        out = cli(capsys, "register", "checkpoint", str(tmp_path / "w"), "--name", "m", "--step", "3",
                  "--key", str(k2), *s, code=1)
        assert "was revoked at index" in out
        out = cli(capsys, "register", "checkpoint", str(tmp_path / "w"), "--name", "m", "--step", "3",
                  "--parent", "m@2:bogus", "--key", str(k2), *s, code=2)
        assert "'bogus'" in out
        out = cli(capsys, "lineage", "m@1", "--descendants", *s)
        assert "continued-training: m 2" in out


def test_python_api_registers_in_the_background(tmp_path: Path) -> None:
    signer = RecordSigner.generate()
    with running_server(tmp_path / "data") as srv, Registrar(signer, srv.address, hash_threads=1) as reg:
        reg.register_identity("trainer")
        folders = []
        for step in range(3):
            folder = tmp_path / f"step-{step}"
            folder.mkdir()
            (folder / "w.bin").write_bytes(bytes([step]) * 3000)
            folders.append(folder)
        futures = []
        for step, folder in enumerate(folders):
            parents = [] if step == 0 else [(futures[-1].result().id, "continued-training")]
            futures.append(reg.register_checkpoint_async(folder, model="run", step=step, parents=parents))
        got = reg.wait()
        assert [g.index for g in got] == [1, 2, 3]
        nodes, edges = reg.client.lineage(got[-1].id, 10)
        assert [e.relation for e in edges] == ["continued-training", "continued-training"]
