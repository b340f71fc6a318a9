"""The manifest data model: frozen dataclasses that validate their invariants.

A manifest states exactly which bytes a file tree held (docs/manifest.md):
for every regular file its path, size, whole-file BLAKE3 digest (what ``b3sum``
prints), the BLAKE3 digests of pieces that tile the file and, for known tensor
formats, one entry per tensor; symlinks, when allowed, are recorded as links.
The pieces are fixed-size chunks, or (version 2, a *tiled* file) the header region
``[0, h)`` and the tensors themselves, when the tensors lie back to back over
``[h, size)`` and each is stored as the bytes its digest covers.

Pure: no I/O. The one canonical byte encoding is in :mod:`client.core.manifest.codec`
and the JSON form in :mod:`client.core.manifest.jsonform`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from client.errors import InvalidInputError

#: Format version of the canonical encoding this code writes by default.
FORMAT_VERSION = 2
#: Every version this code reads and verifies (1: fixed chunks only; 2: adds tiled files).
SUPPORTED_VERSIONS = (1, 2)
#: The first version in which a file's pieces may be its header and tensors.
TILED_SINCE = 2
#: The only content hash of versions 1 and 2; named in every manifest (STYLE.md habit 9).
ALGORITHM = "blake3"
DIGEST_SIZE = 32
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 1 << 30

# Bounds (STYLE.md habit 7). Paths: 4096 bytes of UTF-8 (Linux PATH_MAX);
# tensor names and dtypes as small as any known format needs.
MAX_PATH_BYTES = 4096
MAX_TENSOR_NAME_BYTES = 4096
MAX_DTYPE_BYTES = 32
MAX_TENSOR_RANK = 32
MAX_FORMAT_NAME_BYTES = 32
MAX_SIZE = (1 << 63) - 1

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_DTYPE = re.compile(r"[A-Za-z0-9_.-]+\Z")


def chunk_count(size: int, chunk_size: int) -> int:
    """Number of chunks of a file of ``size`` bytes: ceil(size / chunk_size); 0 for an empty file."""
    return (size + chunk_size - 1) // chunk_size


def tiling_start(ranges: Iterable[tuple[int, int]], size: int) -> int | None:
    """``h`` when the byte ranges ``[start, end)``, taken in offset order, lie back to back with no gap
    or overlap and exactly cover ``[h, size)`` with ``h < size`` (a non-empty data section); else None.

    Empty ranges count wherever they sit inside or at the edges of the covered span.
    """
    rs = sorted(ranges)
    if not rs:
        return None
    pos = rs[0][0]
    for start, end in rs:
        if start != pos or end < start:
            return None
        pos = end
    return rs[0][0] if pos == size and rs[0][0] < size else None


def check_version(version: int) -> None:
    """Requires one of SUPPORTED_VERSIONS."""
    if version not in SUPPORTED_VERSIONS:
        raise InvalidInputError(f"manifest version {version} is not supported (this code: {SUPPORTED_VERSIONS})")


def check_chunk_size(chunk_size: int) -> None:
    """Requires a power of two in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]."""
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise InvalidInputError(
            f"chunk size must be a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}], got {chunk_size}"
        )


def check_relpath(path: str) -> None:
    """Requires a canonical POSIX relative path: non-empty components, no '.', '..', NUL, UTF-8 only."""
    if not path or path[0] == "/" or path[-1] == "/" or "//" in path or "\x00" in path:
        raise InvalidInputError(f"not a canonical relative path: {path!r}")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(f"path is not valid UTF-8: {path!r}") from e
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidInputError(f"path longer than {MAX_PATH_BYTES} bytes: {path[:80]!r}...")
    if "." in path and (
        path in (".", "..")
        or path.startswith(("./", "../"))
        or path.endswith(("/.", "/.."))
        or "/./" in path
        or "/../" in path
    ):
        raise InvalidInputError(f"not a canonical relative path: {path!r}")


def _check_digest(d: bytes, what: str) -> None:
    if type(d) is not bytes or len(d) != DIGEST_SIZE:
        raise InvalidInputError(f"{what}: a digest is {DIGEST_SIZE} bytes")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a file, stored at ``[start, end)`` of the file.

    ``blake3`` is the tensor digest: BLAKE3 of the tensor's elements in row-major order, each
    little-endian (docs/manifest.md, "Tensor digests"). It does not depend on the format, on
    where the tensor sits in the file, on header order or on metadata. For most tensors the
    range holds exactly those bytes; for big-endian storage it holds them byte-swapped, and for
    an ONNX tensor in varint fields it holds the encoded values.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    blake3: bytes

    def __post_init__(self) -> None:
        if not self.name or len(self.name.encode("utf-8", "surrogatepass")) > MAX_TENSOR_NAME_BYTES:
            raise InvalidInputError("tensor name must be 1..4096 bytes")
        try:
            self.name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidInputError(f"tensor name is not valid UTF-8: {self.name!r}") from e
        if len(self.dtype) > MAX_DTYPE_BYTES or not _DTYPE.match(self.dtype):
            raise InvalidInputError(f"bad tensor dtype {self.dtype!r}")
        if len(self.shape) > MAX_TENSOR_RANK or any(not 0 <= d <= MAX_SIZE for d in self.shape):
            raise InvalidInputError(f"bad tensor shape {self.shape!r}")
        if not 0 <= self.start <= self.end <= MAX_SIZE:
            raise InvalidInputError(f"bad tensor byte range [{self.start}, {self.end})")
        _check_digest(self.blake3, f"tensor {self.name!r}")


@dataclass(frozen=True)
class FileEntry:
    """A regular file: size, whole-file BLAKE3 (as ``b3sum`` prints it) and the digests of its pieces.

    Fixed chunks (``header is None``): ``chunks[i]`` is BLAKE3 of bytes ``[i*chunk_size,
    (i+1)*chunk_size)``; a file of at most one chunk has ``chunks == (blake3,)``, an empty file no
    chunks. Tiled (``header`` set, version 2): no chunks; ``header`` is BLAKE3 of bytes ``[0, h)``,
    ``h`` the lowest tensor start, the tensors tile ``[h, size)`` (checked) and each tensor's digest is
    BLAKE3 of its byte range (the hashing layer tiles only such files; docs/manifest.md, "Tiled files").
    ``tensor_format`` names the tensor format that parsed the file (client/formats) ("" if none);
    tensors are sorted by name.
    """

    path: str
    size: int
    blake3: bytes
    chunks: tuple[bytes, ...]
    tensor_format: str = ""
    tensors: tuple[TensorEntry, ...] = ()
    header: bytes | None = None

    def __post_init__(self) -> None:
        check_relpath(self.path)
        if type(self.size) is not int or not 0 <= self.size <= MAX_SIZE:
            raise InvalidInputError(f"{self.path}: bad size {self.size}")
        _check_digest(self.blake3, self.path)
        for c in self.chunks:
            _check_digest(c, self.path)
        if self.tensor_format or self.tensors:
            self._check_tensors()
        if self.header is not None:
            _check_digest(self.header, f"{self.path}: header")
            if self.chunks:
                raise InvalidInputError(f"{self.path}: a tiled file has no chunk digests")
            if tiling_start(((t.start, t.end) for t in self.tensors), self.size) is None:
                raise InvalidInputError(f"{self.path}: tensors do not tile the file's data section")

    @property
    def tiled(self) -> bool:
        """Whether the file's pieces are its header region and its tensors (not fixed chunks)."""
        return self.header is not None

    @property
    def header_end(self) -> int:
        """``h``: the header region of a tiled file is ``[0, h)``. Requires a tiled file."""
        if self.header is None:
            raise InvalidInputError(f"{self.path}: not a tiled file")
        return min(t.start for t in self.tensors)

    def _check_tensors(self) -> None:
        if self.tensor_format and (
            len(self.tensor_format) > MAX_FORMAT_NAME_BYTES or not _TOKEN.match(self.tensor_format)
        ):
            raise InvalidInputError(f"{self.path}: bad tensor format name {self.tensor_format!r}")
        if self.tensors and not self.tensor_format:
            raise InvalidInputError(f"{self.path}: tensors without a tensor format")
        names = [t.name for t in self.tensors]
        if names != sorted(names) or len(set(names)) != len(names):
            raise InvalidInputError(f"{self.path}: tensors must be sorted by name and unique")
        for t in self.tensors:
            if t.end > self.size:
                raise InvalidInputError(f"{self.path}: tensor {t.name!r} ends past the file")


