"""Every reader gives back the tensors that were written, by name, and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.formats import detect_format, open_model
from tests.descent_fixtures import (
    base_model,
    quantize_rows_int8,
    write_gguf,
    write_onnx_model,
    write_safetensors,
    write_sharded,
    write_torch_legacy,
    write_torch_zip,
)


def _small() -> dict[str, np.ndarray]:
    r = np.random.default_rng(3)
    return {
        "a.weight": r.standard_normal((16, 64)).astype(np.float32),
        "a.bias": r.standard_normal(16).astype(np.float32),
        "b.half": r.standard_normal((8, 32)).astype(np.float16),
        "c.ids": np.arange(10, dtype=np.int64),
        "d.scalar": np.array(2.5, dtype=np.float64),
    }


def _read(path: Path) -> dict[str, np.ndarray]:
    return dict(open_model(path).tensors())


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_safetensors_single(tmp_path: Path) -> None:
    t = _small()
    write_safetensors(tmp_path / "m.safetensors", t)
    assert detect_format(tmp_path / "m.safetensors") == "safetensors"
    _same(_read(tmp_path / "m.safetensors"), t)


def test_safetensors_bf16_is_exact_float32(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    write_safetensors(tmp_path / "m.safetensors", {"w": w}, bf16={"w"})
    got = _read(tmp_path / "m.safetensors")["w"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, w, rtol=1 / 128)


def test_safetensors_sharded_folder(tmp_path: Path) -> None:
    t = base_model(0, layers=2)
    write_sharded(tmp_path / "m", t, shards=3)
    assert detect_format(tmp_path / "m") == "safetensors-sharded"
    _same(_read(tmp_path / "m"), t)


def test_npz(tmp_path: Path) -> None:
    t = _small()
    np.savez(tmp_path / "m.npz", **t)
    _same(_read(tmp_path / "m.npz"), t)
    np.save(tmp_path / "w.npy", t["a.weight"])
    _same(_read(tmp_path / "w.npy"), {"w": t["a.weight"]})


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy])
def test_torch_formats(tmp_path: Path, writer: object) -> None:
    t = {k: v for k, v in _small().items() if v.ndim > 0}
    path = tmp_path / "m.pt"
    writer(path, t)  # type: ignore[operator]
    got = _read(path)
    if writer is write_torch_legacy:  # nested under "state_dict"
        got = {k.removeprefix("state_dict."): v for k, v in got.items()}
    _same(got, t)


def test_torch_zip_strided_views(tmp_path: Path) -> None:
    """A tensor whose stride is not C order (a transposed view) is rebuilt correctly."""
    from tests.descent_fixtures import _p_global, _p_int, _p_str, _p_tuple

    base = np.arange(12, dtype=np.float32)
    pid = _p_tuple([_p_str("storage"), _p_global("torch", "FloatStorage"), _p_str("0"), _p_str("cpu"), _p_int(12)])
    hooks = _p_global("collections", "OrderedDict") + b")R"
    t = _p_global("torch._utils", "_rebuild_tensor_v2") + _p_tuple(
        [pid + b"Q", _p_int(0), _p_tuple([_p_int(4), _p_int(3)]), _p_tuple([_p_int(1), _p_int(4)]), b"\x89", hooks]
    ) + b"R"
    pkl = b"\x80\x02}(" + _p_str("t") + t + b"u."
    write_torch_zip(tmp_path / "v.pt", {"x": base}, pickle_bytes=pkl)
    np.testing.assert_array_equal(_read(tmp_path / "v.pt")["t"], base.reshape(3, 4).T)


def test_onnx_transposed_matmul_weights_come_back_out_in(tmp_path: Path) -> None:
    t = {"fc1.weight": np.random.default_rng(1).standard_normal((32, 16)).astype(np.float32),
         "fc1.bias": np.arange(32, dtype=np.float32), "emb": np.ones((4, 4), np.float16)}
    write_onnx_model(tmp_path / "m.onnx", {"fc1.weight": t["fc1.weight"], "fc1.bias": t["fc1.bias"]})
    assert detect_format(tmp_path / "m.onnx") == "onnx"
    _same(_read(tmp_path / "m.onnx"), {"fc1.weight": t["fc1.weight"], "fc1.bias": t["fc1.bias"]})


def test_onnx_int8_per_row_scales_are_dequantized(tmp_path: Path) -> None:
    w = np.random.default_rng(2).standard_normal((24, 40)).astype(np.float32)
    write_onnx_model(tmp_path / "q.onnx", {"w": w}, int8=True)
    got = _read(tmp_path / "q.onnx")
    assert list(got) == ["w"]
    q, s = quantize_rows_int8(w)
    np.testing.assert_allclose(got["w"], q.astype(np.float32) * s[:, None], rtol=1e-6)
    assert np.abs(got["w"] - w).max() <= s.max() / 2 + 1e-6


@pytest.mark.parametrize("kind", ["F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_gguf_dequantizes(tmp_path: Path, kind: str) -> None:
    w = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    write_gguf(tmp_path / "m.gguf", {"w": w, "v": np.ones(32, np.float32)}, {"w": kind})
    got = _read(tmp_path / "m.gguf")
    assert got["w"].shape == (8, 64)
    tol = {"F32": 0, "F16": 2e-3, "Q8_0": 0.02, "Q4_0": 0.35, "Q4_1": 0.25, "Q5_0": 0.15, "Q5_1": 0.12}[kind]
    assert np.abs(got["w"].astype(np.float32) - w).max() <= tol + 1e-7
    np.testing.assert_array_equal(got["v"], np.ones(32, np.float32))


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_gguf_matches_reference_dequantizer(tmp_path: Path, kind: str) -> None:
    """Our dequantization agrees bit for bit with llama.cpp's Python package (gguf), when installed."""
    gguf = pytest.importorskip("gguf")
    from client.formats.gguf_quants import dequantize
    from tests.descent_fixtures import quantize_blocks

    w = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
    raw = np.frombuffer(quantize_blocks(w, kind), dtype=np.uint8)
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    ref = gguf.quants.dequantize(raw.reshape(4, -1), qtype)
    np.testing.assert_array_equal(dequantize(int(qtype), raw.copy(), (4, 64)), ref.reshape(4, 64))


def test_bf16_digest_is_of_the_stored_bytes(tmp_path: Path) -> None:
    """The fingerprint digest of a widened bf16 tensor equals BLAKE3 of the bytes in the file."""
    import blake3

    from client.core.descent.fingerprint import tensor_digest

    w = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    write_safetensors(tmp_path / "m.safetensors", {"w": w}, bf16={"w"})
    got = _read(tmp_path / "m.safetensors")["w"]
    stored = (w.view(np.uint32) >> 16).astype("<u2").tobytes()
    assert tensor_digest(got) == blake3.blake3(stored).digest()
    assert tensor_digest(got.astype(np.float32)) != tensor_digest(got)  # a plain float32 copy is other bytes
