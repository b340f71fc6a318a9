"""`register checkpoint --model-card` and `lineage --model-card` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import running_server

from client.core.records.hf_card import read_card
from tests.cli_kit import cli

pytestmark = pytest.mark.slow


def _folder(d: Path, seed: bytes) -> Path:
    d.mkdir()
    (d / "w.bin").write_bytes(seed * 3000)
    return d


def test_model_card_lineage_in_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    key = tmp_path / "k"
    cli(capsys, "keygen", "--out", str(key))
    card = tmp_path / "README.md"
    with running_server(tmp_path / "data") as srv:
        s = ["--server", srv.address, "--key", str(key)]
        cli(capsys, "identity", "register", "lab", *s)
        base = json.loads(cli(capsys, "register", "checkpoint", str(_folder(tmp_path / "b", b"b")),
                              "--name", "org/base", "--step", "1", "--json", *s))
        cli(capsys, "register", "checkpoint", str(_folder(tmp_path / "o", b"o")), "--name", "org/other",
            "--step", "7", *s)

        card.write_text("---\nbase_model: org/base\nbase_model_relation: adapter\n---\n# adapter\n")
        out = cli(capsys, "register", "checkpoint", str(_folder(tmp_path / "a", b"a")), "--name", "org/adapter",
                  "--step", "1", "--model-card", str(card), *s, code=3)
        assert "--base-ref org/base=NAME@VERSION" in out  # an HF id names no version: say how to map it
        cli(capsys, "register", "checkpoint", str(tmp_path / "a"), "--name", "org/adapter", "--step", "1",
            "--model-card", str(card), "--base-ref", "org/base=org/base@1", *s)
        out = cli(capsys, "lineage", "org/adapter@1", "--server", srv.address)
        assert "adapter: org/base 1" in out
        written = cli(capsys, "lineage", "org/adapter@1", "--model-card", "--server", srv.address)
        assert "base_model: org/base\nbase_model_relation: adapter\n" in written and base["id"] in written
        got = read_card(written)
        assert got.base_models == ("org/base",) and got.relation.value == "adapter"

        card.write_text("---\nbase_model: [org/base@1, org/other@7, hub/unknown]\nbase_model_relation: merge\n---\n")
        out = cli(capsys, "register", "checkpoint", str(_folder(tmp_path / "m", b"m")), "--name", "org/merged",
                  "--step", "1", "--model-card", str(card), *s, code=3)
        assert "'hub/unknown'" in out
        cli(capsys, "register", "checkpoint", str(tmp_path / "m"), "--name", "org/merged", "--step", "1",
            "--model-card", str(card), "--allow-unregistered-base", *s)
        shown = json.loads(cli(capsys, "show", "org/merged@1", "--json", "--server", srv.address))
        assert [p["relation"] for p in shown["record"]["parents"]] == ["merge", "merge"]
        assert shown["record"]["metadata"] == {"hf.base_model": '["hub/unknown"]', "hf.base_model_relation": "merge"}
        written = cli(capsys, "lineage", "org/merged@1", "--model-card", "--server", srv.address)
        got = read_card(written)
        assert got.base_models == ("org/base", "org/other", "hub/unknown") and got.relation.value == "merge"
        assert "unresolved claim" in written

        card.write_text("---\nbase_model: &x org/base\n---\n")
        out = cli(capsys, "register", "checkpoint", str(_folder(tmp_path / "h", b"h")), "--name", "org/h",
                  "--step", "1", "--model-card", str(card), *s, code=2)
        assert "anchors or aliases" in out
