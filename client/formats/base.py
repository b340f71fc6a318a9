"""The reader protocol and helpers shared by the format readers.

A reader turns a model file (or folder) into named numpy arrays, one at a time, without
executing anything from the file. Every parse failure is a :class:`FormatError` whose
message names the file and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from client.errors import FormatError

Tensor = tuple[str, npt.NDArray[np.generic]]

MAX_TENSORS = 1_000_000
MAX_NDIM = 16
MAX_NAME = 4096


class Reader(Protocol):
    """A model source. ``tensors()`` yields (name, array) pairs; arrays are little-endian,
    C-ordered, owned by the caller, and only one needs to be held at a time. Names are
    unique within a model. Raises FormatError (naming ``path``) on malformed input."""

    path: Path

    def tensors(self) -> Iterator[Tensor]: ...


def fail(path: Path | str, problem: str) -> FormatError:
    return FormatError(f"{path}: {problem}")


def read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    """Read exactly n bytes or raise FormatError ('truncated')."""
    data = f.read(n)
    if len(data) != n:
        raise fail(path, f"truncated while reading {what} (wanted {n} bytes, got {len(data)})")
    return data


def read_array(
    f: BinaryIO, offset: int, dtype: np.dtype[np.generic], shape: tuple[int, ...], path: Path, what: str
) -> npt.NDArray[np.generic]:
    """Read a C-ordered array of ``dtype`` at ``offset`` into fresh memory (no mmap: RSS stays
    one tensor) and return it native little-endian."""
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    f.seek(offset)
    buf = np.empty(nbytes, dtype=np.uint8)
    got = f.readinto(buf.data)  # type: ignore[attr-defined]
    if got != nbytes:
        raise fail(path, f"truncated in {what} (wanted {nbytes} bytes at offset {offset}, got {got})")
    arr = buf.view(dtype).reshape(shape)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


#: float32 dtype tagged as widened from bfloat16, so digests can hash the stored bf16 bytes.
BF16_WIDENED = np.dtype(np.float32, metadata={"stored": "bfloat16"})


def bf16_to_f32(raw: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """bfloat16 bit patterns to float32 (exact), tagged with :data:`BF16_WIDENED`."""
    out: npt.NDArray[np.float32] = (raw.astype(np.uint32) << 16).view(BF16_WIDENED)
    return out


def file_size(path: Path) -> int:
    return os.stat(path).st_size


def check_shape(path: Path, name: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise fail(path, f"tensor {name!r} has a bad shape {shape!r}")
    dims = []
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0 or d > 1 << 40:
            raise fail(path, f"tensor {name!r} has a bad dimension {d!r}")
        dims.append(d)
    return tuple(dims)
