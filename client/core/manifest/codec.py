"""The one canonical, versioned byte encoding of a manifest, and its digest.

Specified in docs/manifest.md ("Canonical encoding"). In short, all integers big-endian::

    MAGIC "provenance-ledger/manifest\\n"  u16 version (1 or 2)  u8-string algorithm="blake3"
    u64 chunk_size
    per entry, sorted by path:
      0x01 file:    u16-string path, u64 size, 32B blake3,
                    version 1: ceil(size/chunk_size) x 32B chunks
                    version 2: u8 layout; 0x00: ceil(size/chunk_size) x 32B chunks
                                          0x01 (tiled): 32B digest of the header region [0, h)
                    u8-string tensor_format, u32 n, n x tensor
                    tensor: u16-string name, u8-string dtype, u8 rank, rank x u64 dims,
                            u64 start, u64 end, 32B blake3
      0x02 symlink: u16-string path, u16-string target
    0x00 end, u64 entry count

The manifest digest is BLAKE3 of these bytes; the magic and version make it
unambiguous which encoding was hashed. The layout is streamable (no count up
front), so a dataset manifest can be digested while it is walked.
Decoding is strict: any trailing byte, non-canonical ordering or unknown version
is refused, so one manifest has exactly one encoding. Version 1 manifests decode
and re-encode to their own bytes, so their digests (named by registered records) still hold.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import blake3

from client.core.manifest.errors import UnsupportedVersionError
from client.core.manifest.model import (
    ALGORITHM,
    DIGEST_SIZE,
    FORMAT_VERSION,
    SUPPORTED_VERSIONS,
    TILED_SINCE,
    Entry,
    FileEntry,
    Manifest,
    SymlinkEntry,
    TensorEntry,
    check_chunk_size,
    check_pieces,
    check_version,
    chunk_count,
)
from client.errors import FormatError, InvalidInputError

MAGIC = b"provenance-ledger/manifest\n"
TAG_END = 0
TAG_FILE = 1
TAG_SYMLINK = 2
LAYOUT_CHUNKS = 0
LAYOUT_TILED = 1
MAX_TENSORS_PER_FILE = 1_000_000
#: Refuse to decode more than this many bytes (a manifest of ~10M small files fits).
MAX_ENCODED_SIZE = 8 << 30

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FILE_HEAD = struct.Struct(">BH")
_NO_TENSORS = _U8.pack(0) + _U32.pack(0)  # tensor_format "" and no tensors
_CHUNKS = _U8.pack(LAYOUT_CHUNKS)
_TILED = _U8.pack(LAYOUT_TILED)


def _s8(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U8.pack(len(b)) + b


def _s16(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U16.pack(len(b)) + b


def header_bytes(chunk_size: int, version: int = FORMAT_VERSION) -> bytes:
    """The encoding's header: magic, version, algorithm name and chunk size."""
    return MAGIC + _U16.pack(version) + _s8(ALGORITHM) + _U64.pack(chunk_size)


def entry_bytes(entry: Entry, version: int = FORMAT_VERSION) -> bytes:
    """The encoding of one entry (file or symlink) in a manifest of ``version``.

    Requires a tiled file only for version >= TILED_SINCE (the model checks it).
    """
    if isinstance(entry, SymlinkEntry):
        return _U8.pack(TAG_SYMLINK) + _s16(entry.path) + _s16(entry.target)
    path = entry.path.encode("utf-8")
    head = _FILE_HEAD.pack(TAG_FILE, len(path)) + path + _U64.pack(entry.size) + entry.blake3
    if version >= TILED_SINCE:
        head += _CHUNKS if entry.header is None else _TILED + entry.header
    if not entry.tensor_format and not entry.tensors:
        return head + b"".join(entry.chunks) + _NO_TENSORS
    out = [head, *entry.chunks]
    out += [_s8(entry.tensor_format), _U32.pack(len(entry.tensors))]
    for t in entry.tensors:
        out += [_s16(t.name), _s8(t.dtype), _U8.pack(len(t.shape))]
        out += [_U64.pack(d) for d in t.shape]
        out += [_U64.pack(t.start), _U64.pack(t.end), t.blake3]
    return b"".join(out)


def trailer_bytes(count: int) -> bytes:
    return _U8.pack(TAG_END) + _U64.pack(count)


def encode_stream(chunk_size: int, entries: Iterable[Entry], version: int = FORMAT_VERSION) -> Iterator[bytes]:
    """Yield the canonical encoding piece by piece. Requires entries sorted by path and unique."""
    yield header_bytes(chunk_size, version)
    n = 0
    for e in entries:
        yield entry_bytes(e, version)
        n += 1
    yield trailer_bytes(n)


class StreamEncoder:
    """Encode and digest a manifest entry by entry, in bounded memory (for dataset-sized trees).

    ``add`` returns the entry's canonical bytes; ``finish`` returns the trailer
    bytes and the manifest digest, equal to :func:`manifest_digest` of the same
    entries in a manifest of ``version``. Requires entries in canonical order
    (checked: strictly increasing paths) as :func:`client.hashing.walk.walk` yields them.
    """

    def __init__(self, chunk_size: int, version: int = FORMAT_VERSION) -> None:
        check_chunk_size(chunk_size)
        check_version(version)
        self.chunk_size = chunk_size
        self.version = version
        self.header = header_bytes(chunk_size, version)
        self._hash = blake3.blake3(self.header)
        self._count = 0
        self._last = ""

    def add(self, entry: Entry) -> bytes:
        if self._count and entry.path <= self._last:
            raise InvalidInputError(f"entries not sorted and unique at {entry.path!r}")
        if isinstance(entry, FileEntry):
            check_pieces(entry, self.chunk_size, self.version)
        self._last = entry.path
        self._count += 1
        raw = entry_bytes(entry, self.version)
        self._hash.update(raw)
        return raw

    def finish(self) -> tuple[bytes, bytes]:
        if not self._count:
            raise InvalidInputError("a manifest holds at least one entry")
        trailer = trailer_bytes(self._count)
        self._hash.update(trailer)
        return trailer, self._hash.digest()


