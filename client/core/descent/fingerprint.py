"""Model fingerprints: tensor digests plus per-axis sketches, with one canonical encoding.

A fingerprint holds, for every tensor of a model, its name, dtype, shape and BLAKE3 digest
(exact evidence), for every informative matrix the row and column sketches of
:mod:`client.core.descent.sketch` stored as float16 (statistical evidence), and its moments
(:mod:`client.core.descent.moments`; a weak signal of direction, never evidence of descent). It is
what a checkpoint registration can publish, or commit to by its digest and reveal later.

Encoding, version 6 (all integers and floats little-endian; this is what the digest covers)::

    "PLFP" | u16 version=6 | u16 FREQS | u32 tensor count
    per tensor, sorted by UTF-8 name, names unique:
        u16 name length | name | u8 dtype length | dtype (ASCII, numpy name) |
        u8 ndim | ndim x u64 dims | 32-byte BLAKE3 of the tensor's little-endian bytes |
        u8 status: 0 low-information, 1 sketched, 2 formulaic |
        status 1: four axis sketches, each u32 axis length | u32 units kept k | k x FREQS float16:
            rows, columns (:mod:`~client.core.descent.sketch`, k <= MAX_UNITS),
            Gram rows, Gram columns (:mod:`~client.core.descent.gram`, k <= GRAM_UNITS),
            then f32 standard deviation (>= 0) | f32 excess kurtosis (both finite),
            then the aligned section (:mod:`~client.core.descent.aligned`): u8 directions d |
            two axes, rows then columns, each u32 axis length | u32 units kept k | k x d float16,
            k = min(axis length, ALIGNED_UNITS), d = ALIGNED_DIRS
        status 2: u8 reason length | reason (ASCII: why a formula produces it; no sketch)
    version 4 to 6, then the derived products (:mod:`~client.core.descent.factors`): u32 count | per
    product, sorted by (left, right), each tensor in at most one: u32 index of its left factor |
    u32 index of its right factor (into the entries above) | u8 status=3 | the four axis sketches
    and the aligned section of status 1, of the m x n product (no digest, no moments)

The fingerprint digest is BLAKE3 over those bytes, named ``blake3-plfp6``. Versions 4 and 5 have the
same bytes, but their sketches mean other numbers: version 4 kept a square matrix's diagonal and the
Gram units' common direction, version 5 kept the Gram matrix's strong principal directions
(:mod:`~client.core.descent.sketch`, :mod:`~client.core.descent.gram`). Version 3 (no aligned
section, ``blake3-plfp3``), version 2 (also no moments, ``blake3-plfp2``) and version 1 (no status 2,
two axis sketches, no moments, ``blake3-plfp1``) still decode, so a published or committed older
fingerprint can still be checked against its record, but they lack what today's comparison needs
(v1: rotation-invariant sketches and formulaic tensors set aside; v1, v2: the moments the direction
signal reads; v1-v3: the aligned sketches of the aligned-units test; v4, v5: sketches that three kinds
of shared structure cannot make agree):
:func:`require_current` refuses them by name. Decoding accepts only canonical bytes (re-encoding
gives the same bytes) within the bounds below.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import blake3
import numpy as np
import numpy.typing as npt

from client.core.descent import factors
from client.core.descent.aligned import ALIGNED_DIRS, ALIGNED_UNITS, AlignedAxis, aligned_sketch
from client.core.descent.formulaic import formulaic_reason
from client.core.descent.gram import GRAM_UNITS, gram_sketch
from client.core.descent.moments import moments
from client.core.descent.sketch import FREQS, MAX_UNITS, AxisSketch, matrix_view, sketch_matrix
from client.errors import FormatError

MAGIC = b"PLFP"
VERSION = 6
VERSIONS = (1, 2, 3, 4, 5, 6)  # decodable; only VERSION is compared
MOMENTS_SINCE = 3
ALIGNED_SINCE = 4
DERIVED_SINCE = 4
MAX_REASON = 64
DIGEST_NAME = f"blake3-plfp{VERSION}"
MAX_TENSORS = 1_000_000
MAX_NAME = 4096  # bytes
MAX_NDIM = 16
MAX_ENCODED = 1 << 30  # bytes


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a fingerprinted model.

    ``sketch`` is (rows, columns) and ``gram`` (rows, columns) their rotation-invariant
    counterparts, both None for a low-information or formulaic tensor (``gram`` is also None in a
    version 1 fingerprint). ``formula`` names why a formula produces the tensor ("" if none).
    ``moments`` is (standard deviation, excess kurtosis) of a sketched tensor's entries
    (:func:`~client.core.descent.moments.moments`), None otherwise and in versions 1 and 2.
    ``aligned`` is (rows, columns) of :func:`~client.core.descent.aligned.aligned_sketch` for a
    sketched tensor of version 4, None otherwise. ``factors`` (left, right) marks a *derived* entry:
    the product of two tensors (:mod:`~client.core.descent.factors`), no digest, no moments.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: bytes
    sketch: tuple[AxisSketch, AxisSketch] | None
    gram: tuple[AxisSketch, AxisSketch] | None = None
    formula: str = ""
    moments: tuple[float, float] | None = None
    aligned: tuple[AlignedAxis, AlignedAxis] | None = None
    factors: tuple[str, str] | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Fingerprint:
    """A model's fingerprint: entries sorted by name, names unique; ``derived`` products of factor pairs (v4)."""

    entries: tuple[TensorEntry, ...]
    version: int = VERSION
    derived: tuple[TensorEntry, ...] = ()

    def __post_init__(self) -> None:
        if self.version >= 2 and any(e.sketch is not None and e.gram is None for e in self.entries):
            raise FormatError(f"a version {self.version} fingerprint needs the Gram axes of every sketched tensor")
        new = self.version >= MOMENTS_SINCE
        if any((e.moments is not None) != (new and e.sketch is not None) for e in self.entries):
            raise FormatError(f"a version {self.version} fingerprint holds moments for "
                              + ("every sketched tensor and no other" if new else "no tensor"))
        new = self.version >= ALIGNED_SINCE
        if any((e.aligned is not None) != (new and e.sketch is not None) for e in self.entries):
            raise FormatError(f"a version {self.version} fingerprint holds aligned sketches for "
                              + ("every sketched tensor and no other" if new else "no tensor"))
        names = [e.name for e in self.entries]
        if any(a.encode() >= b.encode() for a, b in zip(names, names[1:], strict=False)):
            raise FormatError("fingerprint entries must be sorted by name with no duplicates")
        problem = factors.check_products({e.name: e.shape for e in self.entries if e.sketch is not None}, names, [
            (d.name, d.shape, d.factors, not d.digest and d.moments is None and None not in (d.gram, d.aligned))
            for d in self.derived])
        if problem or (self.derived and self.version < DERIVED_SINCE):
            raise FormatError(problem or f"a version {self.version} fingerprint holds no derived entries")

    @property
    def numel(self) -> int:
        return sum(e.numel for e in self.entries)

    def encode(self) -> bytes:
        return encode(self)

    def digest(self) -> str:
        return f"blake3-plfp{self.version}:{blake3.blake3(self.encode()).hexdigest()}"


