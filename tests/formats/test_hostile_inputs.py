"""Issue 15, point 5: tensor files built to make a parser raise instead of refusing.

Each attack reproduces what the outside attack found (a RecursionError, a ValueError or BufferError from
numpy, gigabytes of memory for a few megabytes of zip); each must now be a FormatError whose message
names what was wrong, and ``provenance fingerprint`` (the reader path ``compare`` uses too) must exit 2.
``provenance hash`` hashes a file it cannot parse as plain bytes, by design (docs/manifest.md), and says why.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from client.errors import FormatError
from client.exit_codes import EXIT_USAGE
from client.formats import layout_of, open_model
from client.formats.source import PathSource
from tests.cli_kit import cli
from tests.descent_fixtures import _p_tensor, write_zip

REPO = Path(__file__).resolve().parents[2]


def _safetensors(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def _st_header(shape: list[int], offsets: tuple[int, int] = (0, 0)) -> bytes:
    return json.dumps({"t": {"dtype": "F32", "shape": shape, "data_offsets": list(offsets)}}).encode()


def _gguf(dims: list[int], type_id: int = 0) -> bytes:
    """One tensor ``t`` of GGUF ``dims`` (fastest axis first) and no data."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 0)
    out += struct.pack("<Q", 1) + b"t" + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
    out += struct.pack("<IQ", type_id, 0)
    return out + b"\x00" * (-len(out) % 32)


def _varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _onnx(dims: list[int]) -> bytes:
    """A model whose one FLOAT initializer ``t`` has ``dims`` and empty raw data."""
    tensor = b"".join(b"\x08" + _varint(d) for d in dims) + b"\x10\x01" + b"\x42\x01t" + b"\x4a\x00"
    graph = b"\x2a" + _varint(len(tensor)) + tensor
    return b"\x08\x08" + b"\x3a" + _varint(len(graph)) + graph


DEEP = 100_000

#: name -> (file name, bytes, what the message must say)
ATTACKS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "safetensors header nested 100,000 deep": (
        "deep.safetensors", lambda: _safetensors(b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}"), "nests 100001 levels"),
    "safetensors zero-size shape whose element count exceeds int64": (
        "wrap.safetensors", lambda: _safetensors(_st_header([1 << 32, 1 << 32, 4, 0])), "elements"),
    "safetensors zero-size shape numpy cannot allocate": (
        "huge.safetensors", lambda: _safetensors(_st_header([0, 1 << 40, 1 << 40, 1 << 40])), "elements"),
    "gguf [0, 2^62]": ("zero.gguf", lambda: _gguf([0, 1 << 62]), "exceeds"),
    "gguf [2^62, 0]": ("zero2.gguf", lambda: _gguf([1 << 62, 0]), "exceeds"),
    "onnx [2^33, 2^31, 4, 0]": ("wrap.onnx", lambda: _onnx([1 << 33, 1 << 31, 4, 0]), "elements"),
    "onnx [0, 2^40, 2^40]": ("huge.onnx", lambda: _onnx([0, 1 << 40, 1 << 40]), "elements"),
}


