"""Manifest version 2: tiled files (header region + tensors as the pieces), their encoding, JSON,
invariants, registry digests and differences; version 1 still decodes, re-encodes and verifies."""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.manifest import codec, jsonform
from client.core.manifest.diff import compare
from client.core.manifest.model import FileEntry, Manifest, SymlinkEntry, TensorEntry, tiling_start
from client.errors import FormatError, InvalidInputError
from tests.test_manifest_support import assert_flips_refused_or_change_digest

CS = 1024


def _b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _content() -> tuple[bytes, list[tuple[str, int, int]]]:
    """A 40-byte header, then tensors a [40, 1040), e (empty, at 1040), b [1040, 3040)."""
    head = b"H" * 40
    a, b = bytes(range(250)) * 4, b"\x07" * 2000
    return head + a + b, [("a", 40, 1040), ("e", 1040, 1040), ("b", 1040, 3040)]


def tiled_file(content: bytes | None = None, path: str = "m.safetensors") -> FileEntry:
    data, spans = _content()
    data = content if content is not None else data
    tensors = tuple(sorted((TensorEntry(n, "U8", (e - s,), s, e, _b3(data[s:e])) for n, s, e in spans),
                           key=lambda t: t.name))
    return FileEntry(path, len(data), _b3(data), (), "safetensors", tensors, _b3(data[:40]))


def chunked_file(data: bytes, path: str) -> FileEntry:
    return FileEntry(path, len(data), _b3(data), tuple(_b3(data[o : o + CS]) for o in range(0, len(data), CS)))


def sample() -> Manifest:
    return Manifest(CS, (chunked_file(b"x" * 3000, "a"), tiled_file(), SymlinkEntry("z", "a")))


def test_tiled_round_trip_bytes_and_json() -> None:
    m = sample()
    assert m.version == 2
    raw = codec.encode(m)
    assert codec.decode(raw) == m
    assert struct.unpack_from(">H", raw, len(codec.MAGIC))[0] == 2
    doc = json.loads(json.dumps(jsonform.to_json(m)))
    assert jsonform.from_json(doc) == m
    f = doc["files"][1]
    assert "chunks" not in f and f["header"] == {"end": 40, "blake3": _b3(b"H" * 40).hex()}
    assert doc["files"][0]["chunks"][0] == _b3(b"x" * CS).hex()


def test_version_2_file_layout_bytes() -> None:
    """path, size, digest, then the layout byte: 0x00 + chunks, or 0x01 + the header digest."""
    f = tiled_file()
    raw = codec.entry_bytes(f, 2)
    head = bytes([codec.TAG_FILE]) + struct.pack(">H", len(f.path)) + f.path.encode() + struct.pack(">Q", f.size)
    assert raw.startswith(head + f.blake3 + b"\x01" + f.header)  # type: ignore[operator]
    c = chunked_file(b"y" * 2000, "c")
    assert codec.entry_bytes(c, 2) == head[:1] + struct.pack(">H", 1) + b"c" + struct.pack(">Q", 2000) + (
        c.blake3 + b"\x00" + b"".join(c.chunks) + b"\x00" + b"\x00" * 4)
    assert codec.entry_bytes(c, 1) == codec.entry_bytes(c, 2).replace(c.blake3 + b"\x00", c.blake3, 1)


def test_version_1_still_decodes_and_its_digest_recomputes() -> None:
    m1 = Manifest(CS, (chunked_file(b"x" * 3000, "a"),), version=1)
    raw = codec.encode(m1)
    assert struct.unpack_from(">H", raw, len(codec.MAGIC))[0] == 1
    back = codec.decode(raw)
    assert back == m1 and back.version == 1 and codec.manifest_digest(back) == _b3(raw)
    assert jsonform.from_json(jsonform.to_json(m1)) == m1
    m2 = replace(m1, version=2)
    assert codec.manifest_digest(m2) != codec.manifest_digest(m1)  # the version is bound into the digest


def test_every_truncation_and_flipped_byte_of_a_tiled_manifest() -> None:
    m = sample()
    raw = codec.encode(m)
    for n in range(len(raw)):
        with pytest.raises(FormatError):
            codec.decode(raw[:n])
    assert_flips_refused_or_change_digest(raw)


def test_unknown_layout_byte_is_refused() -> None:
    raw = bytearray(codec.encode(Manifest(CS, (tiled_file(),))))
    f = tiled_file()
    at = bytes(raw).index(f.blake3) + 32
    assert raw[at] == codec.LAYOUT_TILED
    raw[at] = 2
    with pytest.raises(FormatError, match="layout"):
        codec.decode(bytes(raw))