def require_current(fp: Fingerprint, label: str) -> None:
    """Refuse, by name, a fingerprint of an older version than the comparison needs."""
    if fp.version != VERSION:
        lacks = ("the rotation-invariant sketches, formula detection, tensor moments and aligned sketches"
                 if fp.version < 2 else "the tensor moments (the weight direction signal) and aligned sketches"
                 if fp.version < 3 else "the aligned sketches (the aligned-units test)"
                 if fp.version < 4 else "the sketches that leave a square matrix's diagonal out and remove the "
                 "units' common direction before the Gram matrix (its sketches, in the same bytes, mean other "
                 "numbers: comparing them with today's would be wrong)"
                 if fp.version < 5 else "the Gram sketches that remove the units' strong principal directions "
                 "(its sketches, in the same bytes, mean other numbers: comparing them with today's would be wrong)")
        raise FormatError(
            f"{label}: fingerprint version {fp.version} (blake3-plfp{fp.version}) predates {lacks} of "
            f"version {VERSION} (blake3-plfp{VERSION}); it still checks against its record, but compare "
            "needs it recomputed from the weights with `provenance fingerprint`"
        )


def tensor_digest(array: npt.NDArray[np.generic]) -> bytes:
    """BLAKE3 of the tensor's C-order little-endian bytes as stored (no dtype or shape: bytes only).

    The same digest as the manifest layer's per-tensor digest for unquantized tensors; bfloat16
    tensors widened by a reader are hashed as their bfloat16 bytes. Quantized formats (GGUF
    blocks, ONNX int8 + scales) are hashed after dequantization.
    """
    a = np.ascontiguousarray(array)
    if a.dtype.metadata and a.dtype.metadata.get("stored") == "bfloat16":
        # widened by a reader: hash the stored bfloat16 bytes, as the manifest layer does
        # (the high 16 bits of each float32, taken with one strided copy)
        high = 1 if sys.byteorder == "little" else 0
        a = np.ascontiguousarray(a.reshape(-1).view(np.uint16)[high::2], dtype="<u2")
    elif a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO) if a.nbytes > (1 << 22) else blake3.blake3()
    hasher.update(a.reshape(-1).view(np.uint8).data)
    return hasher.digest()


