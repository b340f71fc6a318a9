"""The manifest model, its canonical encoding and JSON form: round trips, strictness, digest binding."""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.manifest import codec, jsonform
from client.core.manifest.errors import DigestMismatchError, UnsupportedVersionError
from client.core.manifest.model import FileEntry, Manifest, SymlinkEntry, TensorEntry
from client.errors import FormatError, InvalidInputError, VerificationError
from tests.test_manifest_support import assert_flips_refused_or_change_digest

CS = 1024


def _file(path: str, content: bytes, tensors: tuple[TensorEntry, ...] = (), fmt: str = "") -> FileEntry:
    chunks = tuple(blake3.blake3(content[o : o + CS]).digest() for o in range(0, len(content), CS))
    return FileEntry(path, len(content), blake3.blake3(content).digest(), chunks, fmt, tensors)


def _tensor(name: str, start: int = 0, end: int = 8) -> TensorEntry:
    return TensorEntry(name, "F32", (2,), start, end, blake3.blake3(name.encode()).digest())


def sample() -> Manifest:
    return Manifest(
        chunk_size=CS,
        entries=(
            _file("a-b", b"x" * 3000),
            _file("a/model.safetensors", b"y" * 100, (_tensor("w"), _tensor("z", 8, 16)), "safetensors"),
            SymlinkEntry("a/z-link", "model.safetensors"),
            _file("empty", b""),
        ),
    )


def test_round_trip_canonical_and_json() -> None:
    m = sample()
    raw = codec.encode(m)
    assert raw.startswith(codec.MAGIC)
    assert codec.decode(raw) == m
    doc = json.loads(json.dumps(jsonform.to_json(m)))
    assert jsonform.from_json(doc) == m
    assert doc["digest"] == codec.manifest_digest(m).hex() == blake3.blake3(raw).hexdigest()
    assert doc["files"][0]["chunks"][0] == blake3.blake3(b"x" * CS).hexdigest()
    assert doc["files"][1]["tensors"][0] == {
        "name": "w", "dtype": "F32", "shape": [2], "start": 0, "end": 8, "blake3": blake3.blake3(b"w").hexdigest()
    }


def test_every_truncation_is_refused() -> None:
    raw = codec.encode(sample())
    for n in range(len(raw)):
        with pytest.raises(FormatError):
            codec.decode(raw[:n])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(FormatError, match="trailing"):
        codec.decode(codec.encode(sample()) + b"\x00")


def test_every_flipped_byte_is_refused_or_changes_the_digest() -> None:
    """Mangle each byte: the decoder refuses it, or it decodes to a different manifest (different digest)."""
    assert_flips_refused_or_change_digest(codec.encode(sample()))


def test_unknown_future_version_is_refused() -> None:
    raw = bytearray(codec.encode(sample()))
    for version in (0, 3, 0xFFFF):
        struct.pack_into(">H", raw, len(codec.MAGIC), version)
        with pytest.raises(UnsupportedVersionError, match=f"version {version} "):
            codec.decode(bytes(raw))
    doc = jsonform.to_json(sample())
    doc["version"] = 3
    with pytest.raises(UnsupportedVersionError):
        jsonform.from_json(doc)


def test_digest_binds_chunk_size_paths_sizes_and_digests() -> None:
    m = sample()
    d = codec.manifest_digest(m)
    content = b"q" * 3000
    a = Manifest(CS, (_file("f", content),))
    b = Manifest(2 * CS, (FileEntry("f", 3000, a.files[0].blake3, (
        blake3.blake3(content[:2048]).digest(), blake3.blake3(content[2048:]).digest())),))
    assert codec.manifest_digest(a) != codec.manifest_digest(b)
    renamed = Manifest(CS, (replace(m.entries[0], path="a-c"), *m.entries[1:]))
    assert codec.manifest_digest(renamed) != d
    t = m.files[1].tensors
    retensored = replace(m.files[1], tensors=(replace(t[0], shape=(1, 2)), t[1]))
    assert codec.manifest_digest(Manifest(CS, (m.entries[0], retensored, *m.entries[2:]))) != d


