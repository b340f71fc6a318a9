"""safetensors: single files and sharded folders (``*.safetensors.index.json``).

Format: u64 LE header length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets":
[begin, end]}, "__metadata__": {...}}``, then the data; offsets are relative to the end of
the header. Checked: header bounds, dtype, offsets inside the file, and end - begin equal to
the size the dtype and shape imply.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from client.formats.base import MAX_NAME, MAX_TENSORS, Tensor, bf16_to_f32, check_shape, fail, file_size, read_array

MAX_HEADER = 100 * 1024 * 1024  # bytes

_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1",
    "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?",
}


def _header(path: Path) -> tuple[dict[str, Any], int]:
    size = file_size(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise fail(path, "truncated: no safetensors header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n + 8 > size:
            raise fail(path, f"not a safetensors file or truncated (header length {n}, file size {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(path, f"safetensors header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise fail(path, "safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise fail(path, f"{len(header)} tensors exceeds {MAX_TENSORS}")
    return header, 8 + n


class SafetensorsReader:
    """One ``.safetensors`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._header, self._base = _header(path)
        self._size = file_size(path)

    def names(self) -> list[str]:
        return sorted(self._header)

    def tensors(self) -> Iterator[Tensor]:
        entries = sorted(self._header.items(), key=lambda kv: _offsets(self.path, kv[0], kv[1])[0])
        with open(self.path, "rb") as f:
            for name, info in entries:
                yield name, self._read(f, name, info)

    def _read(self, f: Any, name: str, info: Any) -> np.ndarray[Any, Any]:
        if not isinstance(info, dict) or len(name.encode()) > MAX_NAME:
            raise fail(self.path, f"bad header entry for {name!r}")
        dtype_name = info.get("dtype")
        if dtype_name not in _DTYPES:
            raise fail(self.path, f"tensor {name!r} has unsupported dtype {dtype_name!r}")
        shape = check_shape(self.path, name, info.get("shape"))
        begin, end = _offsets(self.path, name, info)
        dtype = np.dtype(_DTYPES[dtype_name])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != count * dtype.itemsize:
            raise fail(self.path, f"tensor {name!r}: {end - begin} bytes for shape {list(shape)} {dtype_name}")
        if self._base + end > self._size:
            raise fail(self.path, f"truncated: tensor {name!r} ends at {self._base + end}, file has {self._size}")
        arr = read_array(f, self._base + begin, dtype, shape, self.path, f"tensor {name!r}")
        if dtype_name == "BF16":
            return bf16_to_f32(arr.view(np.uint16))
        return arr


def _offsets(path: Path, name: str, info: Any) -> tuple[int, int]:
    offs = info.get("data_offsets") if isinstance(info, dict) else None
    if (
        not isinstance(offs, list) or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        or not 0 <= offs[0] <= offs[1]
    ):
        raise fail(path, f"tensor {name!r} has bad data_offsets {offs!r}")
    return offs[0], offs[1]


class ShardedSafetensorsReader:
    """A folder of shards, listed by a ``*.safetensors.index.json`` (``weight_map``: name -> file),
    or, without an index, every ``*.safetensors`` file in the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if len(indexes) > 1:
            raise fail(path, "more than one *.safetensors.index.json")
        if indexes:
            try:
                index = json.loads(indexes[0].read_text())
                weight_map = index["weight_map"]
                files = sorted(set(weight_map.values()))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise fail(indexes[0], f"bad safetensors index ({err})") from err
            for fname in files:
                if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
                    raise fail(indexes[0], f"index names a file outside the folder: {fname!r}")
            self._shards = [SafetensorsReader(path / f) for f in files]
            listed = {n for s in self._shards for n in s.names()}
            missing = set(weight_map) - listed
            if missing:
                raise fail(indexes[0], f"index lists tensors not in any shard: {sorted(missing)[:5]}")
        else:
            files = sorted(p.name for p in path.glob("*.safetensors"))
            if not files:
                raise fail(path, "folder holds no .safetensors files")
            self._shards = [SafetensorsReader(path / f) for f in files]

    def tensors(self) -> Iterator[Tensor]:
        seen: set[str] = set()
        for shard in self._shards:
            for name, arr in shard.tensors():
                if name in seen:
                    raise fail(shard.path, f"tensor {name!r} appears in more than one shard")
                seen.add(name)
                yield name, arr
