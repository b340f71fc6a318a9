"""NumPy ``.npy`` files and ``.npz`` archives (numpy.lib.format), never unpickled.

A ``.npy`` file is a magic string, a version, a header (a Python literal dict giving ``descr``,
``fortran_order`` and ``shape``, parsed by numpy with ``ast.literal_eval``, never executed) and
the data. An ``.npz`` is a zip archive of ``.npy`` entries. Object arrays (which would need
pickle) are refused.

Regions (manifests): a C-order array of a numeric dtype is one byte range (``byteswap`` when it
is stored big-endian); a Fortran-order array (more than one axis longer than 1), a non-numeric
dtype and an entry of a compressed archive (``np.savez_compressed``) have no byte range of
row-major elements and are left out of the digests, with that reason. ``.npy`` files record the
format ``npy``, archives ``npz``.
"""

from __future__ import annotations

import tokenize
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from client.formats._zip import check_inflation, member_span, open_zip
from client.formats.arrays import Tensor, dtype_name
from client.formats.base import MAX_TENSORS, Layout, TensorRegion, check_dims, element_count, fail
from client.formats.source import PathSource, Source, open_stream

# numpy parses the .npy header with ast/tokenize (SyntaxError, TokenError); zipfile refuses
# encrypted members (RuntimeError) and unknown compression methods (NotImplementedError).
_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, SyntaxError, tokenize.TokenError, MemoryError,
           RuntimeError, NotImplementedError, UnicodeDecodeError)


@dataclass(frozen=True)
class _Npy:
    name: str
    member: str  # its zip entry ("" in an .npy file)
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]
    fortran: bool
    start: int  # -1: inside a compressed entry
    nbytes: int


def _header(f: IO[bytes], where: str, name: str) -> tuple[np.dtype[np.generic], tuple[int, ...], bool]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise fail(where, f"array {name!r}: unsupported .npy version {version}")
    except _ERRORS as err:
        raise fail(where, f"array {name!r} is not a readable .npy ({err})") from err
    if dtype.hasobject:
        raise fail(where, f"array {name!r} cannot be read without pickle (object dtype)")
    return dtype, check_dims(where, name, list(shape)), bool(fortran)


def _npy(source: Source, name: str, start: int, end: int, member: str = "") -> _Npy:
    f = open_stream(source)
    f.seek(start)
    dtype, shape, fortran = _header(f, source.name, name)
    data = f.tell()
    nbytes = element_count(shape) * dtype.itemsize
    if data + nbytes > end:
        raise fail(source.name, f"truncated: array {name!r} ends past the end of its data")
    return _Npy(name, member, dtype, shape, fortran, data, nbytes)


def _entries(source: Source) -> list[_Npy]:
    """The arrays of an .npz archive; a compressed entry's header is read through zipfile."""
    try:
        with open_zip(source) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_TENSORS:
                raise fail(source.name, f"{len(infos)} arrays exceeds {MAX_TENSORS}")
            out = []
            for info in infos:
                name = info.filename.removesuffix(".npy")
                if info.compress_type == zipfile.ZIP_STORED:
                    span = member_span(source, info)
                    assert span is not None
                    out.append(_npy(source, name, span[0], span[0] + span[1], info.filename))
                else:
                    with zf.open(info) as fp:
                        dtype, shape, fortran = _header(fp, source.name, name)
                    nbytes = element_count(shape) * dtype.itemsize
                    out.append(_Npy(name, info.filename, dtype, shape, fortran, -1, nbytes))
            return out
    except _ERRORS as err:
        raise fail(source.name, f"not a readable .npz archive ({err})") from err


def _region(a: _Npy) -> TensorRegion | str:
    if a.start < 0:
        return "entry of a compressed archive (np.savez_compressed): no byte range"
    if a.fortran and sum(d > 1 for d in a.shape) > 1:
        return "Fortran-order array: elements not stored in row-major order"
    name = dtype_name(a.dtype)
    if name is None or a.dtype.fields is not None:
        return f"dtype {a.dtype.str} has no tensor digest definition"
    width = a.dtype.itemsize // 2 if a.dtype.kind == "c" else a.dtype.itemsize
    swap = width if a.dtype.byteorder == ">" and width > 1 else 0
    return TensorRegion(a.name, name, a.shape, a.start, a.start + a.nbytes, byteswap=swap)


def _arrays(source: Source) -> tuple[str, list[_Npy]]:
    head = source.read(0, min(6, source.size), "magic")
    if head.startswith(b"\x93NUMPY"):
        return "npy", [_npy(source, Path(source.name).stem, 0, source.size)]
    return "npz", _entries(source)


def layout(source: Source) -> Layout:
    """Regions of an .npy file or .npz archive, sorted by name."""
    fmt, arrays = _arrays(source)
    regions: dict[str, TensorRegion] = {}
    skipped = []
    for a in arrays:
        r = _region(a)
        if isinstance(r, str):
            skipped.append((a.name, r))
        elif r.name in regions:
            raise fail(source.name, f"array {r.name!r} appears twice")
        else:
            regions[r.name] = r
    return Layout(fmt, tuple(regions[n] for n in sorted(regions)), tuple(skipped))


def _native(arr: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


class NpzReader:
    """An .npy file (one array, named after the file) or an .npz archive."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        with PathSource(self.path) as src:
            _fmt, arrays = _arrays(src)
            zf = open_zip(src) if any(a.start < 0 for a in arrays) else None
            try:
                for a in arrays:
                    if a.start >= 0:
                        raw = src.array(a.start, a.nbytes, f"array {a.name!r}")
                    else:
                        assert zf is not None
                        info = zf.getinfo(a.member)
                        check_inflation(info, src.name)
                        if a.nbytes > info.file_size:
                            raise fail(src.name, f"truncated: array {a.name!r} of {a.nbytes} bytes in archive entry "
                                                 f"{a.member} of {info.file_size}")
                        try:
                            with zf.open(a.member) as fp:
                                _header(fp, src.name, a.name)
                                raw = np.frombuffer(bytearray(fp.read(a.nbytes)), dtype=np.uint8)
                        except _ERRORS as err:
                            raise fail(src.name, f"array {a.name!r} is damaged ({err})") from err
                        if raw.size != a.nbytes:
                            raise fail(src.name, f"truncated: array {a.name!r}")
                    arr = raw.view(a.dtype).reshape(a.shape, order="F" if a.fortran else "C")
                    yield a.name, _native(arr)
            finally:
                if zf is not None:
                    zf.close()