def entry_for(name: str, array: npt.NDArray[np.generic], probes: list[factors.FactorProbe] | None = None,
              held: dict[str, npt.NDArray[np.float32]] | None = None) -> TensorEntry:
    """Digest and, if informative and not produced by a formula, sketch one tensor; if it is a
    factor candidate, append its probe to ``probes`` (and its float32 matrix to ``held``)."""
    mat = matrix_view(array)
    reason = formulaic_reason(mat) if mat is not None else None
    sketch = gram = mom = aligned = None
    if mat is not None and reason is None:
        w = np.ascontiguousarray(mat, dtype=np.float32)
        sketch, gram, mom, aligned = sketch_matrix(w), gram_sketch(w), moments(w), aligned_sketch(w)
        if probes is not None and (fp := factors.probe(name, w)) is not None:
            probes.append(fp)
            if held is not None:
                held[name] = w
    return TensorEntry(
        name=name, dtype=array.dtype.name, shape=tuple(int(d) for d in array.shape),
        digest=tensor_digest(array), sketch=sketch, gram=gram, formula=reason or "", moments=mom,
        aligned=aligned,
    )


_Tensors = Iterable[tuple[str, npt.NDArray[np.generic]]]


def build(tensors: _Tensors, *, source: str = "model", reread: Callable[[], _Tensors] | None = None) -> Fingerprint:
    """Fingerprint a stream of (name, array), one tensor held at a time; then the products of its balanced
    factor pairs (:mod:`~client.core.descent.factors`), if any, from a second pass over ``reread()``, or
    ``tensors`` if not a one-shot iterator (else the factor candidates are held in the first pass)."""
    entries: dict[str, TensorEntry] = {}
    probes: list[factors.FactorProbe] = []
    held: dict[str, npt.NDArray[np.float32]] | None = {} if reread is None and isinstance(tensors, Iterator) else None
    for name, array in tensors:
        if name in entries:
            raise FormatError(f"{source}: tensor name {name!r} appears twice")
        entries[name] = entry_for(name, array, probes, held)
    order = {n: i for i, n in enumerate(sorted(entries, key=lambda s: s.encode()))}
    derived: dict[tuple[int, int], TensorEntry] = {}
    pairs = factors.pair_factors(probes)
    again = (held.items() if held is not None else reread() if reread is not None else tensors) if pairs else ()
    for left, right, p in factors.products(pairs, again, source):
        derived[order[left], order[right]] = TensorEntry(
            name=factors.product_name(left, right), dtype="float32", shape=p.shape, digest=b"",
            sketch=sketch_matrix(p), gram=gram_sketch(p), aligned=aligned_sketch(p), factors=(left, right))
    return Fingerprint(tuple(entries[n] for n in order), derived=tuple(derived[k] for k in sorted(derived)))


