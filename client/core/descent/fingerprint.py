"""Model fingerprints: tensor digests plus per-axis sketches, with one canonical encoding.

A fingerprint holds, for every tensor of a model, its name, dtype, shape and BLAKE3 digest
(exact evidence), and for every informative matrix the row and column sketches of
:mod:`client.core.descent.sketch` stored as float16 (statistical evidence). It is what a
checkpoint registration can publish, or commit to by its digest and reveal later.

Encoding, version 1 (all integers little-endian; this is what the digest covers)::

    "PLFP" | u16 version=1 | u16 FREQS | u32 tensor count
    per tensor, sorted by UTF-8 name, names unique:
        u16 name length | name | u8 dtype length | dtype (ASCII, numpy name) |
        u8 ndim | ndim x u64 dims | 32-byte BLAKE3 of the tensor's little-endian bytes |
        u8 sketched (0/1) | if 1, for rows then columns:
            u32 axis length | u32 units kept k | k x FREQS float16 features

The fingerprint digest is BLAKE3 over those bytes, named ``blake3-plfp1``.
Decoding accepts only canonical bytes (re-encoding gives the same bytes) within the bounds
below.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import blake3
import numpy as np
import numpy.typing as npt

from client.core.descent.sketch import FREQS, MAX_UNITS, AxisSketch, matrix_view, sketch_matrix
from client.errors import FormatError

MAGIC = b"PLFP"
VERSION = 1
DIGEST_NAME = "blake3-plfp1"
MAX_TENSORS = 1_000_000
MAX_NAME = 4096  # bytes
MAX_NDIM = 16
MAX_ENCODED = 1 << 30  # bytes


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a fingerprinted model. ``sketch`` is (rows, columns) or None if low-information."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: bytes
    sketch: tuple[AxisSketch, AxisSketch] | None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Fingerprint:
    """A model's fingerprint. Entries are sorted by name and names are unique (checked)."""

    entries: tuple[TensorEntry, ...]

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        if any(a.encode() >= b.encode() for a, b in zip(names, names[1:], strict=False)):
            raise FormatError("fingerprint entries must be sorted by name with no duplicates")

    @property
    def numel(self) -> int:
        return sum(e.numel for e in self.entries)

    def encode(self) -> bytes:
        return encode(self)

    def digest(self) -> str:
        return f"{DIGEST_NAME}:{blake3.blake3(self.encode()).hexdigest()}"


def tensor_digest(array: npt.NDArray[np.generic]) -> bytes:
    """BLAKE3 of the tensor's C-order little-endian bytes as stored (no dtype or shape: bytes only).

    The same digest as the manifest layer's per-tensor digest for unquantized tensors; bfloat16
    tensors widened by a reader are hashed as their bfloat16 bytes. Quantized formats (GGUF
    blocks, ONNX int8 + scales) are hashed after dequantization.
    """
    a = np.ascontiguousarray(array)
    if a.dtype.metadata and a.dtype.metadata.get("stored") == "bfloat16":
        # widened by a reader: hash the stored bfloat16 bytes, as the manifest layer does
        a = (a.view(np.uint32) >> 16).astype("<u2")
    elif a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO) if a.nbytes > (1 << 22) else blake3.blake3()
    hasher.update(a.reshape(-1).view(np.uint8).data)
    return hasher.digest()


def entry_for(name: str, array: npt.NDArray[np.generic]) -> TensorEntry:
    """Digest and (if informative) sketch one tensor."""
    mat = matrix_view(array)
    sketch = sketch_matrix(mat) if mat is not None else None
    return TensorEntry(
        name=name, dtype=array.dtype.name, shape=tuple(int(d) for d in array.shape),
        digest=tensor_digest(array), sketch=sketch,
    )


def build(tensors: Iterable[tuple[str, npt.NDArray[np.generic]]], *, source: str = "model") -> Fingerprint:
    """Fingerprint a stream of (name, array); only one tensor is held at a time."""
    entries: dict[str, TensorEntry] = {}
    for name, array in tensors:
        if name in entries:
            raise FormatError(f"{source}: tensor name {name!r} appears twice")
        entries[name] = entry_for(name, array)
    return Fingerprint(tuple(entries[n] for n in sorted(entries, key=lambda s: s.encode())))


