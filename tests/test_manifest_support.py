"""Helpers shared by the manifest tests (no tests here): the one safetensors writer of the tests, and trees.

:func:`safetensors_file` is the container (u64 header length, header, data); :func:`safetensors_bytes`
lays tensors out in it. Every test that needs a safetensors file goes through these two
(``tests.descent_fixtures.write_safetensors`` converts numpy arrays and calls :func:`safetensors_bytes`).
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

TensorSpec = tuple[str, list[int], bytes]  # dtype, shape, raw little-endian bytes

_ITEM = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "I32": 4, "F64": 8}
#: numpy dtype name -> safetensors dtype
ST_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "uint8": "U8", "int32": "I32",
             "int64": "I64", "bool": "BOOL", "int16": "I16"}


def tensor(dtype: str, shape: list[int], seed: int) -> TensorSpec:
    n = 1
    for d in shape:
        n *= d
    rng = random.Random(seed)
    return dtype, shape, rng.randbytes(n * _ITEM[dtype])


def safetensors_file(header: object, data: bytes = b"", *, pad: bytes = b"") -> bytes:
    """The safetensors container: u64 LE length, the header (a JSON value, or bytes as they are)
    followed by ``pad``, then ``data``. Writes malformed files as readily as valid ones."""
    h = (header if isinstance(header, bytes) else json.dumps(header).encode()) + pad
    return struct.pack("<Q", len(h)) + h + data


def safetensors_bytes(
    tensors: dict[str, TensorSpec],
    *,
    header_order: list[str] | None = None,
    data_order: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    pad: int = 0,
    align: int = 1,
) -> bytes:
    """A safetensors file: tensors laid out in ``data_order``, header keys in ``header_order``,
    the header padded with ``pad`` spaces, then with spaces to a multiple of ``align`` bytes."""
    data_order = data_order or list(tensors)
    header_order = header_order or list(tensors)
    offsets: dict[str, list[int]] = {}
    blobs: list[bytes] = []
    off = 0
    for name in data_order:
        raw = tensors[name][2]
        offsets[name] = [off, off + len(raw)]
        blobs.append(raw)
        off += len(raw)
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in header_order:
        dtype, shape, _ = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets[name]}
    size = len(json.dumps(header).encode()) + pad
    return safetensors_file(header, b"".join(blobs), pad=b" " * (pad + -size % align))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def model_tensors(seed: int = 0) -> dict[str, TensorSpec]:
    return {
        "embed.weight": tensor("F32", [64, 40], seed),
        "layer.0.attn.weight": tensor("F16", [40, 40], seed + 1),
        "layer.0.bias": tensor("F32", [40], seed + 2),
        "layer.1.weight": tensor("BF16", [3, 700], seed + 3),
        "steps": tensor("I64", [], seed + 4),
    }


def model_folder(root: Path, seed: int = 0) -> Path:
    """A small Hugging Face style folder: two safetensors shards, an index, a config, a tokenizer."""
    t = model_tensors(seed)
    names = sorted(t)
    a, b = names[:3], names[3:]
    write(root / "model-00001-of-00002.safetensors", safetensors_bytes({n: t[n] for n in a}, metadata={"format": "pt"}))
    write(root / "model-00002-of-00002.safetensors", safetensors_bytes({n: t[n] for n in b}))
    index = {"metadata": {}, "weight_map": {**{n: "model-00001-of-00002.safetensors" for n in a},
                                            **{n: "model-00002-of-00002.safetensors" for n in b}}}
    write(root / "model.safetensors.index.json", json.dumps(index, sort_keys=True).encode())
    write(root / "config.json", b'{"hidden_size": 40}\n')
    write(root / "tokenizer" / "vocab.txt", "\n".join(f"tok{i}" for i in range(500)).encode())
    return root


def dataset_folder(root: Path, files: int = 50, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for i in range(files):
        write(root / f"shard-{i // 10:02d}" / f"part-{i:05d}.bin", rng.randbytes(rng.randrange(0, 5000)))
    return root


def assert_flips_refused_or_change_digest(raw: bytes) -> None:
    """Flip one bit of each byte of an encoded manifest: the decoder refuses it, or it decodes to
    a manifest with a different digest (never silently the same manifest)."""
    from client.core.manifest import codec
    from client.errors import FormatError

    digest = codec.manifest_digest(codec.decode(raw))
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        try:
            other = codec.decode(bytes(bad))
        except FormatError:
            continue
        assert codec.manifest_digest(other) != digest, i