def test_json_digest_mismatch_is_a_verification_error() -> None:
    doc = jsonform.to_json(sample())
    doc["files"][0]["size"] = 3000  # unchanged: still fine
    jsonform.from_json(doc)
    doc["files"][0]["blake3"] = "00" * 32
    with pytest.raises(DigestMismatchError) as e:
        jsonform.from_json(doc)
    assert isinstance(e.value, VerificationError)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(chunk_size=1000),
        lambda d: d.update(algorithm="sha256"),
        lambda d: d["files"][0].update(size="3000"),
        lambda d: d["files"][0].update(size=True),
        lambda d: d["files"][0].update(blake3="AA" * 32),
        lambda d: d["files"][0]["chunks"].pop(),
        lambda d: d["files"][0].update(path="../escape"),
        lambda d: d["files"][0].update(path="/abs"),
        lambda d: d["files"][0].update(path="a//b"),
        lambda d: d["files"][1]["tensors"][0].update(shape=[2.0]),
        lambda d: d["files"][1].pop("tensor_format"),
        lambda d: d["files"].append(dict(d["files"][0])),
    ],
)
def test_malformed_json_is_a_format_error(mangle: object) -> None:
    doc = jsonform.to_json(sample())
    del doc["digest"]
    mangle(doc)  # type: ignore[operator]
    with pytest.raises(FormatError):
        jsonform.from_json(doc)


def test_invariants() -> None:
    f = _file("a", b"x")
    with pytest.raises(InvalidInputError, match="at least one"):
        Manifest(CS, ())
    with pytest.raises(InvalidInputError, match="sorted"):
        Manifest(CS, (_file("b", b""), f))
    with pytest.raises(InvalidInputError, match="sorted"):
        Manifest(CS, (f, f))
    with pytest.raises(InvalidInputError, match="under a non-directory"):
        Manifest(CS, (f, _file("a/b", b"")))
    with pytest.raises(InvalidInputError, match="chunk digests"):
        Manifest(2 * CS, (_file("big", b"x" * 3000),))
    with pytest.raises(InvalidInputError, match="power of two"):
        Manifest(1000, (f,))
    with pytest.raises(InvalidInputError, match="one-chunk"):
        Manifest(CS, (replace(f, chunks=(b"\x00" * 32,)),))
    with pytest.raises(InvalidInputError, match="sorted by name"):
        replace(sample().files[1], tensors=tuple(reversed(sample().files[1].tensors)))
    with pytest.raises(InvalidInputError, match="past the file"):
        _file("t", b"y" * 4, (_tensor("w", 0, 8),), "safetensors")


def test_digest_pairs_list_every_digest() -> None:
    m = sample()
    pairs = list(codec.digest_pairs(m))
    assert pairs[0] == ("manifest", codec.manifest_digest(m))
    kinds = [k for k, _ in pairs]
    assert kinds.count("file") == 3
    assert kinds.count("chunk") == 3 + 1
    assert kinds.count("tensor") == 2


@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=4), st.sampled_from([1024, 2048, 4096]))
def test_round_trip_property(contents: list[bytes], cs: int) -> None:
    entries = []
    for i, c in enumerate(contents):
        chunks = tuple(blake3.blake3(c[o : o + cs]).digest() for o in range(0, len(c), cs))
        entries.append(FileEntry(f"d/f{i}", len(c), blake3.blake3(c).digest(), chunks))
    m = Manifest(cs, tuple(entries))
    assert codec.decode(codec.encode(m)) == m
    assert jsonform.from_json(jsonform.to_json(m)) == m


def test_stream_encoder_matches_and_enforces_order() -> None:
    m = sample()
    enc = codec.StreamEncoder(m.chunk_size)
    raw = enc.header + b"".join(enc.add(e) for e in m.entries)
    trailer, digest = enc.finish()
    assert raw + trailer == codec.encode(m)
    assert digest == codec.manifest_digest(m)
    enc = codec.StreamEncoder(m.chunk_size)
    enc.add(m.entries[1])
    with pytest.raises(InvalidInputError, match="sorted"):
        enc.add(m.entries[0])
    with pytest.raises(InvalidInputError, match="at least one"):
        codec.StreamEncoder(CS).finish()
