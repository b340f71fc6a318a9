"""What every format module shares: bounds, errors, the tensor region, the layout, the reader protocol.

Each format module parses a file once, through a bounded random-access :class:`~client.formats.source.Source`,
into a :class:`Layout`: one :class:`TensorRegion` per tensor (name, dtype, shape and where its bytes
lie). Manifests hash the regions (:mod:`client.hashing`); readers turn the same regions into numpy
arrays (:mod:`.arrays`, which alone needs numpy). Every parse failure is a :class:`TensorFormatError`
(a ``FormatError``) whose message names the file and the problem; nothing from a file is executed.

Tensor digest (docs/manifest.md, "Tensor digests"): BLAKE3 over the tensor's elements in row-major
(C) order, each element little-endian, i.e. the bytes safetensors stores. A region whose bytes are
stored that way is hashed in place; ``byteswap`` marks big-endian storage, ``encoding`` bytes that
must be decoded first (ONNX varint fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from client.core.manifest.errors import TensorFormatError

# Bounds shared by every format (STYLE.md habit 7): the stricter of the former reader and manifest limits.
MAX_TENSORS = 1_000_000
MAX_NDIM = 16
MAX_NAME = 4096  # bytes of UTF-8
MAX_DIM = 1 << 40
#: Elements of one tensor, counting no zero dimension (numpy allocates shape metadata by that product,
#: so ``[0, 2**62]`` is refused by numpy too); far above any real tensor, far below int64 wrapping.
MAX_ELEMENTS = 1 << 48

#: Dtype names recorded in manifests (safetensors spelling; every format maps to these where it can).
NUMPY_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def fail(path: Path | str, problem: str) -> TensorFormatError:
    """The error every format raises: ``"<file>: <problem>"``."""
    return TensorFormatError(f"{path}: {problem}")


def check_name(path: Path | str, name: str) -> None:
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise fail(path, f"tensor name {name[:80]!r} is empty or longer than {MAX_NAME} bytes")


def check_dims(path: Path | str, name: str, dims: object) -> tuple[int, ...]:
    """Requires a list of at most MAX_NDIM integers in [0, MAX_DIM] whose non-zero ones multiply to at
    most MAX_ELEMENTS (computed in Python ints, before numpy sees the shape)."""
    if not isinstance(dims, list | tuple) or len(dims) > MAX_NDIM:
        raise fail(path, f"tensor {name!r}: shape must be a list of at most {MAX_NDIM} dims, got {dims!r:.80}")
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise fail(path, f"tensor {name!r}: shape must hold non-negative integers, got {d!r}")
        if d > MAX_DIM:
            raise fail(path, f"tensor {name!r}: dimension {d} exceeds {MAX_DIM}")
    if math.prod(d for d in dims if d) > MAX_ELEMENTS:
        raise fail(path, f"tensor {name!r}: shape {list(dims)} has more than {MAX_ELEMENTS} elements "
                         "(zero dimensions aside)")
    return tuple(dims)


@dataclass(frozen=True)
class TensorRegion:
    """A tensor in a file: ``[start, end)`` (absolute offsets) holds its elements, densely.

    ``dtype`` is the manifest dtype name (``F32``, ``BF16``, a GGUF type such as ``Q4_K``...);
    ``shape`` is row-major (slowest axis first). ``byteswap`` is 0 when the stored elements are
    little-endian, else the byte width to reverse before hashing (big-endian storage);
    ``encoding`` is "" when the bytes are the elements themselves, else the name of the decoder
    (:func:`client.formats.element_bytes`) that yields them.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    byteswap: int = 0
    encoding: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise TensorFormatError(f"tensor {self.name!r}: bad byte range [{self.start}, {self.end})")
        if self.byteswap not in (0, 2, 4, 8) or (self.byteswap and (self.end - self.start) % self.byteswap):
            raise TensorFormatError(f"tensor {self.name!r}: bad byteswap {self.byteswap}")

    @property
    def plain(self) -> bool:
        """Whether ``[start, end)`` can be hashed as it is (no swap, no decoding)."""
        return not self.byteswap and not self.encoding


@dataclass(frozen=True)
class Layout:
    """A parsed file: its format name (recorded in manifests), its tensors, and the tensors left
    out of the digests with the reason (a view with no byte range, a compressed member)."""

    format: str
    tensors: tuple[TensorRegion, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)  # exact: np.prod in int64 wraps
