"""Zip archives over a source (PyTorch zip checkpoints, .npz): entries and where their data lies.

Reading goes through :mod:`zipfile` on a :class:`~client.formats.source.SourceIO`; the one thing
added is :func:`member_span`, the byte range of an uncompressed entry's data, read from its local
file header (PKWARE APPNOTE.TXT 4.3.7), so that entry can be hashed in place.
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


def zip_read(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    """A whole entry, decompressed; a missing or damaged entry is a FormatError naming ``where``."""
    try:
        return zf.read(name)
    except KeyError:
        raise fail(where, f"missing archive entry {name}") from None
    except ZIP_ERRORS as err:
        raise fail(where, f"truncated or damaged archive entry {name} ({err})") from err
