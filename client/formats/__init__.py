"""The tensor-format layer: one parser per format, serving both manifests and readers.

One module per format: :mod:`.safetensors`, :mod:`.gguf`, :mod:`.onnx`, :mod:`.pytorch` (zip and
legacy pickle, through the restricted unpickler), :mod:`.npz` (``.npy`` and ``.npz``). Each parses a
file once, through a bounded :class:`~client.formats.source.Source`, into a
:class:`~client.formats.base.Layout` (per tensor: name, dtype, shape, where its bytes lie) and
reads numpy arrays from that same layout. Nothing from a file is executed; every failure is a
``TensorFormatError`` naming the file and the problem.

Two entry points:

* manifests (:mod:`client.hashing`): :func:`claims` says from a file's name and first
  :data:`HEAD_BYTES` bytes whether it may hold tensors, :func:`layout_of` parses it, and
  :func:`element_bytes` yields the element bytes of a region that cannot be hashed in place;
* readers (descent, compare): :func:`detect_format` and :func:`open_model`.

The format names recorded in manifests (``tensor_format``, part of the manifest digest) are
:data:`FORMATS`: never rename one.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# The format modules (and numpy) load on first use: hashing plain files never needs them.
if TYPE_CHECKING:
    from client.formats.arrays import Reader
    from client.formats.base import Layout, TensorRegion
    from client.formats.source import Source

__all__ = ["FORMATS", "HEAD_BYTES", "LEGACY_HEAD", "LEGACY_MAGIC", "claimed_by", "claims", "detect_format",
           "element_bytes", "layout_of", "open_model"]

#: How many leading bytes of a file :func:`claims` is shown.
HEAD_BYTES = 64
FORMATS = ("safetensors", "gguf", "onnx", "pytorch", "npy", "npz")
#: The PyTorch legacy format's magic number, and the file's first bytes: that number pickled with
#: protocol 2 (PROTO 2, LONG1 of 10 bytes), as torch.save writes it.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_HEAD = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
_SWAP_BLOCK = 16 << 20
_SUFFIXES = (".safetensors", ".onnx")
_MAGICS = (b"GGUF", b"\x93NUMPY", LEGACY_HEAD, b"PK\x03\x04")


def claimed_by(filename: str, head: bytes) -> str | None:
    """Which format a file may be, from its name and first HEAD_BYTES bytes: ``*.safetensors``,
    ``*.onnx``, or GGUF, NumPy, PyTorch legacy or zip magic ("pytorch or npz": a zip is only a
    tensor file if :func:`layout_of` finds one inside); None for any other file."""
    if filename.endswith(".safetensors"):
        return "safetensors"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(LEGACY_HEAD):
        return "pytorch"
    if head.startswith(b"PK\x03\x04"):
        return "pytorch or npz"
    if filename.endswith(".onnx"):
        return "onnx"
    return None


def claims(filename: str, head: bytes) -> bool:
    """Whether :func:`layout_of` may find tensors in the file (see :func:`claimed_by`).

    The same test as ``claimed_by(...) is not None`` in one expression: it runs for every file hashed.
    """
    return filename.endswith(_SUFFIXES) or head.startswith(_MAGICS)


def layout_of(filename: str, head: bytes, source: Source) -> Layout | None:
    """The layout of a claimed file, or None for a file no format claims and for a zip archive
    that is neither a PyTorch checkpoint nor an .npz. Raises TensorFormatError when it does not parse."""
    candidate = claimed_by(filename, head)
    if candidate in ("pytorch or npz", "npy", "pytorch"):
        from client.formats import npz, pytorch
        from client.formats._zip import open_zip
    if candidate == "pytorch or npz":
        with open_zip(source) as zf:
            names = zf.namelist()
        if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
            return pytorch.layout(source)
        if names and all(n.endswith(".npy") for n in names):
            return npz.layout(source)
        return None
    if candidate == "safetensors":
        from client.formats import safetensors

        return safetensors.layout(source)
    if candidate == "gguf":
        from client.formats import gguf

        return gguf.layout(source)[1]
    if candidate == "npy":
        return npz.layout(source)
    if candidate == "pytorch":
        return pytorch.layout(source)
    if candidate == "onnx":
        from client.formats import onnx

        return onnx.layout(source)
    return None


def element_bytes(region: TensorRegion, read: Callable[[int, int], bytes]) -> Iterator[bytes]:
    """The little-endian element bytes of a region that is not plain, in bounded pieces.

    ``read(offset, length)`` returns exactly those bytes of the file.
    """
    import numpy as np

    from client.formats import onnx
    from client.formats.base import fail

    if region.encoding == onnx.VARINT:
        yield from onnx.varint_elements(read, region)
        return
    if region.encoding:
        raise fail(region.name, f"unknown region encoding {region.encoding!r}")
    width = region.byteswap or 1
    block = _SWAP_BLOCK - _SWAP_BLOCK % width
    for off in range(region.start, region.end, block):
        raw = read(off, min(block, region.end - off))
        if width == 1:
            yield raw
        else:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)[:, ::-1].tobytes()


def detect_format(path: Path) -> str:
    """One of safetensors, safetensors-sharded, torch-zip, torch-legacy, onnx, gguf, npz, npy.

    Raises FormatError (naming the file) if it is none of them.
    """
    from client.formats.base import fail
    from client.formats.safetensors import MAX_HEADER_SIZE

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
        if head[8:9] == b"{" and n < MAX_HEADER_SIZE:
            return "safetensors"
    if path.suffix == ".onnx" or head[:1] == b"\x08":  # ModelProto field 1 (ir_version), varint
        return "onnx"
    raise fail(path, "unrecognised model format (not safetensors, PyTorch, ONNX, GGUF or NumPy)")


def open_model(path: Path | str) -> Reader:
    """The reader for a model file or folder (format from its first bytes; see :func:`detect_format`)."""
    from client.formats.gguf import GgufReader
    from client.formats.npz import NpzReader
    from client.formats.onnx import OnnxReader
    from client.formats.pytorch import TorchReader
    from client.formats.safetensors import SafetensorsReader, ShardedSafetensorsReader

    readers: dict[str, Callable[[Path], Reader]] = {
        "safetensors": SafetensorsReader,
        "safetensors-sharded": ShardedSafetensorsReader,
        "torch-zip": TorchReader,
        "torch-legacy": TorchReader,
        "onnx": OnnxReader,
        "gguf": GgufReader,
        "npz": NpzReader,
        "npy": NpzReader,
    }
    p = Path(path)
    reader: Reader = readers[detect_format(p)](p)
    return reader
