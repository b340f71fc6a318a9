"""Malicious, truncated and wrong-format inputs: a FormatError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.errors import FormatError
from client.formats import open_model
from tests.descent_fixtures import (
    _p_global,
    _p_str,
    _p_tuple,
    malicious_pickle,
    write_gguf,
    write_onnx_model,
    write_safetensors,
    write_torch_legacy,
    write_torch_zip,
)

T = {"w": np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32), "b": np.zeros(16, np.float32)}


def _load(path: Path) -> None:
    for _name, _arr in open_model(path).tensors():
        pass


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_malicious_pickle_runs_nothing(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    bad = malicious_pickle(marker)
    if layout == "zip":
        write_torch_zip(path, T, pickle_bytes=bad)
    else:
        write_torch_legacy(path, T, pickle_bytes=bad)
    with pytest.raises(FormatError, match=r"evil\.pt: refusing pickle global os\.system"):
        _load(path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("posix", "system"), ("subprocess", "Popen"),
                                         ("torch", "load"), ("numpy.core.multiarray", "_reconstruct")])
def test_every_other_global_is_refused(tmp_path: Path, module: str, name: str) -> None:
    pkl = b"\x80\x02" + _p_global(module, name) + _p_tuple([_p_str("1+1")]) + b"R."
    write_torch_zip(tmp_path / "g.pt", T, pickle_bytes=pkl)
    with pytest.raises(FormatError, match=f"refusing pickle global {module}.{name}"):
        _load(tmp_path / "g.pt")


def test_plain_pickle_of_evil_object_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(malicious_pickle(marker))
    with pytest.raises(FormatError, match="evil.bin"):
        _load(tmp_path / "evil.bin")
    assert not marker.exists()


def _writers(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    write_safetensors(p := tmp_path / "m.safetensors", T)
    paths["safetensors"] = p
    write_torch_zip(p := tmp_path / "z.pt", T)
    paths["torch-zip"] = p
    write_torch_legacy(p := tmp_path / "l.pt", T)
    paths["torch-legacy"] = p
    write_onnx_model(p := tmp_path / "m.onnx", T)
    paths["onnx"] = p
    write_gguf(p := tmp_path / "m.gguf", T, {"w": "Q8_0"})
    paths["gguf"] = p
    np.savez(p := tmp_path / "m.npz", **T)
    paths["npz"] = p
    return paths


@pytest.mark.parametrize("fmt", ["safetensors", "torch-zip", "torch-legacy", "onnx", "gguf", "npz"])
@pytest.mark.parametrize("keep", [0.3, 0.9, 0.995])
def test_truncated_file(tmp_path: Path, fmt: str, keep: float) -> None:
    path = _writers(tmp_path)[fmt]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FormatError, match=path.name):
        _load(path)


@pytest.mark.parametrize("content", [b"", b"hello world, not a model", b"\x00" * 64, b"GGUF\x09\x00\x00\x00",
                                     b'{"a": 1}', b"PK\x03\x04garbage"])
def test_wrong_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(FormatError, match="model.bin"):
        _load(path)


def test_safetensors_offsets_outside_file(tmp_path: Path) -> None:
    from tests.test_manifest_support import safetensors_file

    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}
    (tmp_path / "x.safetensors").write_bytes(safetensors_file(header, b"\x00" * 16))
    with pytest.raises(FormatError, match="x.safetensors"):
        _load(tmp_path / "x.safetensors")


def test_gguf_unsupported_type_is_named(tmp_path: Path) -> None:
    write_gguf(tmp_path / "k.gguf", T, {"w": "Q8_0"})
    data = bytearray((tmp_path / "k.gguf").read_bytes())
    i = data.index(b"\x01\x00\x00\x00w") if b"\x01\x00\x00\x00w" in data else -1
    # patch the type of "w" (u32 after its dims) to 9 (Q8_1, never dequantized)
    name_at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00w")
    type_at = name_at + 9 + 4 + 16
    assert i >= -1
    data[type_at:type_at + 4] = (9).to_bytes(4, "little")
    (tmp_path / "k.gguf").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="Q8_1 is not supported"):
        _load(tmp_path / "k.gguf")
