"""``provenance hash``: output modes, and ``--verify`` naming every differing file, tensor and chunk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest

from client.cli import main
from client.core.manifest import codec, decode, from_json
from tests import test_manifest_support as kit

CS = "1024"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["hash", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _model(tmp_path: Path) -> Path:
    root = kit.model_folder(tmp_path / "model")
    kit.write(root / "big.bin", bytes(range(256)) * 40)  # 10 chunks of 1024
    return root


def test_default_output_is_b3sum_lines_and_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _model(tmp_path)
    code, out, err = _run(capsys, str(root), "--chunk-size", CS)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{blake3.blake3((root / 'big.bin').read_bytes()).hexdigest()}  big.bin"
    assert lines[-1].startswith("manifest blake3:")


def test_json_and_output_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _model(tmp_path)
    code, out, _ = _run(capsys, str(root), "--chunk-size", CS, "--json", "--output", str(tmp_path / "m.bin"))
    assert code == 0
    doc = json.loads(out)
    m = decode((tmp_path / "m.bin").read_bytes())
    assert from_json(doc) == m
    assert doc["digest"] == codec.manifest_digest(m).hex()
    assert {"path", "size", "blake3", "chunks"} <= set(doc["files"][0])
    st = next(f for f in doc["files"] if f["path"].endswith(".safetensors"))
    assert {"name", "dtype", "shape", "blake3"} <= set(st["tensors"][0])


def _manifest(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str], fmt: str = "json") -> Path:
    target = tmp_path / ("m.json" if fmt == "json" else "m.bin")
    code, out, _ = _run(capsys, str(root), "--chunk-size", CS, "--json", "--output", str(tmp_path / "m.bin"))
    assert code == 0
    (tmp_path / "m.json").write_text(out)
    return target


@pytest.mark.parametrize("fmt", ["json", "bin"])
def test_verify_identical_tree_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    root = _model(tmp_path)
    m = _manifest(tmp_path, root, capsys, fmt)
    code, out, _ = _run(capsys, "--verify", str(m), str(root))
    assert code == 0
    assert out.startswith("OK:")


def _manifest_v1(tmp_path: Path, root: Path) -> Path:
    """A version 1 manifest of ``root`` (fixed chunks everywhere), as older code wrote it."""
    from client.hashing import HashConfig, hash_path

    target = tmp_path / "m1.bin"
    target.write_bytes(codec.encode(hash_path(str(root), HashConfig(chunk_size=int(CS), version=1))))
    return target


@pytest.mark.parametrize("version", [1, 2])
def test_verify_names_every_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str], version: int) -> None:
    root = _model(tmp_path)
    m = _manifest(tmp_path, root, capsys) if version == 2 else _manifest_v1(tmp_path, root)
    big = bytearray((root / "big.bin").read_bytes())
    big[3 * 1024 + 5] ^= 1  # chunk 3
    big[9 * 1024] ^= 1  # chunk 9
    (root / "big.bin").write_bytes(bytes(big) + b"tail")  # and an extra chunk #10
    (root / "config.json").unlink()
    kit.write(root / "notes.txt", b"extra")
    shard = root / "model-00002-of-00002.safetensors"
    t = kit.model_tensors()
    names = sorted(t)[3:]
    t2 = {n: t[n] for n in names}
    dtype, shape, raw = t2[names[0]]
    t2[names[0]] = (dtype, shape, bytes([raw[0] ^ 1]) + raw[1:])
    shard.write_bytes(kit.safetensors_bytes(t2))
    code, out, err = _run(capsys, "--verify", str(m), str(root), "--json")
    assert code == 1
    diffs = {(d["status"], d["what"], d["path"], d["detail"]) for d in json.loads(out)["differences"]}
    expected = {
        ("changed", "file", "big.bin", ""),
        ("changed", "size", "big.bin", ""),
        ("changed", "chunk", "big.bin", "#3 [3072, 4096)"),
        ("changed", "chunk", "big.bin", "#9 [9216, 10240)"),
        ("extra", "chunk", "big.bin", "#10 [10240, 10244)"),
        ("missing", "file", "config.json", ""),
        ("extra", "file", "notes.txt", ""),
        ("changed", "file", shard.name, ""),
        ("changed", "tensor", shard.name, names[0]),
    }
    assert expected <= diffs
    shard_chunks = {d for d in diffs if d[2] == shard.name and d[1] == "chunk"}
    if version == 1:  # re-hashed in the manifest's version: fixed chunks localise the change too
        assert diffs - expected == shard_chunks and shard_chunks
    else:  # tiled: the tensor digest localises it, the header is unchanged, no chunk is listed
        assert diffs == expected
    code, out, err = _run(capsys, "--verify", str(m), str(root))
    assert code == 1
    assert "changed   tensor    model-00002-of-00002.safetensors  " + names[0] in out
    assert "missing   file      config.json" in out
    assert "FAILED" in err


def test_verify_localises_a_header_change_of_a_tiled_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = kit.model_tensors()
    p = kit.write(tmp_path / "d" / "m.safetensors", kit.safetensors_bytes(t, metadata={"k": "v"}))
    m = _manifest(tmp_path, tmp_path / "d", capsys)
    p.write_bytes(kit.safetensors_bytes(t, metadata={"k": "w"}))  # same length, same tensors
    code, out, _ = _run(capsys, "--verify", str(m), str(tmp_path / "d"), "--json")
    assert code == 1
    diffs = {(d["status"], d["what"], d["detail"]) for d in json.loads(out)["differences"]}
    h_end = decode((tmp_path / "m.bin").read_bytes()).files[0].header_end
    assert diffs == {("changed", "file", ""), ("changed", "header", f"[0, {h_end})")}


def test_verify_missing_and_extra_tensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = kit.model_tensors()
    p = kit.write(tmp_path / "d" / "m.safetensors", kit.safetensors_bytes(t))
    m = _manifest(tmp_path, tmp_path / "d", capsys)
    t2 = {k: v for k, v in t.items() if k != "steps"}
    t2["new"] = kit.tensor("U8", [3], 9)
    p.write_bytes(kit.safetensors_bytes(t2))
    code, out, _ = _run(capsys, "--verify", str(m), str(tmp_path / "d"), "--json")
    diffs = {(d["status"], d["what"], d["detail"]) for d in json.loads(out)["differences"]}
    assert code == 1
    assert {("missing", "tensor", "steps"), ("extra", "tensor", "new")} <= diffs


def test_verify_refuses_tampered_or_future_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _model(tmp_path)
    m = _manifest(tmp_path, root, capsys)
    doc = json.loads(m.read_text())
    assert doc["files"][0]["path"] == "big.bin"
    doc["files"][0]["blake3"] = "00" * 32
    m.write_text(json.dumps(doc))
    code, _, err = _run(capsys, "--verify", str(m), str(root))
    assert code == 1 and "does not match its content" in err
    doc["version"] = 3
    m.write_text(json.dumps(doc))
    code, _, err = _run(capsys, "--verify", str(m), str(root))
    assert code == 2 and "version 3 is not supported" in err


def test_refusals_exit_with_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(tmp_path))
    assert code == 2 and "empty input" in err
    kit.write(tmp_path / "w", b"w")
    os.symlink("w", tmp_path / "l")
    code, _, err = _run(capsys, str(tmp_path))
    assert code == 2 and "symlink" in err
    code, out, _ = _run(capsys, str(tmp_path), "--allow-symlinks", "--json")
    assert code == 0 and json.loads(out)["symlinks"] == [{"path": "l", "target": "w"}]
    code, _, err = _run(capsys, str(tmp_path), "--chunk-size", "1000")
    assert code == 2 and "power of two" in err


def test_streamed_outputs_equal_the_in_memory_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from client.core.manifest import to_json
    from client.hashing import HashConfig, hash_path

    root = _model(tmp_path)
    os.symlink("config.json", root / "link")
    m = hash_path(str(root), HashConfig(chunk_size=1024, allow_symlinks=True))
    argv = [str(root), "--chunk-size", CS, "--allow-symlinks", "--json", "--output", str(tmp_path / "o")]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert json.loads(out) == to_json(m)
    assert (tmp_path / "o").read_bytes() == codec.encode(m)
    code, out, _ = _run(capsys, str(root), "--chunk-size", CS, "--allow-symlinks")
    assert out.splitlines()[-1].startswith(f"manifest blake3:{codec.manifest_digest(m).hex()}")
    assert f"{'symlink':<64}  link -> config.json" in out


def test_failed_hash_leaves_no_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _model(tmp_path)
    os.symlink("config.json", root / "zz-link")  # refused at the end of the walk
    code, _, err = _run(capsys, str(root), "--output", str(tmp_path / "o"))
    assert code == 2 and "symlink" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
