"""Readers: model files in, named numpy arrays out, nothing from the file executed.

:func:`open_model` picks the reader from the file's first bytes (and, for folders, from the
files inside): safetensors, PyTorch zip or legacy pickle, ONNX, GGUF, NumPy .npz/.npy.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from client.formats.base import Reader, Tensor, fail
from client.formats.gguf import GgufReader
from client.formats.npz import NpzReader
from client.formats.onnx import OnnxReader
from client.formats.safetensors import SafetensorsReader, ShardedSafetensorsReader
from client.formats.torch_pickle import TorchLegacyReader, TorchZipReader

__all__ = ["Reader", "Tensor", "open_model", "detect_format"]


def detect_format(path: Path) -> str:
    """One of safetensors, safetensors-sharded, torch-zip, torch-legacy, onnx, gguf, npz, npy.

    Raises FormatError (naming the file) if it is none of them.
    """
    if path.is_dir():
        if any(path.glob("*.safetensors")):
            return "safetensors-sharded"
        raise fail(path, "folder holds no model files (*.safetensors)")
    if not path.is_file():
        raise fail(path, "no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise fail(path, "empty file")
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        # NotImplementedError: an unknown zip version; UnicodeDecodeError: a name flagged UTF-8 that is not.
        except (zipfile.BadZipFile, OSError, NotImplementedError, UnicodeDecodeError) as err:
            raise fail(path, f"damaged or truncated zip archive ({err})") from err
        if any(n.endswith("/data.pkl") for n in names):
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise fail(path, "zip archive is neither a PyTorch checkpoint nor an .npz")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy"
    if len(head) >= 8:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and n < 100 * 1024 * 1024:
            return "safetensors"
    if path.suffix == ".onnx" or head[:1] == b"\x08":  # ModelProto field 1 (ir_version), varint
        return "onnx"
    raise fail(path, "unrecognised model format (not safetensors, PyTorch, ONNX, GGUF or NumPy)")


_READERS: dict[str, Callable[[Path], Reader]] = {
    "safetensors": SafetensorsReader,
    "safetensors-sharded": ShardedSafetensorsReader,
    "torch-zip": TorchZipReader,
    "torch-legacy": TorchLegacyReader,
    "onnx": OnnxReader,
    "gguf": GgufReader,
    "npz": NpzReader,
    "npy": NpzReader,
}


def open_model(path: Path | str) -> Reader:
    p = Path(path)
    reader: Reader = _READERS[detect_format(p)](p)
    return reader