def _encode_axis(out: list[bytes], axis: AxisSketch) -> None:
    feats = np.ascontiguousarray(axis.features, dtype="<f2")
    out.append(struct.pack("<II", axis.length, feats.shape[0]))
    out.append(feats.tobytes())


def _encode_aligned(out: list[bytes], aligned: tuple[AlignedAxis, AlignedAxis]) -> None:
    out.append(struct.pack("<B", ALIGNED_DIRS))
    for axis in aligned:
        feats = np.ascontiguousarray(axis.features, dtype="<f2")
        out.append(struct.pack("<II", axis.length, feats.shape[0]))
        out.append(feats.tobytes())


def encode(fp: Fingerprint) -> bytes:
    if fp.version not in VERSIONS:
        raise FormatError(f"fingerprint version {fp.version} is not one of {VERSIONS}")
    out = [MAGIC, struct.pack("<HHI", fp.version, FREQS, len(fp.entries))]
    for e in fp.entries:
        name = e.name.encode()
        dtype = e.dtype.encode("ascii")
        out.append(struct.pack("<H", len(name)) + name + struct.pack("<B", len(dtype)) + dtype)
        out.append(struct.pack(f"<B{len(e.shape)}Q", len(e.shape), *e.shape))
        out.append(e.digest)
        if e.sketch is not None:
            out.append(b"\x01")
            axes = list(e.sketch) + (list(e.gram) if fp.version >= 2 and e.gram is not None else [])
            for axis in axes:
                _encode_axis(out, axis)
            if fp.version >= MOMENTS_SINCE and e.moments is not None:
                out.append(struct.pack("<ff", *e.moments))
            if fp.version >= ALIGNED_SINCE and e.aligned is not None:
                _encode_aligned(out, e.aligned)
        elif e.formula and fp.version >= 2:
            reason = e.formula.encode("ascii")
            out.append(b"\x02" + struct.pack("<B", len(reason)) + reason)
        else:
            out.append(b"\x00")
    if fp.version >= DERIVED_SINCE:
        index = {e.name: i for i, e in enumerate(fp.entries)}
        out.append(struct.pack("<I", len(fp.derived)))
        for d in fp.derived:
            assert d.factors is not None and d.sketch is not None and d.gram is not None and d.aligned is not None
            out.append(struct.pack("<II", index[d.factors[0]], index[d.factors[1]]) + b"\x03")
            for axis in (*d.sketch, *d.gram):
                _encode_axis(out, axis)
            _encode_aligned(out, d.aligned)
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


def _decode_axis(cur: _Cursor, limit: int) -> AxisSketch:
    length, k = cur.unpack("<II")
    if k > limit or k > length or (k < length and k != limit):
        raise FormatError(f"{cur.source}: sketch keeps {k} of {length} units")
    raw = cur.take(k * FREQS * 2)
    feats = np.frombuffer(raw, dtype="<f2").reshape(k, FREQS)
    if not np.all(np.isfinite(feats)):
        raise FormatError(f"{cur.source}: sketch holds a non-finite value")
    return AxisSketch(length=length, features=feats.astype(np.float32))


_Status = tuple[tuple[AxisSketch, AxisSketch] | None, tuple[AxisSketch, AxisSketch] | None, str,
                tuple[float, float] | None, tuple[AlignedAxis, AlignedAxis] | None]


def _decode_aligned(cur: _Cursor, name: str) -> tuple[AlignedAxis, AlignedAxis]:
    (dirs,) = cur.unpack("<B")
    if dirs != ALIGNED_DIRS:
        raise FormatError(f"{cur.source}: aligned sketch of {name!r} has {dirs} directions, not {ALIGNED_DIRS}")
    axes = []
    for _ in range(2):
        length, k = cur.unpack("<II")
        if k != min(length, ALIGNED_UNITS):
            raise FormatError(f"{cur.source}: aligned sketch of {name!r} keeps {k} of {length} units")
        feats = np.frombuffer(cur.take(k * dirs * 2), dtype="<f2").reshape(k, dirs)
        if not np.all(np.isfinite(feats)):
            raise FormatError(f"{cur.source}: aligned sketch of {name!r} holds a non-finite value")
        axes.append(AlignedAxis(length=length, features=feats.astype(np.float32)))
    return axes[0], axes[1]


