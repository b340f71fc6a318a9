"""`provenance register oms`, `find sha256:` and `verify` against a real server, with model_signing's signatures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from oms_kit import make_model, ms_sign, write_ec_key
from servers import running_server

from client.hashing.oms_files import file_digests
from tests.cli_kit import cli

pytestmark = [pytest.mark.slow, pytest.mark.interop]


def test_register_find_prove_and_verify_an_oms_signature(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    lab, aud = tmp_path / "lab.key", tmp_path / "aud.key"
    for k in (lab, aud):
        cli(capsys, "keygen", "--out", str(k))
    model = make_model(tmp_path / "model")
    priv, pub, _ = write_ec_key(tmp_path)
    sig = ms_sign(model, priv, tmp_path / "model.sig")
    b3 = ms_sign(model, priv, tmp_path / "model-b3.sig", algorithm="blake3")
    with running_server(tmp_path / "data") as srv:
        s = ["--server", srv.address]
        cli(capsys, "identity", "register", "lab", "--key", str(lab), *s)
        cli(capsys, "identity", "register", "auditor", "--key", str(aud), *s)
        cli(capsys, "register", "checkpoint", str(model), "--name", "m", "--step", "1", "--key", str(lab), *s)
        out = cli(capsys, "register", "oms", str(sig), "--checkpoint", "m@1", "--oms-key", str(pub),
                  "--key", str(aud), *s, code=2)
        assert "--model PATH" in out  # a SHA-256 statement is checked against the files
        got = json.loads(cli(capsys, "register", "oms", str(sig), "--checkpoint", "m@1", "--oms-key", str(pub),
                             "--model", str(model), "--key", str(aud), "--json", *s))
        assert got["claim"] == "oms-signature" and "ecdsa-secp256r1" in got["signer"]
        out = cli(capsys, "register", "oms", str(b3), "--checkpoint", "m@1", "--oms-key", str(pub),
                  "--key", str(aud), *s)  # BLAKE3: checked against the registered manifest, no files needed
        assert "registered attestation (oms-signature)" in out
        out = cli(capsys, "register", "oms", str(b3), "--checkpoint", "m@1", "--key", str(aud), *s, code=1)
        assert "public key is needed" in out
        digest = file_digests(str(model), "sha256")["config.json"].hex()
        found = json.loads(cli(capsys, "find", f"sha256:{digest}", "--json", *s))
        assert [m["kind"] for m in found] == ["oms-file", "oms-attestation"]
        assert found[0]["record"]["model"] == "m" and found[1]["id"] == got["id"]
        assert "has a file with this SHA-256" in cli(capsys, "find", f"sha256:{digest}", *s)
        shown = cli(capsys, "show", got["id"], *s)
        assert "oms-signature OMS model sha256:" in shown
        bundle = tmp_path / "att.json"
        cli(capsys, "prove", got["id"], "-o", str(bundle), *s)
        key = cli(capsys, "log-key", *s).strip()
        (model / "sub" / "weights.bin").write_bytes(b"changed")
        out = cli(capsys, "register", "oms", str(sig), "--checkpoint", "m@1", "--oms-key", str(pub),
                  "--model", str(model), "--key", str(aud), *s, code=2)
        assert "not the checkpoint's files" in out
    out = cli(capsys, "verify", str(bundle), "--log-key", key)
    assert "VERIFIED" in out and "rechecked offline" in out and "ecdsa-secp256r1 public key sha256:" in out
    report = json.loads(cli(capsys, "verify", str(bundle), "--log-key", key, "--json"))
    assert len(report["oms_signatures"]) == 1
