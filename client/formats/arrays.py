"""The numpy side of the format layer: the reader protocol and arrays from stored bytes.

Kept apart from :mod:`.base` so that hashing (which needs regions, not arrays) does not import numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from client.formats.base import NUMPY_DTYPES

Tensor = tuple[str, npt.NDArray[np.generic]]

_NAMES_OF_NUMPY: dict[str, str] = {
    "f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
    "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8", "b1": "BOOL", "c8": "C64", "c16": "C128",
}


def dtype_name(dtype: np.dtype[np.generic]) -> str | None:
    """The manifest dtype name of a numeric numpy dtype (byte order ignored), or None."""
    return _NAMES_OF_NUMPY.get(f"{dtype.kind}{dtype.itemsize}")


class Reader(Protocol):
    """A model source. ``tensors()`` yields (name, array) pairs; arrays are little-endian,
    C-ordered, owned by the caller, and only one needs to be held at a time. Names are
    unique within a model. Raises FormatError (naming ``path``) on malformed input."""

    path: Path

    def tensors(self) -> Iterator[Tensor]: ...


#: float32 dtype tagged as widened from bfloat16, so digests can hash the stored bf16 bytes.
BF16_WIDENED = np.dtype(np.float32, metadata={"stored": "bfloat16"})


def bf16_to_f32(raw: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """bfloat16 bit patterns to float32 (exact), tagged with :data:`BF16_WIDENED`."""
    wide = raw.astype(np.uint32)
    wide <<= 16  # in place: one temporary fewer than ``raw.astype(...) << 16``
    out: npt.NDArray[np.float32] = wide.view(BF16_WIDENED)
    return out


def as_array(raw: npt.NDArray[np.uint8], dtype: str, shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    """The array of manifest ``dtype`` stored little-endian in ``raw`` (BF16 widened to float32)."""
    arr = raw.view(np.dtype(NUMPY_DTYPES[dtype])).reshape(shape)
    if dtype == "BF16":
        return bf16_to_f32(arr.view(np.uint16))
    return arr
