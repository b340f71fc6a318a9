"""`provenance compare` and `provenance fingerprint`, end to end (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client.cli import main
from client.exit_codes import EXIT_OK, EXIT_USAGE
from tests.descent_fixtures import base_model, malicious_pickle, noisy, write_safetensors, write_torch_zip


@pytest.fixture()
def models(tmp_path: Path) -> dict[str, Path]:
    base = base_model(0, layers=2)
    write_safetensors(a := tmp_path / "a.safetensors", base)
    write_torch_zip(b := tmp_path / "b.pt", noisy(base, 0.02))
    write_safetensors(c := tmp_path / "c.safetensors", base_model(5, layers=2))
    return {"a": a, "b": b, "c": c}


def test_compare_json(models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(models["a"]), str(models["b"]), "--json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "related"
    assert out["p_value"] < 1e-10
    assert set(out["shared_fraction"]) == {"a_in_b", "b_in_a"}
    assert out["evidence"] and "direction" in out
    assert main(["compare", str(models["a"]), str(models["c"]), "--json", "--alpha", "0.05"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["verdict"] == "independent"


def test_compare_text(models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(models["a"]), str(models["a"])]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("verdict: identical") and "\ndirection:\n" in out
    assert "parent from child or from sibling" in out
    assert "extent: " in out and " shared (" in out


def test_fingerprint_then_compare_without_weights(models: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fa, fb = tmp_path / "a.plfp", tmp_path / "b.plfp"
    assert main(["fingerprint", str(models["a"]), "-o", str(fa), "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["digest"].startswith("blake3-plfp6:") and summary["bytes"] == fa.stat().st_size
    assert main(["fingerprint", str(models["b"]), "-o", str(fb)]) == EXIT_OK
    capsys.readouterr()
    assert main(["compare", str(fa), str(fb), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["verdict"] == "related"
    assert main(["compare", str(fa), str(models["a"]), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["verdict"] == "identical"


def test_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.pt"
    write_torch_zip(evil, {"w": np.zeros((2, 2), np.float32)}, pickle_bytes=malicious_pickle(tmp_path / "x"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    assert main(["compare", str(evil), str(junk)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "evil.pt" in err and "refusing pickle global os.system" in err
    assert not (tmp_path / "x").exists()
    assert main(["fingerprint", str(junk)]) == EXIT_USAGE
    assert "junk.bin" in capsys.readouterr().err
    assert main(["compare", str(junk), str(junk), "--alpha", "2"]) == EXIT_USAGE