def _decode_moments(cur: _Cursor, name: str) -> tuple[float, float]:
    std, kurt = struct.unpack("<ff", cur.take(8))
    if not (math.isfinite(std) and math.isfinite(kurt) and std >= 0):
        raise FormatError(f"{cur.source}: bad moments for {name!r}")
    return std, kurt


def _decode_status(cur: _Cursor, version: int, name: str) -> _Status:
    """The part of an entry after its digest: (sketch, Gram sketch, formula reason, moments, aligned)."""
    flag = cur.take(1)
    if flag == b"\x01":
        sketch = (_decode_axis(cur, MAX_UNITS), _decode_axis(cur, MAX_UNITS))
        gram = (_decode_axis(cur, GRAM_UNITS), _decode_axis(cur, GRAM_UNITS)) if version >= 2 else None
        mom = _decode_moments(cur, name) if version >= MOMENTS_SINCE else None
        return sketch, gram, "", mom, _decode_aligned(cur, name) if version >= ALIGNED_SINCE else None
    if flag == b"\x02" and version >= 2:
        (rlen,) = cur.unpack("<B")
        try:
            reason = cur.take(rlen).decode("ascii")
        except UnicodeDecodeError as err:
            raise FormatError(f"{cur.source}: formula reason of {name!r} is not ASCII") from err
        if not reason or rlen > MAX_REASON:
            raise FormatError(f"{cur.source}: bad formula reason for {name!r}")
        return None, None, reason, None, None
    if flag == b"\x00":
        return None, None, "", None, None
    raise FormatError(f"{cur.source}: bad sketch flag for {name!r}")


def _decode_derived(cur: _Cursor, entries: list[TensorEntry]) -> list[TensorEntry]:
    """The derived products of version 4 (checked against the entries by :class:`Fingerprint`)."""
    out, (count,) = [], cur.unpack("<I")
    for _ in range(min(count, len(entries) // 2 + 1)):  # more than that cannot pass the check
        i, j = cur.unpack("<II")
        if max(i, j) >= len(entries) or cur.take(1) != b"\x03":
            raise FormatError(f"{cur.source}: bad derived product")
        name = factors.product_name(left := entries[i].name, right := entries[j].name)
        sketch = (_decode_axis(cur, MAX_UNITS), _decode_axis(cur, MAX_UNITS))
        gram = (_decode_axis(cur, GRAM_UNITS), _decode_axis(cur, GRAM_UNITS))
        out.append(TensorEntry(name=name, dtype="float32", shape=(sketch[0].length, sketch[1].length), digest=b"",
                               sketch=sketch, gram=gram, aligned=_decode_aligned(cur, name), factors=(left, right)))
    return out


def decode(data: bytes, *, source: str = "fingerprint") -> Fingerprint:
    """Parse canonical fingerprint bytes; raises FormatError naming ``source`` otherwise."""
    if len(data) > MAX_ENCODED:
        raise FormatError(f"{source}: fingerprint larger than {MAX_ENCODED} bytes")
    cur = _Cursor(data, source)
    if cur.take(4) != MAGIC:
        raise FormatError(f"{source}: not a fingerprint (bad magic)")
    version, freqs, count = cur.unpack("<HHI")
    if version not in VERSIONS or freqs != FREQS:
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
        sketch, gram, formula, mom, aligned = _decode_status(cur, version, name)
        entries.append(TensorEntry(name=name, dtype=dtype, shape=tuple(shape), digest=digest, sketch=sketch,
                                   gram=gram, formula=formula, moments=mom, aligned=aligned))
    derived = _decode_derived(cur, entries) if version >= DERIVED_SINCE else []
    if cur.pos != len(data):
        raise FormatError(f"{source}: {len(data) - cur.pos} trailing bytes after the fingerprint")
    fp = Fingerprint(tuple(entries), version, tuple(derived))
    if encode(fp) != data:
        raise FormatError(f"{source}: fingerprint is not in canonical form")
    return fp
