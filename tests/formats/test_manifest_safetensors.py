"""The safetensors tensor layer: strict parsing, and tensor digests that survive rewrites."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import blake3
import pytest

from client.core.manifest.errors import TensorFormatError
from client.core.manifest.model import FileEntry
from client.formats.base import TensorRegion
from client.formats.safetensors import layout
from client.formats.source import BytesSource
from client.hashing import HashConfig, hash_path
from tests import test_manifest_support as kit

CS = 1024


def _regions(data: bytes) -> list[TensorRegion]:
    return list(layout(BytesSource("m.safetensors", data)).tensors)


def _hash(path: Path, **kw: object) -> FileEntry:
    (f,) = hash_path(str(path), HashConfig(chunk_size=CS, **kw)).files  # type: ignore[arg-type]
    return f


def test_tensor_entries_are_exact(tmp_path: Path) -> None:
    t = kit.model_tensors()
    f = _hash(kit.write(tmp_path / "m.safetensors", kit.safetensors_bytes(t, metadata={"a": "b"})))
    assert f.tensor_format == "safetensors"
    assert [x.name for x in f.tensors] == sorted(t)
    data = (tmp_path / "m.safetensors").read_bytes()
    for x in f.tensors:
        dtype, shape, raw = t[x.name]
        assert (x.dtype, list(x.shape)) == (dtype, shape)
        assert data[x.start : x.end] == raw
        assert x.blake3 == blake3.blake3(raw).digest()


@pytest.mark.parametrize("mmap_threshold", [0, 1 << 30])
def test_rewritten_file_same_tensor_digests_different_file_digest(tmp_path: Path, mmap_threshold: int) -> None:
    t = kit.model_tensors()
    names = sorted(t)
    variants = {
        "orig": kit.safetensors_bytes(t, metadata={"format": "pt"}),
        "header_order": kit.safetensors_bytes(t, header_order=names[::-1], metadata={"format": "pt"}),
        "metadata": kit.safetensors_bytes(t, metadata={"format": "pt", "note": "rewritten"}),
        "no_metadata": kit.safetensors_bytes(t),
        "padding": kit.safetensors_bytes(t, metadata={"format": "pt"}, pad=7),
        "data_order": kit.safetensors_bytes(t, data_order=names[::-1], metadata={"format": "pt"}),
    }
    entries = {}
    for k, data in variants.items():
        p = kit.write(tmp_path / k / "m.safetensors", data)
        entries[k] = _hash(p, threads=2, mmap_threshold=mmap_threshold, map_window=4096)
    tensor_digests = {k: [(x.name, x.blake3) for x in e.tensors] for k, e in entries.items()}
    assert all(v == tensor_digests["orig"] for v in tensor_digests.values())
    assert len({e.blake3 for e in entries.values()}) == len(variants)


def test_resplit_shards_keep_tensor_digests(tmp_path: Path) -> None:
    t = kit.model_tensors()
    names = sorted(t)
    one = _hash(kit.write(tmp_path / "one.safetensors", kit.safetensors_bytes(t)))
    a = _hash(kit.write(tmp_path / "a.safetensors", kit.safetensors_bytes({n: t[n] for n in names[:2]})))
    b = _hash(kit.write(tmp_path / "b.safetensors", kit.safetensors_bytes({n: t[n] for n in names[2:]})))
    assert {(x.name, x.blake3) for x in one.tensors} == {(x.name, x.blake3) for x in a.tensors + b.tensors}


def _header(obj: object, pad: bytes = b"") -> bytes:
    return kit.safetensors_file(obj, pad=pad)


def _raw(h: bytes) -> bytes:
    return kit.safetensors_file(h)


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00", "shorter"),
        (struct.pack("<Q", 1 << 40) + b"{}", "exceeds"),  # a length no writer would write
        (_raw(b"[]"), "start with"),
        (_header(GOOD, b"\t") + b"\x00" * 8, "only spaces"),
        (_raw(b"{\xff}") + b"\x00", "JSON"),
        (_raw(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": 1}') + b"\x00" * 4, "duplicate"),
        (_header({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}) + b"\x00" * 8, "dtype"),
        (_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}) + b"\x00" * 8, "do not hold"),
        (_header({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}) + b"\x00" * 8, "non-negative"),
        (_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}) + b"\x00" * 8, "outside"),
        (_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}) + b"\x00" * 8, "exactly"),
        (_header(GOOD) + b"\x00" * 9, "unindexed"),
        (_header({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}) + b"\x00" * 8, "hole"),
        (
            _header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}) + b"\x00" * 8,
            "overlap",
        ),
        (_header({**GOOD, "__metadata__": {"k": 1}}) + b"\x00" * 8, "__metadata__"),
        (_header({**GOOD, "": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}}) + b"\x00" * 8, "empty"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(TensorFormatError, match=match):
        _regions(data)


def test_header_may_be_space_padded_and_sub_byte_dtypes_are_sized() -> None:
    data = _header({"q": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}}, b"    ") + b"\x00" * 3
    (r,) = _regions(data)
    assert (r.name, r.end - r.start) == ("q", 3)


def test_unparseable_safetensors_is_hashed_as_plain_bytes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = kit.write(tmp_path / "broken.safetensors", kit.safetensors_file(b"{bad}"))
    with caplog.at_level(logging.WARNING):
        f = _hash(p)
    assert (f.tensor_format, f.tensors) == ("", ())
    assert f.blake3 == blake3.blake3(p.read_bytes()).digest()
    assert "not parsed as safetensors" in caplog.text


def test_no_tensors_option(tmp_path: Path) -> None:
    f = _hash(kit.write(tmp_path / "m.safetensors", kit.safetensors_bytes(kit.model_tensors())), tensors=False)
    assert (f.tensor_format, f.tensors) == ("", ())
