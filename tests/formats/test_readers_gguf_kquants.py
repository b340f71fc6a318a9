"""GGUF K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K): dequantization against the `gguf` package.

`gguf` (llama.cpp's Python package) is a test extra, so nothing here skips. Its numpy
dequantizers are the reference; it cannot quantize to K-quants, so blocks are random bytes with
finite float16 (Q8_K: float32) super-block scales. Q8_K has no reference dequantizer in `gguf`,
so it is checked against a scalar reading of ggml's ``block_q8_K`` instead. A scalar, per-element
reading of ggml's C loops double-checks the layouts independently of the `gguf` package.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from client.errors import FormatError
from client.formats import gguf as gguf_format
from client.formats import open_model
from client.formats.gguf_quants import dequantize
from client.formats.source import PathSource

QK_K = 256
# name -> (bytes per super-block, byte offsets of float16 super-block scales)
LAYOUT = {
    "Q2_K": (84, (80, 82)),
    "Q3_K": (110, (108,)),
    "Q4_K": (144, (0, 2)),
    "Q5_K": (176, (0, 2)),
    "Q6_K": (210, (208,)),
    "Q8_K": (292, ()),  # float32 d at 0
}
WITH_REFERENCE = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def random_blocks(name: str, n: int, seed: int) -> np.ndarray:
    """n random super-blocks (n, size) uint8 whose scale fields hold finite floats."""
    size, f16_at = LAYOUT[name]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, size), dtype=np.uint8)
    for at in f16_at:
        scale = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 3, n)).astype(np.float16)
        raw[:, at:at + 2] = scale.reshape(n, 1).view(np.uint8)
    if name == "Q8_K":
        raw[:, 0:4] = rng.standard_normal((n, 1)).astype("<f4").view(np.uint8)
    return raw


def _f16(b: np.ndarray) -> float:
    return float(np.frombuffer(bytes(b), "<f2")[0])


def scalar_reference(name: str, blk: np.ndarray) -> np.ndarray:
    """One super-block dequantized element by element, following ggml's dequantize_row_q*_K loops."""
    b = [int(x) for x in blk]
    y = np.zeros(QK_K, np.float32)
    f32 = np.float32
    if name == "Q8_K":
        d = np.frombuffer(bytes(blk[0:4]), "<f4")[0]
        return np.frombuffer(bytes(blk[4:260]), np.int8).astype(np.float32) * d
    if name == "Q2_K":
        sc, qs, d, dmin = b[0:16], b[16:80], f32(_f16(blk[80:82])), f32(_f16(blk[82:84]))
        for i in range(QK_K):
            h, j, k = i // 128, (i % 128) // 32, i % 32
            q = (qs[32 * h + k] >> (2 * j)) & 3
            s = sc[i // 16]
            y[i] = f32(d * f32(s & 0xF)) * f32(q) - f32(dmin * f32(s >> 4))
        return y
    if name == "Q3_K":
        hm, qs, p, d = b[0:32], b[32:96], b[96:108], f32(_f16(blk[108:110]))
        for i in range(QK_K):
            h, j, k = i // 128, (i % 128) // 32, i % 32
            g = i // 16
            s = ((p[g % 8] >> (4 * (g // 8))) & 0xF) | (((p[8 + g % 4] >> (2 * (g // 4))) & 3) << 4)
            q = ((qs[32 * h + k] >> (2 * j)) & 3) - (0 if hm[k] & (1 << (4 * h + j)) else 4)
            y[i] = f32(d * f32(s - 32)) * f32(q)
        return y
    if name in ("Q4_K", "Q5_K"):
        d, dmin, p = f32(_f16(blk[0:2])), f32(_f16(blk[2:4])), b[4:16]
        qh, qs = (b[16:48], b[48:176]) if name == "Q5_K" else ([0] * 32, b[16:144])
        for i in range(QK_K):
            g, k = i // 32, i % 32
            if g < 4:
                s, m = p[g] & 63, p[g + 4] & 63
            else:
                s = (p[g + 4] & 0xF) | ((p[g - 4] >> 6) << 4)
                m = (p[g + 4] >> 4) | ((p[g] >> 6) << 4)
            q = (qs[32 * (g // 2) + k] >> (4 * (g % 2))) & 0xF
            q |= ((qh[k] >> g) & 1) << 4
            y[i] = f32(d * f32(s)) * f32(q) - f32(dmin * f32(m))
        return y
    assert name == "Q6_K"
    ql, qh, d = b[0:128], b[128:192], f32(_f16(blk[208:210]))
    sc = np.frombuffer(bytes(blk[192:208]), np.int8)
    for i in range(QK_K):
        h, r = i // 128, i % 128
        j, k = r // 32, r % 32  # quarter j of the half: ql byte k (+32 for odd j), nibble j // 2
        lo = (ql[64 * h + k + 32 * (j % 2)] >> (4 * (j // 2))) & 0xF
        hi = (qh[32 * h + k] >> (2 * j)) & 3
        y[i] = f32(d * f32(sc[i // 16])) * f32((lo | (hi << 4)) - 32)
    return y


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_matches_gguf_reference(name: str) -> None:
    qtype = getattr(gguf.GGMLQuantizationType, name)
    raw = random_blocks(name, 64, seed=int(qtype))
    ref = gguf.quants.dequantize(raw.copy(), qtype).reshape(8, 8 * QK_K)
    got = dequantize(int(qtype), raw.reshape(-1).copy(), (8, 8 * QK_K))
    assert got.dtype == np.float32 and ref.dtype == np.float32
    assert np.isfinite(ref).all()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("name", list(LAYOUT))
def test_matches_scalar_reading_of_ggml(name: str) -> None:
    qtype = getattr(gguf.GGMLQuantizationType, name)
    raw = random_blocks(name, 3, seed=100 + int(qtype))
    got = dequantize(int(qtype), raw.reshape(-1).copy(), (3, QK_K))
    want = np.stack([scalar_reference(name, blk) for blk in raw])
    np.testing.assert_array_equal(got, want)


def test_known_q4_k_block() -> None:
    """A hand-built Q4_K block: d=0.5, dmin=0.25, sub-block g has scale g+1 and min 2g, nibbles 0..15."""
    blk = np.zeros(144, np.uint8)
    blk[0:2] = np.array([0.5], np.float16).view(np.uint8)
    blk[2:4] = np.array([0.25], np.float16).view(np.uint8)
    scales, mins = np.arange(1, 9), np.arange(0, 16, 2)
    blk[4:8] = scales[:4] | ((scales[4:] >> 4) << 6)
    blk[8:12] = mins[:4] | ((mins[4:] >> 4) << 6)
    blk[12:16] = (scales[4:] & 0xF) | ((mins[4:] & 0xF) << 4)
    nib = np.arange(32) % 16
    blk[16:144] = np.tile(nib | (nib << 4), 4)
    got = dequantize(12, blk, (QK_K,)).reshape(8, 32)
    want = 0.5 * scales[:, None] * nib[None, :] - 0.25 * mins[:, None]
    np.testing.assert_array_equal(got, want.astype(np.float32))


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, object]]) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.count", 1)
    for name, (data, raw_dtype) in tensors.items():
        if raw_dtype is None:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_writer_file_with_k_quants(tmp_path: Path) -> None:
    """A GGUFWriter file holding every K-quant (raw random blocks; gguf cannot quantize to them)."""
    rows, cols = 4, 2 * QK_K
    tensors: dict[str, tuple[np.ndarray, object]] = {"f32": (np.arange(8, dtype=np.float32), None)}
    expect: dict[str, np.ndarray] = {"f32": np.arange(8, dtype=np.float32)}
    for name in LAYOUT:
        qtype = getattr(gguf.GGMLQuantizationType, name)
        raw = random_blocks(name, rows * cols // QK_K, seed=7 + int(qtype))
        tensors[name.lower()] = (raw.reshape(rows, -1), qtype)
        expect[name.lower()] = np.stack([scalar_reference(name, blk) for blk in raw]).reshape(rows, cols)
        if name in WITH_REFERENCE:
            ref = gguf.quants.dequantize(raw.copy(), qtype).reshape(rows, cols)
            np.testing.assert_array_equal(ref, expect[name.lower()])
    path = tmp_path / "k.gguf"
    _write(path, tensors)
    got = dict(open_model(path).tensors())
    assert sorted(got) == sorted(expect)
    for key, want in expect.items():
        assert got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)


def test_gguf_reader_agrees_with_gguf_package_reader(tmp_path: Path) -> None:
    """Shapes and dequantized values agree with gguf.GGUFReader + gguf.quants on the same file."""
    raw = random_blocks("Q6_K", 6, seed=3)
    path = tmp_path / "q6.gguf"
    _write(path, {"w": (raw.reshape(3, -1), gguf.GGMLQuantizationType.Q6_K)})
    ref_t = gguf.GGUFReader(str(path)).tensors[0]
    ref = gguf.quants.dequantize(np.asarray(ref_t.data), ref_t.tensor_type)
    got = dict(open_model(path).tensors())["w"]
    assert got.shape == (3, 2 * QK_K)
    np.testing.assert_array_equal(got, ref.reshape(got.shape))


@pytest.mark.parametrize("name", list(LAYOUT))
def test_truncated_k_quant_data(tmp_path: Path, name: str) -> None:
    qtype = getattr(gguf.GGMLQuantizationType, name)
    path = tmp_path / "t.gguf"
    _write(path, {"lead": (np.ones(4, np.float32), None),
                  "kq": (random_blocks(name, 4, seed=1).reshape(2, -1), qtype)})
    data = path.read_bytes()
    with PathSource(path) as src:
        info = gguf_format.layout(src)[1].tensors[1]
    end = info.start + 4 * LAYOUT[name][0]  # the writer pads after the last tensor
    assert info.name == "kq" and end <= len(data)
    for cut in (end - 1, end - LAYOUT[name][0], info.start + 1):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError, match=r"t\.gguf.*truncated.*'kq'"):
            dict(open_model(path).tensors())


def _patch_first_dim(path: Path, dim: int) -> None:
    """Rewrite the fastest-varying dimension of the only tensor (found after its name)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"kq") + 2 + 4  # name bytes, then u32 n_dims, then u64 dims
    data[at:at + 8] = dim.to_bytes(8, "little")
    path.write_bytes(bytes(data))


def test_row_length_not_multiple_of_256(tmp_path: Path) -> None:
    path = tmp_path / "r.gguf"
    _write(path, {"kq": (random_blocks("Q4_K", 2, seed=2).reshape(2, -1), gguf.GGMLQuantizationType.Q4_K)})
    _patch_first_dim(path, 128)
    with pytest.raises(FormatError, match=r"r\.gguf.*'kq'.*multiple of 256"):
        dict(open_model(path).tensors())


def test_oversized_k_quant_dims(tmp_path: Path) -> None:
    """Dims whose byte size overflows int64 are refused as truncated, not allocated."""
    path = tmp_path / "o.gguf"
    _write(path, {"kq": (random_blocks("Q6_K", 2, seed=2).reshape(2, -1), gguf.GGMLQuantizationType.Q6_K)})
    _patch_first_dim(path, 256 << 52)
    with pytest.raises(FormatError, match=r"o\.gguf.*'kq'"):
        dict(open_model(path).tensors())


def test_other_types_still_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "i.gguf"
    qtype = gguf.GGMLQuantizationType.IQ4_XS
    _write(path, {"kq": (np.zeros((1, 136), np.uint8), qtype)})
    with pytest.raises(FormatError, match=r"i\.gguf.*'kq'.*not supported"):
        dict(open_model(path).tensors())