def test_tiling_invariants() -> None:
    f = tiled_file()
    with pytest.raises(InvalidInputError, match="no chunk digests"):
        replace(f, chunks=(f.blake3,))
    a, b, e = f.tensors  # by name: a [40, 1040), b [1040, 3040), e [1040, 1040)
    for tensors, size in [
        ((replace(a, end=1030), b, e), f.size),  # a gap
        ((replace(a, end=1050), b, e), f.size),  # an overlap
        ((a, e), f.size),  # short of the end
        ((e,), 1040),  # an empty data section
    ]:
        with pytest.raises(InvalidInputError, match="do not tile"):
            replace(f, tensors=tensors, size=size)
    assert replace(f, tensors=(replace(a, start=0), b, e)).header_end == 0  # an empty header region is allowed
    with pytest.raises(InvalidInputError, match="version 2"):
        Manifest(CS, (f,), version=1)
    with pytest.raises(InvalidInputError, match="version 2"):
        codec.StreamEncoder(CS, 1).add(f)
    with pytest.raises(InvalidInputError, match="not a tiled file"):
        _ = chunked_file(b"x", "c").header_end


def test_stream_encoder_in_both_versions_matches_encode() -> None:
    for m in (sample(), Manifest(CS, (chunked_file(b"x" * 3000, "a"),), version=1)):
        enc = codec.StreamEncoder(CS, m.version)
        raw = enc.header + b"".join(enc.add(e) for e in m.entries)
        trailer, digest = enc.finish()
        assert raw + trailer == codec.encode(m) and digest == codec.manifest_digest(m)


@pytest.mark.parametrize("mangle", [
    lambda f: f["header"].update(end=41),
    lambda f: f["header"].update(blake3="00"),
    lambda f: f["header"].pop("end"),
    lambda f: f.update(chunks=[]),
    lambda f: f.update(header="00" * 32),
    lambda f: f["tensors"].pop(0),
])
def test_malformed_tiled_json_is_a_format_error(mangle: object) -> None:
    doc = jsonform.to_json(sample())
    del doc["digest"]
    mangle(doc["files"][1])  # type: ignore[operator]
    with pytest.raises(FormatError):
        jsonform.from_json(doc)


def test_tiled_json_in_a_version_1_document_is_refused() -> None:
    doc = jsonform.to_json(sample())
    del doc["digest"]
    doc["version"] = 1
    with pytest.raises(FormatError, match="version 2"):
        jsonform.from_json(doc)


def test_digest_pairs_list_the_header_as_a_chunk_and_tensors_once() -> None:
    m = sample()
    pairs = list(codec.digest_pairs(m))
    f = m.files[1]
    tiled = [p for p in pairs if p[1] in {f.header, *(t.blake3 for t in f.tensors)}]
    assert ("chunk", f.header) in tiled
    assert sorted(k for k, _ in tiled) == ["chunk", "tensor", "tensor", "tensor"]


def test_diff_localises_a_change_to_the_header_or_a_tensor() -> None:
    data, _ = _content()
    old = Manifest(CS, (tiled_file(data),))
    head_changed = Manifest(CS, (tiled_file(b"h" + data[1:]),))
    assert {(d.what, d.detail) for d in compare(old, head_changed)} == {("file", ""), ("header", "[0, 40)")}
    b_changed = Manifest(CS, (tiled_file(data[:2000] + b"\x08" + data[2001:]),))
    assert {(d.what, d.detail) for d in compare(old, b_changed)} == {("file", ""), ("tensor", "b")}


def test_diff_across_layouts() -> None:
    data, _ = _content()
    tiled = Manifest(CS, (tiled_file(data),))
    chunks = chunked_file(data, "m.safetensors").chunks
    chunked = Manifest(CS, (replace(tiled.files[0], chunks=chunks, header=None),), version=1)
    assert compare(chunked, tiled) == []  # same bytes: nothing differs, whatever the pieces
    changed = Manifest(CS, (tiled_file(data[:-1] + b"\x00"),))
    whats = {(d.what, d.detail, d.expected) for d in compare(chunked, changed)}
    assert {(w, det) for w, det, _ in whats} == {("file", ""), ("layout", ""), ("tensor", "b")}
    assert ("layout", "", "chunks") in whats


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), st.integers(0, 20), st.permutations(range(6)))
def test_tiling_start_accepts_exactly_back_to_back_ranges(lengths: list[int], h: int, order: list[int]) -> None:
    spans, pos = [], h
    for n in lengths:
        spans.append((pos, pos + n))
        pos += n
    shuffled = [spans[i] for i in order if i < len(spans)]
    assert tiling_start(shuffled, pos) == (h if pos > h else None)
    assert tiling_start(shuffled, pos + 1) is None
    nonempty = [i for i, (s, e) in enumerate(spans) if e > s]
    if len(nonempty) > 1:  # drop a non-empty range after the first: a gap, or short of the end
        gap = spans[: nonempty[1]] + spans[nonempty[1] + 1 :]
        assert tiling_start(gap, pos) is None