@pytest.mark.parametrize("case", list(ATTACKS))
def test_attack_is_a_format_error_naming_the_problem(tmp_path: Path, case: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    name, make, says = ATTACKS[case]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(FormatError, match=says):
        list(open_model(path).tensors())
    with PathSource(path) as src, pytest.raises(FormatError, match=says):
        layout_of(path.name, path.read_bytes()[:64], src)
    out = cli(capsys, "fingerprint", str(path), "-o", str(tmp_path / "x.plfp"), code=EXIT_USAGE)
    assert says in out and str(path) in out


def test_hash_says_why_a_hostile_tensor_file_is_hashed_as_plain_bytes(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.safetensors"
    path.write_bytes(ATTACKS["safetensors header nested 100,000 deep"][1]())
    cli(capsys, "hash", str(path), "--no-progress")
    assert "nests 100001 levels deep" in caplog.text


def test_shapes_at_the_bound_still_parse(tmp_path: Path) -> None:
    """The element-count bound refuses only absurd shapes: an empty tensor with a few large dims is fine."""
    path = tmp_path / "ok.safetensors"
    path.write_bytes(_safetensors(_st_header([0, 1 << 20, 1 << 20])))
    ((name, arr),) = list(open_model(path).tensors())
    assert name == "t" and arr.shape == (0, 1 << 20, 1 << 20)


def test_overlapping_safetensors_tensors_refused_by_fingerprint_and_compare(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "overlap.safetensors"
    path.write_bytes(_safetensors(header, bytes(8)))
    for args in (("fingerprint", str(path), "-o", str(tmp_path / "x.plfp")), ("compare", str(path), str(path))):
        assert "hole or overlap" in cli(capsys, *args, code=EXIT_USAGE)


# ---------------------------------------------------------------- zip members that inflate past what they declare

STORAGE_BYTES = 0xF000_0000  # 3.75 GiB: no zip64 needed
_BLOCK = 64 << 20


def _deflated_zeros(total: int) -> bytes:
    """A raw deflate stream of ``total`` zero bytes (a multiple of 64 MiB): one fully flushed block repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (total // _BLOCK) + c.flush()


def _zip_entry(name: str, data: bytes, size: int, method: int, crc: int, offset: int) -> tuple[bytes, bytes]:
    raw = name.encode()
    fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0)
    local = b"PK\x03\x04" + fields + raw + data
    central = b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, offset) + raw
    return local, central


def _zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip of (name, stored bytes, declared uncompressed size, method, crc) entries, written by hand."""
    body, directory = b"", b""
    for name, data, size, method, crc in entries:
        local, central = _zip_entry(name, data, size, method, crc, len(body))
        body += local
        directory += central
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return body + directory + end


def _torch_bomb(declared_in_pickle: int) -> bytes:
    """A PyTorch zip whose one storage is a deflated 3.75 GiB of zeros in about 4 MB of file."""
    numel = declared_in_pickle // 4
    view = np.broadcast_to(np.zeros(1, np.float32), (numel,))  # shape and dtype only: nothing allocated
    pkl = b"\x80\x02}(" + b"X\x01\x00\x00\x00w" + _p_tensor("0", view) + b"u."
    return _zip([("archive/data.pkl", pkl, len(pkl), 0, zlib.crc32(pkl)),
                 ("archive/byteorder", b"little", 6, 0, zlib.crc32(b"little")),
                 ("archive/data/0", _deflated_zeros(STORAGE_BYTES), STORAGE_BYTES, 8, 0)])


def _run_limited(args: list[str], limit_bytes: int) -> subprocess.CompletedProcess[str]:
    """``provenance ARGS`` in a child whose address space is capped (so a parser cannot take the memory)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, preexec_fn=cap, check=False)


MEMORY_CAP = 1536 << 20


@pytest.mark.parametrize(("declared", "says"), [
    (STORAGE_BYTES, "inflates"),  # the pickle and the zip agree on 3.75 GiB: a 900:1 inflation
    (16, "declares"),  # the pickle says 16 bytes, the zip entry 3.75 GiB
])
def test_torch_zip_bomb_is_refused_within_bounded_memory(tmp_path: Path, declared: int, says: str) -> None:
    path = tmp_path / "bomb.pt"
    path.write_bytes(_torch_bomb(declared))
    assert path.stat().st_size < 8 << 20
    got = _run_limited(["fingerprint", str(path), "-o", str(tmp_path / "x.plfp")], MEMORY_CAP)
    assert got.returncode == EXIT_USAGE, got.stderr[-2000:]
    assert says in got.stderr and "archive/data/0" in got.stderr


def test_npz_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    """The same for an .npz entry: its .npy header declares a 3.75 GiB array, deflated to 4 MB."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (STORAGE_BYTES // 4,)}
    text = repr(header).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    npy_head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(npy_head + bytes(_BLOCK - len(npy_head))) + c.flush(zlib.Z_FULL_FLUSH)
    rest = c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)
    data = first + rest * (STORAGE_BYTES // _BLOCK) + c.flush()
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip([("w.npy", data, STORAGE_BYTES + _BLOCK, 8, 0)]))
    got = _run_limited(["fingerprint", str(path), "-o", str(tmp_path / "x.plfp")], MEMORY_CAP)
    assert got.returncode == EXIT_USAGE, got.stderr[-2000:]
    assert "inflates" in got.stderr and "w.npy" in got.stderr


def test_small_compressed_storage_still_reads(tmp_path: Path) -> None:
    """A deflated storage (torch never writes one, zip tools may) within the bound reads as before."""
    arr = np.arange(4096, dtype=np.float32)
    pkl = b"\x80\x02}(" + b"X\x01\x00\x00\x00w" + _p_tensor("0", arr) + b"u."
    path = tmp_path / "small.pt"
    write_zip(path, {"archive/data.pkl": pkl, "archive/byteorder": b"little"})
    raw = arr.tobytes()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    path.write_bytes(_zip([("archive/data.pkl", pkl, len(pkl), 0, zlib.crc32(pkl)),
                           ("archive/data/0", c.compress(raw) + c.flush(), len(raw), 8, zlib.crc32(raw))]))
    ((name, got),) = list(open_model(path).tensors())
    assert name == "w" and np.array_equal(got, arr)
