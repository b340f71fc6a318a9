"""Zip archives over a source (PyTorch zip checkpoints, .npz): entries and where their data lies.

Reading goes through :mod:`zipfile` on a :class:`~client.formats.source.SourceIO`; the one thing
added is :func:`member_span`, the byte range of an uncompressed entry's data, read from its local
file header (PKWARE APPNOTE.TXT 4.3.7), so that entry can be hashed in place, and bounds on what an
entry may inflate to (:func:`zip_read`, :func:`check_inflation`): declared sizes against what the
tensors declare, a compression-ratio cap, and reading in pieces against the declared size.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

from client.formats.base import fail
from client.formats.source import Source, open_stream

#: What zipfile raises on damaged input. NotImplementedError: an unknown zip version or compression;
#: UnicodeDecodeError: a name flagged UTF-8 that is not (found by make fuzz); RuntimeError: encryption.
ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError,
              UnicodeDecodeError, ValueError)

#: Bounds on a compressed entry (torch never compresses storages; np.savez_compressed does): weights
#: deflate by a few percent, so a ratio past MAX_INFLATION is zeros or a bomb; INFLATION_ALLOWANCE lets
#: small, highly compressible entries (zero-filled arrays) through whatever their ratio.
MAX_INFLATION = 32
INFLATION_ALLOWANCE = 256 << 20
_PIECE = 1 << 20


def open_zip(source: Source) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(open_stream(source))
    except ZIP_ERRORS as err:
        raise fail(source.name, f"not a readable zip archive ({err})") from err


def member_span(source: Source, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    """``(start, nbytes)`` of an uncompressed entry's data in the file; None for a compressed entry."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    head = source.read(info.header_offset, 30, f"zip header of {info.filename}")
    if head[:4] != b"PK\x03\x04":
        raise fail(source.name, f"damaged zip archive: no local header for {info.filename}")
    n, m = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + n + m
    if start + info.file_size > source.size:
        raise fail(source.name, f"truncated: archive entry {info.filename} ends past the end of the file")
    return start, info.file_size


def check_inflation(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a compressed entry that declares more than MAX_INFLATION x its compressed size (beyond
    INFLATION_ALLOWANCE): a few megabytes of file must not ask for gigabytes of memory (a zip bomb)."""
    if info.compress_type != zipfile.ZIP_STORED and \
            info.file_size > max(MAX_INFLATION * info.compress_size, INFLATION_ALLOWANCE):
        raise fail(where, f"archive entry {info.filename} inflates {info.compress_size} bytes to {info.file_size}, "
                          f"more than {MAX_INFLATION}:1 (and more than {INFLATION_ALLOWANCE} bytes)")


def zip_read(zf: zipfile.ZipFile, name: str, where: str, *, expected: int | None = None, limit: int = 0) -> bytes:
    """A whole entry, decompressed, in bounded memory; any refusal is a FormatError naming ``where``.

    The entry's declared size must be ``expected`` (what the file's own metadata says it holds) when
    given, else at most ``limit``; its inflation is bounded (:func:`check_inflation`); it is read in
    pieces into a buffer of the declared size, and more or fewer bytes than declared are refused.
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise fail(where, f"missing archive entry {name}") from None
    if expected is not None and info.file_size != expected:
        raise fail(where, f"archive entry {name} declares {info.file_size} bytes, its tensors' storage {expected}")
    if expected is None and info.file_size > limit:
        raise fail(where, f"archive entry {name} declares {info.file_size} bytes, more than {limit}")
    check_inflation(info, where)
    out = bytearray(info.file_size)
    view = memoryview(out)
    try:
        with zf.open(info) as fp:
            got = 0
            while got < len(out):
                piece = fp.read(min(_PIECE, len(out) - got))
                if not piece:
                    break
                view[got : got + len(piece)] = piece
                got += len(piece)
            extra = fp.read(1)
    except ZIP_ERRORS as err:
        raise fail(where, f"truncated or damaged archive entry {name} ({err})") from err
    finally:
        view.release()
    if got != len(out) or extra:
        raise fail(where, f"archive entry {name} inflates to {'more' if extra else got} bytes, "
                          f"not the {info.file_size} it declares")
    return bytes(out)