def encode(manifest: Manifest) -> bytes:
    """The canonical bytes of ``manifest`` (what is hashed, signed and logged)."""
    return b"".join(encode_stream(manifest.chunk_size, manifest.entries, manifest.version))


def manifest_digest(manifest: Manifest) -> bytes:
    """BLAKE3 of the canonical encoding: binds version, algorithm, chunk size, paths, sizes, all digests."""
    h = blake3.blake3()
    for piece in encode_stream(manifest.chunk_size, manifest.entries, manifest.version):
        h.update(piece)
    return h.digest()


def digest_pairs(manifest: Manifest) -> Iterator[tuple[str, bytes]]:
    """Every (kind, digest) a registry indexes: kinds "manifest", "file", "chunk", "tensor".

    Canonical order: the manifest digest, then per file its digest, its pieces that are not
    tensors as "chunk" (the fixed chunks, or a tiled file's header region) and its tensors.
    A tiled file's tensors are its other pieces; they are listed once, as "tensor".
    Duplicates are kept (the same chunk may occur in two files).
    """
    yield "manifest", manifest_digest(manifest)
    for f in manifest.files:
        yield "file", f.blake3
        for c in f.chunks:
            yield "chunk", c
        if f.header is not None:
            yield "chunk", f.header
        for t in f.tensors:
            yield "tensor", t.blake3


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self._data):
            raise FormatError(f"manifest truncated at byte {self.pos} (wanted {n} more)")
        b = bytes(self._data[self.pos : end])
        self.pos = end
        return b

    def u8(self) -> int:
        v: int = _U8.unpack(self.take(1))[0]
        return v

    def u16(self) -> int:
        v: int = _U16.unpack(self.take(2))[0]
        return v

    def u32(self) -> int:
        v: int = _U32.unpack(self.take(4))[0]
        return v

    def u64(self) -> int:
        v: int = _U64.unpack(self.take(8))[0]
        return v

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"invalid UTF-8 at byte {self.pos}") from e

    def s8(self) -> str:
        return self.text(self.u8())

    def s16(self) -> str:
        return self.text(self.u16())

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos


def _decode_tensor(r: _Reader) -> TensorEntry:
    name, dtype = r.s16(), r.s8()
    shape = tuple(r.u64() for _ in range(r.u8()))
    start, end = r.u64(), r.u64()
    return TensorEntry(name=name, dtype=dtype, shape=shape, start=start, end=end, blake3=r.take(DIGEST_SIZE))


def _decode_file(r: _Reader, chunk_size: int, version: int) -> FileEntry:
    path, size = r.s16(), r.u64()
    digest = r.take(DIGEST_SIZE)
    layout = r.u8() if version >= TILED_SINCE else LAYOUT_CHUNKS
    header: bytes | None = None
    chunks: tuple[bytes, ...] = ()
    if layout == LAYOUT_TILED:
        header = r.take(DIGEST_SIZE)
    elif layout == LAYOUT_CHUNKS:
        n = chunk_count(size, chunk_size)
        if n * DIGEST_SIZE > r.remaining:
            raise FormatError(f"{path}: truncated chunk list")
        chunks = tuple(r.take(DIGEST_SIZE) for _ in range(n))
    else:
        raise FormatError(f"{path}: unknown piece layout {layout} at byte {r.pos - 1}")
    fmt = r.s8()
    count = r.u32()
    if count > MAX_TENSORS_PER_FILE:
        raise FormatError(f"{path}: {count} tensors exceeds {MAX_TENSORS_PER_FILE}")
    tensors = tuple(_decode_tensor(r) for _ in range(count))
    return FileEntry(path, size, digest, chunks, fmt, tensors, header)


def decode(data: bytes) -> Manifest:
    """Parse canonical bytes; refuses unknown versions, trailing bytes and anything non-canonical.

    Raises UnsupportedVersionError for a version not in SUPPORTED_VERSIONS and
    FormatError for anything else malformed.
    """
    if len(data) > MAX_ENCODED_SIZE:
        raise FormatError(f"manifest larger than {MAX_ENCODED_SIZE} bytes")
    if not data.startswith(MAGIC):
        raise FormatError("not a canonical manifest (bad magic)")
    r = _Reader(data)
    r.take(len(MAGIC))
    version = r.u16()
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"manifest format version {version} is not supported (this code: {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    algorithm = r.s8()
    if algorithm != ALGORITHM:
        raise FormatError(f"unknown manifest algorithm {algorithm!r}")
    chunk_size = r.u64()
    try:
        check_chunk_size(chunk_size)
        entries: list[Entry] = []
        while True:
            tag = r.u8()
            if tag == TAG_END:
                break
            if tag == TAG_FILE:
                entries.append(_decode_file(r, chunk_size, version))
            elif tag == TAG_SYMLINK:
                entries.append(SymlinkEntry(path=r.s16(), target=r.s16()))
            else:
                raise FormatError(f"unknown entry tag {tag} at byte {r.pos - 1}")
        if r.u64() != len(entries):
            raise FormatError("entry count in trailer does not match")
        if r.remaining:
            raise FormatError(f"{r.remaining} trailing bytes after the manifest")
        manifest = Manifest(chunk_size=chunk_size, entries=tuple(entries), version=version)
    except InvalidInputError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"manifest violates an invariant: {e}") from e
    if encode(manifest) != data:
        raise FormatError("manifest bytes are not canonical")
    return manifest
