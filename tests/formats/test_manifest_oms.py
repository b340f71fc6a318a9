"""``--format oms`` against the OpenSSF ``model-signing`` package (BLAKE3 file serialization)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.cli import main
from client.core.manifest.oms import statement
from client.hashing import HashConfig, hash_path
from tests import test_manifest_support as kit
from tests.references import require_model_signing


def _reference(path: Path) -> dict[str, Any]:
    require_model_signing()
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from model_signing import hashing
    from model_signing._signing import signing

    config = hashing.Config()  # type: ignore[no-untyped-call]
    manifest = config.use_file_serialization(hashing_algorithm="blake3").hash(path)
    out: dict[str, Any] = json_format.MessageToDict(signing.Payload(manifest).statement.pb)
    return out


def _normalise(stmt: dict[str, Any]) -> dict[str, Any]:
    # model-signing lists ignore_paths in frozenset (hash-randomised) order: compare as a set.
    s: dict[str, Any] = json.loads(json.dumps(stmt))
    s["predicate"]["serialization"]["ignore_paths"] = sorted(s["predicate"]["serialization"]["ignore_paths"])
    return s


def _tree(root: Path) -> Path:
    kit.model_folder(root)
    kit.write(root / "a-c", b"sorted differently by PurePosixPath")
    kit.write(root / "a" / "b", b"nested")
    kit.write(root / "big.bin", bytes(range(256)) * 40000)
    return root


def test_oms_statement_matches_model_signing_for_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "my-model")
    ref = _reference(root)
    assert main(["hash", str(root), "--format", "oms"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert _normalise(ours) == _normalise(ref)


def test_oms_statement_matches_model_signing_for_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = kit.write(tmp_path / "w.safetensors", kit.safetensors_bytes(kit.model_tensors()))
    ref = _reference(p)
    assert main(["hash", str(p), "--format", "oms"]) == 0
    assert _normalise(json.loads(capsys.readouterr().out)) == _normalise(ref)


def test_oms_resource_order_and_root_digest_without_the_package(tmp_path: Path) -> None:
    root = _tree(tmp_path / "m")
    stmt = statement(hash_path(str(root), HashConfig()), "m")
    names = [r["name"] for r in stmt["predicate"]["resources"]]
    assert names.index("a/b") < names.index("a-c")  # PurePosixPath order, not code-point order
    assert stmt["subject"][0]["name"] == "m"


def test_oms_refuses_symlinks(tmp_path: Path) -> None:
    from client.errors import InvalidInputError

    kit.write(tmp_path / "w", b"w")
    (tmp_path / "l").symlink_to("w")
    m = hash_path(str(tmp_path), HashConfig(allow_symlinks=True))
    with pytest.raises(InvalidInputError, match="symlinks"):
        statement(m, "x")
