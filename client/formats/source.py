"""Bounded random access to a file's bytes: the only I/O a format parser does.

A :class:`Source` has a ``size`` and ``read(offset, length)``, which returns exactly ``length``
bytes or raises: :class:`TensorFormatError` ("truncated") for a range past ``size``, and
:class:`FileChangedError` if the file holds fewer bytes than its size said (it shrank meanwhile).
Three sources: a path (readers), an open descriptor (the hasher's, borrowed) and bytes in memory
(small files the hasher has already read). :func:`mapped` gives the whole file as one read-only
buffer (ONNX is a protobuf and has no index); :class:`SourceIO` is a seekable file object over a
source (zip archives, pickles).
"""

from __future__ import annotations

import io
import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from client.core.manifest.errors import FileChangedError, TensorFormatError
from client.formats.base import fail

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

T = TypeVar("T")


class Source:
    """Random access to ``size`` bytes named ``name`` (for messages). Subclasses implement ``_pread``."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def _pread(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def fileno(self) -> int | None:
        return None

    def read(self, offset: int, length: int, what: str = "data") -> bytes:
        """Exactly ``length`` bytes at ``offset``. Requires 0 <= offset, 0 <= length."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise fail(self.name, f"truncated: {what} wants bytes [{offset}, {offset + length}), "
                                  f"the file has {self.size}")
        parts: list[bytes] = []
        while length:
            b = self._pread(offset, length)
            if not b:
                raise FileChangedError(f"{self.name}: file shrank while it was being read")
            parts.append(b)
            offset += len(b)
            length -= len(b)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def array(self, offset: int, length: int, what: str = "data") -> npt.NDArray[np.uint8]:
        """The bytes at ``[offset, offset + length)`` as a fresh, writable uint8 array."""
        import numpy as np

        fd = self.fileno()
        if fd is None or not hasattr(os, "preadv"):
            return np.frombuffer(bytearray(self.read(offset, length, what)), dtype=np.uint8)
        if offset < 0 or length < 0 or offset + length > self.size:
            self.read(offset, length, what)  # raises the bounds error
        out = np.empty(length, dtype=np.uint8)
        view, done = memoryview(out.data), 0
        while done < length:  # read straight into the array: one copy, not three
            got = os.preadv(fd, [view[done:]], offset + done)
            if not got:
                raise FileChangedError(f"{self.name}: file shrank while it was being read")
            done += got
        return out


class FdSource(Source):
    """A borrowed open file descriptor (not closed here)."""

    def __init__(self, name: str, fd: int, size: int) -> None:
        super().__init__(name, size)
        self._fd = fd

    def _pread(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def fileno(self) -> int | None:
        return self._fd


class PathSource(FdSource):
    """A file opened by path, read-only; use as a context manager (or call ``close``)."""

    def __init__(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise fail(path, f"cannot open ({err.strerror})") from err
        super().__init__(str(path), fd, os.fstat(fd).st_size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PathSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesSource(Source):
    """Bytes already in memory."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(name, len(data))
        self.data = data

    def _pread(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def with_mapped(source: Source, parse: Callable[[memoryview], T]) -> T:
    """``parse`` the whole file as one read-only buffer (mapped, not read into memory).

    ``parse`` must not keep slices of the buffer in what it returns. A TensorFormatError it raises
    is re-raised after the map is closed (its traceback holds slices that would keep it open).
    """
    failure: TensorFormatError | None = None
    with _mapped(source) as buf:
        try:
            return parse(buf)
        except TensorFormatError as err:
            failure = TensorFormatError(str(err))
    raise failure


@contextmanager
def _mapped(source: Source) -> Iterator[memoryview]:
    fd = source.fileno()
    if isinstance(source, BytesSource) or fd is None or source.size == 0:
        data = source.data if isinstance(source, BytesSource) else source.read(0, source.size)
        view = memoryview(data)
        try:
            yield view
        finally:
            view.release()
        return
    mm = mmap.mmap(fd, source.size, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    try:
        yield view
    finally:
        view.release()
        mm.close()


class SourceIO(io.RawIOBase):
    """A seekable, read-only file object over a source; wrap it in io.BufferedReader."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self._src = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._src.size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = max(0, min(len(buf), self._src.size - self._pos))
        if n:
            buf[:n] = self._src.read(self._pos, n)
            self._pos += n
        return n


def open_stream(source: Source) -> io.BufferedReader:
    return io.BufferedReader(SourceIO(source), buffer_size=1 << 16)