def check_pieces(f: FileEntry, chunk_size: int, version: int) -> None:
    """Requires ``f``'s pieces valid in a manifest of ``version`` and ``chunk_size``: a tiled file only
    from TILED_SINCE on; otherwise ceil(size / chunk_size) chunks, a one-chunk file's equal to its digest."""
    if f.header is not None:
        if version < TILED_SINCE:
            raise InvalidInputError(f"{f.path}: a tiled file needs manifest version {TILED_SINCE} (this is {version})")
        return
    n = chunk_count(f.size, chunk_size)
    if len(f.chunks) != n:
        raise InvalidInputError(f"{f.path}: {len(f.chunks)} chunk digests, expected {n}")
    if n == 1 and f.chunks[0] != f.blake3:
        raise InvalidInputError(f"{f.path}: a one-chunk file's chunk digest is its file digest")


@dataclass(frozen=True)
class SymlinkEntry:
    """A symbolic link, recorded as a link (never followed). ``target`` is its text, as stored."""

    path: str
    target: str

    def __post_init__(self) -> None:
        check_relpath(self.path)
        if not self.target or len(self.target.encode("utf-8")) > MAX_PATH_BYTES or "\x00" in self.target:
            raise InvalidInputError(f"{self.path}: bad symlink target")


Entry = FileEntry | SymlinkEntry


@dataclass(frozen=True)
class Manifest:
    """What a tree held. Entries are sorted by path (code point order) and unique.

    ``version``, ``algorithm`` and ``chunk_size`` are bound into the manifest
    digest together with every entry (docs/manifest.md, "Digests"). Version 1 holds only
    fixed-chunk files; version 2 (the default) may hold tiled ones too.
    """

    chunk_size: int
    entries: tuple[Entry, ...]
    version: int = FORMAT_VERSION
    algorithm: str = ALGORITHM
    _files: tuple[FileEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_version(self.version)
        if self.algorithm != ALGORITHM:
            raise InvalidInputError(f"manifest algorithm {self.algorithm!r} is not supported")
        check_chunk_size(self.chunk_size)
        if not self.entries:
            raise InvalidInputError("a manifest holds at least one entry")
        prev = ""
        files: set[str] = set()
        for i, e in enumerate(self.entries):
            if i and e.path <= prev:
                raise InvalidInputError(f"entries not sorted and unique at {e.path!r}")
            prev = e.path
            p = e.path
            i = p.find("/")
            while i != -1:
                if p[:i] in files:
                    raise InvalidInputError(f"{p!r} lies under a non-directory entry")
                i = p.find("/", i + 1)
            files.add(p)
            if isinstance(e, FileEntry):
                check_pieces(e, self.chunk_size, self.version)
        object.__setattr__(self, "_files", tuple(e for e in self.entries if isinstance(e, FileEntry)))

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return self._files

    @property
    def symlinks(self) -> tuple[SymlinkEntry, ...]:
        return tuple(e for e in self.entries if isinstance(e, SymlinkEntry))

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self._files)

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

