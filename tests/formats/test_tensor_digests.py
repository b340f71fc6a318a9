"""Every tensor format yields tensor digests in manifests, defined the same way for all of them.

The digest is BLAKE3 over the elements in row-major order, little-endian (docs/manifest.md,
"Tensor digests"), so one tensor has one digest whether it sits in safetensors, GGUF, ONNX,
a PyTorch checkpoint or a NumPy file. Files come from our hand-written writers
(tests/descent_fixtures.py) and from the real libraries (gguf and onnx are test extras;
torch is an outside reference, tests/references.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import numpy.typing as npt
import pytest

from client.core.descent.fingerprint import tensor_digest
from client.core.manifest.model import FileEntry
from client.formats import gguf as gguf_format
from client.formats import open_model
from client.hashing import HashConfig, hash_path
from tests.cli_kit import cli
from tests.descent_fixtures import (
    onnx_tensor,
    quantize_blocks,
    write_gguf,
    write_onnx,
    write_safetensors,
    write_torch_legacy,
    write_torch_zip,
)
from tests.references import require_torch

R = np.random.default_rng(5)
T: dict[str, npt.NDArray[Any]] = {
    "w": R.standard_normal((8, 32)).astype(np.float32),
    "h": R.standard_normal((4, 6)).astype(np.float16),
    "ids": np.arange(7, dtype=np.int64),
}


def _d(arr: npt.NDArray[Any]) -> str:
    """The tensor digest by its definition: BLAKE3 of the C-order little-endian elements."""
    a = np.ascontiguousarray(arr)
    return blake3.blake3(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def _write(fmt: str, path: Path) -> Path:
    if fmt == "safetensors":
        write_safetensors(path, T)
    elif fmt == "gguf":
        write_gguf(path, {"w": T["w"], "h": T["h"]})
    elif fmt == "onnx":
        inits = [onnx_tensor("w", T["w"], typed=True), onnx_tensor("h", T["h"]), onnx_tensor("ids", T["ids"])]
        write_onnx(path, inits, [])
    elif fmt == "pytorch-zip":
        write_torch_zip(path, T)
    elif fmt == "pytorch-legacy":
        write_torch_legacy(path, T)
    elif fmt == "npz":
        np.savez(path, **T)
    elif fmt == "npy":
        np.save(path, T["w"])
    return path


CASES = {  # format -> (file name, recorded tensor_format, tensor name prefix)
    "safetensors": ("m.safetensors", "safetensors", ""),
    "gguf": ("m.gguf", "gguf", ""),
    "onnx": ("m.onnx", "onnx", ""),
    "pytorch-zip": ("m.pt", "pytorch", ""),
    "pytorch-legacy": ("m.pt", "pytorch", "state_dict."),
    "npz": ("m.npz", "npz", ""),
    "npy": ("w.npy", "npy", ""),
}


@pytest.mark.parametrize("fmt", list(CASES))
def test_provenance_hash_json_lists_tensor_digests(fmt: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    name, recorded, prefix = CASES[fmt]
    path = _write(fmt, tmp_path / name)
    doc = json.loads(cli(capsys, "hash", "--json", "--no-progress", str(path)).splitlines()[0])
    (f,) = doc["files"]
    assert f["tensor_format"] == recorded
    got = {t["name"]: t for t in f["tensors"]}
    want = {k: v for k, v in T.items() if fmt != "gguf" or k != "ids"} if fmt != "npy" else {"w": T["w"]}
    assert sorted(got) == sorted(prefix + k for k in want)
    data = path.read_bytes()
    for k, arr in want.items():
        t = got[prefix + k]
        assert t["blake3"] == _d(arr), k
        assert t["shape"] == list(arr.shape)
        if fmt != "onnx" or k != "w":  # w is in float_data: its range holds the values, packed
            assert data[t["start"] : t["end"]] == np.ascontiguousarray(arr).tobytes()


@pytest.mark.parametrize("fmt", list(CASES))
@pytest.mark.parametrize("mmap_threshold", [0, 1 << 30])
def test_digests_do_not_depend_on_the_read_path_and_match_the_readers(fmt: str, mmap_threshold: int,
                                                                     tmp_path: Path) -> None:
    name, _recorded, _prefix = CASES[fmt]
    path = _write(fmt, tmp_path / name)
    cfg = HashConfig(chunk_size=1024, mmap_threshold=mmap_threshold, read_size=100, map_window=4096, threads=2)
    (f,) = hash_path(str(path), cfg).files
    inline = hash_path(str(path), HashConfig(chunk_size=1024)).files[0]
    assert f.tensors == inline.tensors
    if fmt != "onnx":  # the ONNX reader transposes and dequantizes; the manifest digests tensors as stored
        arrays = dict(open_model(path).tensors())
        assert {t.name: t.blake3 for t in f.tensors} == {k: tensor_digest(a) for k, a in arrays.items()}


def _hash(path: Path) -> FileEntry:
    (f,) = hash_path(str(path), HashConfig(chunk_size=1024)).files
    return f


def test_same_tensor_same_digest_in_safetensors_and_gguf_f32(tmp_path: Path) -> None:
    import gguf

    w = T["w"]
    write_safetensors(tmp_path / "m.safetensors", {"w": w})
    writer = gguf.GGUFWriter(str(tmp_path / "ref.gguf"), "test")
    writer.add_tensor("w", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_gguf(tmp_path / "ours.gguf", {"w": w})
    (st,) = _hash(tmp_path / "m.safetensors").tensors
    for p in ("ref.gguf", "ours.gguf"):
        (gg,) = _hash(tmp_path / p).tensors
        assert (gg.name, gg.dtype, gg.shape, gg.blake3) == (st.name, st.dtype, st.shape, st.blake3)


def test_gguf_quantized_tensor_digests_its_raw_blocks_under_its_type_name(tmp_path: Path) -> None:
    w = R.standard_normal((4, 64)).astype(np.float32)
    write_gguf(tmp_path / "q.gguf", {"w": w}, {"w": "Q4_0"})
    (t,) = _hash(tmp_path / "q.gguf").tensors
    assert (t.dtype, t.shape) == ("Q4_0", (4, 64))
    assert t.blake3 == blake3.blake3(quantize_blocks(w, "Q4_0")).digest()


def test_gguf_type_sizes_agree_with_the_gguf_package() -> None:
    import gguf

    ours = {tid: (name, block, size) for tid, (name, block, size) in gguf_format.TYPES.items()}
    ref = {int(t): (t.name, b, s) for t, (b, s) in gguf.GGML_QUANT_SIZES.items()}
    assert {k: v for k, v in ref.items() if k in ours} == ours


def test_onnx_library_tensors_raw_and_typed_have_the_safetensors_digests(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    i8 = R.integers(-100, 100, (3, 5)).astype(np.int8)
    inits = [
        numpy_helper.from_array(T["w"], "raw_w"),                                     # raw_data
        helper.make_tensor("typed_w", TensorProto.FLOAT, [8, 32], T["w"].reshape(-1).tolist()),  # float_data
        helper.make_tensor("ids", TensorProto.INT64, [7], T["ids"].tolist()),         # int64_data (varints)
        helper.make_tensor("i8", TensorProto.INT8, [3, 5], i8.reshape(-1).tolist()),  # int32_data (varints)
        helper.make_tensor("h", TensorProto.FLOAT16, [4, 6], T["h"].reshape(-1).tolist()),  # int32_data
    ]
    graph = helper.make_graph([], "g", [], [], initializer=inits)
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    for threshold in (0, 1 << 30):
        (f,) = hash_path(str(tmp_path / "m.onnx"), HashConfig(chunk_size=1024, mmap_threshold=threshold)).files
        got = {t.name: (t.dtype, t.shape, t.blake3.hex()) for t in f.tensors}
        assert got == {
            "raw_w": ("F32", (8, 32), _d(T["w"])), "typed_w": ("F32", (8, 32), _d(T["w"])),
            "ids": ("I64", (7,), _d(T["ids"])), "i8": ("I8", (3, 5), _d(i8)), "h": ("F16", (4, 6), _d(T["h"])),
        }


def test_onnx_unpacked_typed_values_are_left_out_with_the_reason(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from tests.descent_fixtures import _f_bytes, _f_varint

    # float_data as two unpacked fixed32 fields (wire type 5): legal protobuf, no single byte range
    body = _f_varint(1, 2) + _f_varint(2, 1) + _f_bytes(8, b"u")
    body += b"".join(b"\x25" + np.float32(v).tobytes() for v in (1.5, 2.5))
    write_onnx(tmp_path / "u.onnx", [body, onnx_tensor("ok", T["h"])], [])
    with caplog.at_level(logging.WARNING):
        f = _hash(tmp_path / "u.onnx")
    assert [t.name for t in f.tensors] == ["ok"]
    assert "tensor 'u' has no tensor digest: values in unpacked" in caplog.text
    np.testing.assert_array_equal(dict(open_model(tmp_path / "u.onnx").tensors())["u"], [1.5, 2.5])


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_torch_save_tensors_have_the_safetensors_digests(tmp_path: Path, zipfile_format: bool,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    torch: Any = require_torch()
    sd = {k: torch.from_numpy(v.copy()) for k, v in T.items()}
    sd["bf"] = torch.from_numpy(T["w"].copy()).bfloat16()
    sd["row"] = sd["w"][2]  # a contiguous view at an offset into w's storage
    sd["t"] = sd["w"].t()   # a non-contiguous view: no byte range
    torch.save(sd, tmp_path / "m.pt", _use_new_zipfile_serialization=zipfile_format)
    bf = sd["bf"].float().numpy()  # exactly representable in bfloat16: truncating it is exact
    write_safetensors(tmp_path / "m.safetensors", {**T, "row": T["w"][2], "bf": bf}, bf16={"bf"})
    with caplog.at_level(logging.WARNING):
        pt = {t.name: (t.dtype, t.shape, t.blake3) for t in _hash(tmp_path / "m.pt").tensors}
    st = {t.name: (t.dtype, t.shape, t.blake3) for t in _hash(tmp_path / "m.safetensors").tensors}
    assert pt == st
    assert "tensor 't' has no tensor digest: non-contiguous view" in caplog.text


def test_npy_big_endian_fortran_and_compressed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = T["w"]
    np.save(tmp_path / "be.npy", w.astype(">f4"))
    (t,) = _hash(tmp_path / "be.npy").tensors
    assert (t.dtype, t.blake3.hex()) == ("F32", _d(w))
    np.save(tmp_path / "f.npy", np.asfortranarray(w))
    np.savez_compressed(tmp_path / "c.npz", w=w)
    with caplog.at_level(logging.WARNING):
        assert _hash(tmp_path / "f.npy").tensors == ()
        assert _hash(tmp_path / "c.npz").tensors == ()
    assert "Fortran-order array" in caplog.text and "compressed archive" in caplog.text
    for p in ("be.npy", "f.npy", "c.npz"):  # the readers still read them all
        np.testing.assert_array_equal(next(iter(open_model(tmp_path / p).tensors()))[1], w)


def test_legacy_head_is_what_pickle_writes_for_the_magic_number() -> None:
    import pickle

    from client.formats import LEGACY_HEAD, LEGACY_MAGIC

    assert pickle.dumps(LEGACY_MAGIC, protocol=2) == LEGACY_HEAD + b"."


def test_a_zip_that_holds_no_tensors_is_plain_bytes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        zf.writestr("a.txt", "not a model")
    with caplog.at_level(logging.WARNING):
        f = _hash(tmp_path / "images.zip")
    assert (f.tensor_format, f.tensors, caplog.text) == ("", (), "")