def _encode_axis(out: list[bytes], axis: AxisSketch) -> None:
    feats = np.ascontiguousarray(axis.features, dtype="<f2")
    out.append(struct.pack("<II", axis.length, feats.shape[0]))
    out.append(feats.tobytes())


def encode(fp: Fingerprint) -> bytes:
    out = [MAGIC, struct.pack("<HHI", VERSION, FREQS, len(fp.entries))]
    for e in fp.entries:
        name = e.name.encode()
        dtype = e.dtype.encode("ascii")
        out.append(struct.pack("<H", len(name)) + name + struct.pack("<B", len(dtype)) + dtype)
        out.append(struct.pack(f"<B{len(e.shape)}Q", len(e.shape), *e.shape))
        out.append(e.digest)
        out.append(b"\x01" if e.sketch else b"\x00")
        if e.sketch:
            _encode_axis(out, e.sketch[0])
            _encode_axis(out, e.sketch[1])
    return b"".join(out)


class _Cursor:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"{self.source}: fingerprint truncated at byte {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _decode_axis(cur: _Cursor) -> AxisSketch:
    length, k = cur.unpack("<II")
    if k > MAX_UNITS or k > length or (k < length and k != MAX_UNITS):
        raise FormatError(f"{cur.source}: sketch keeps {k} of {length} units")
    raw = cur.take(k * FREQS * 2)
    feats = np.frombuffer(raw, dtype="<f2").reshape(k, FREQS)
    if not np.all(np.isfinite(feats)):
        raise FormatError(f"{cur.source}: sketch holds a non-finite value")
    return AxisSketch(length=length, features=feats.astype(np.float32))


def decode(data: bytes, *, source: str = "fingerprint") -> Fingerprint:
    """Parse canonical fingerprint bytes; raises FormatError naming ``source`` otherwise."""
    if len(data) > MAX_ENCODED:
        raise FormatError(f"{source}: fingerprint larger than {MAX_ENCODED} bytes")
    cur = _Cursor(data, source)
    if cur.take(4) != MAGIC:
        raise FormatError(f"{source}: not a fingerprint (bad magic)")
    version, freqs, count = cur.unpack("<HHI")
    if version != VERSION or freqs != FREQS:
        raise FormatError(f"{source}: unsupported fingerprint version {version} (frequencies {freqs})")
    if count > MAX_TENSORS:
        raise FormatError(f"{source}: {count} tensors exceeds the limit {MAX_TENSORS}")
    entries = []
    for _ in range(count):
        (nlen,) = cur.unpack("<H")
        if nlen > MAX_NAME:
            raise FormatError(f"{source}: tensor name longer than {MAX_NAME} bytes")
        try:
            name = cur.take(nlen).decode()
            (dlen,) = cur.unpack("<B")
            dtype = cur.take(dlen).decode("ascii")
        except UnicodeDecodeError as err:
            raise FormatError(f"{source}: tensor name or dtype is not valid text") from err
        (ndim,) = cur.unpack("<B")
        if ndim > MAX_NDIM:
            raise FormatError(f"{source}: tensor {name!r} has {ndim} dimensions")
        shape = cur.unpack(f"<{ndim}Q")
        digest = cur.take(32)
        flag = cur.take(1)
        if flag not in (b"\x00", b"\x01"):
            raise FormatError(f"{source}: bad sketch flag for {name!r}")
        sketch = (_decode_axis(cur), _decode_axis(cur)) if flag == b"\x01" else None
        entries.append(TensorEntry(name=name, dtype=dtype, shape=tuple(shape), digest=digest, sketch=sketch))
    if cur.pos != len(data):
        raise FormatError(f"{source}: {len(data) - cur.pos} trailing bytes after the fingerprint")
    fp = Fingerprint(tuple(entries))
    if encode(fp) != data:
        raise FormatError(f"{source}: fingerprint is not in canonical form")
    return fp
