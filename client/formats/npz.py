"""NumPy ``.npz`` archives (and single ``.npy`` files), loaded with ``allow_pickle=False``.

Object arrays (which would need pickle) are refused. Each array is read only when yielded.
"""

from __future__ import annotations

import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from client.formats.base import MAX_TENSORS, Tensor, fail

# numpy parses the .npy header with ast/tokenize (SyntaxError, TokenError) and allocates the
# array the header claims before reading it (MemoryError); zipfile refuses encrypted members
# (RuntimeError) and unknown compression methods (NotImplementedError).
_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, SyntaxError, tokenize.TokenError, MemoryError,
           RuntimeError, NotImplementedError)


class NpzReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        if self.path.suffix == ".npy":
            yield self.path.stem, self._load_npy()
            return
        try:
            archive = np.load(self.path, allow_pickle=False)
        except _ERRORS as err:
            raise fail(self.path, f"not a readable .npz archive ({err})") from err
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise fail(self.path, "expected an .npz archive")
        with archive:
            if len(archive.files) > MAX_TENSORS:
                raise fail(self.path, f"{len(archive.files)} arrays exceeds {MAX_TENSORS}")
            for name in archive.files:
                try:
                    arr = archive[name]
                except _ERRORS as err:
                    problem = f"array {name!r} cannot be read without pickle or is damaged ({err})"
                    raise fail(self.path, problem) from err
                yield name, _native(arr)

    def _load_npy(self) -> np.ndarray:
        try:
            arr = np.load(self.path, allow_pickle=False)
        except _ERRORS as err:
            raise fail(self.path, f"not a readable .npy file ({err})") from err
        return _native(arr)


def _native(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr
