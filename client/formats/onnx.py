"""ONNX models: graph initializers, read with the bounded decoder of :mod:`_protobuf`.

Field numbers are those of onnx.proto (ModelProto.graph = 7; GraphProto.node = 1,
initializer = 5; NodeProto.input = 1, output = 2, op_type = 4, attribute = 5;
AttributeProto.name = 1, i = 3; TensorProto.dims = 1, data_type = 2, float_data = 4,
int32_data = 5, int64_data = 7, name = 8, raw_data = 9, double_data = 10, uint64_data = 11,
data_location = 14).

Two graph patterns are undone so tensors compare with their originals:

- ``DequantizeLinear(x, scale[, zero_point])`` over initializers (int8/uint8 weights with a
  per-tensor or per-axis scale) yields one float32 tensor ``(x - zero_point) * scale`` under
  x's name, instead of x, scale and zero point;
- a 2-D initializer used as the weight of ``MatMul`` (input 1) or of ``Gemm`` without
  ``transB`` is stored (in, out); it is yielded transposed, (out, in), as frameworks hold it.

External data (models over 2 GB) is refused with a clear error.

Regions (manifests) are the initializers as stored, without those two undoings. ``raw_data`` is
little-endian row-major (onnx.proto), so its bytes are hashed in place. Values in typed fields:
a single packed ``float_data`` (FLOAT) or ``double_data`` (DOUBLE) field holds little-endian
IEEE values back to back, exactly the elements' bytes, so it too is hashed in place; a single
packed ``int32_data``/``int64_data``/``uint64_data`` field is decoded (encoding ``onnx-varint``)
to the elements of the tensor's data type, little-endian, in bounded pieces, and those bytes are
hashed. Either way a tensor has the same digest as in ``raw_data`` or in safetensors. Typed values
that are not one packed field (unpacked repeated values) have no byte range: such a tensor is
left out of the digests, with that reason.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from client.errors import FormatError
from client.formats._protobuf import Value, fields, packed_varints, signed64
from client.formats.arrays import Tensor, as_array
from client.formats.base import MAX_TENSORS, NUMPY_DTYPES, Layout, TensorRegion, check_dims, element_count, fail
from client.formats.source import Source, with_mapped

FORMAT = "onnx"
VARINT = "onnx-varint"
_DECODE_BLOCK = 1 << 20

#: TensorProto.DataType -> manifest dtype name.
_DTYPES: dict[int, str] = {
    1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64", 9: "BOOL",
    10: "F16", 11: "F64", 12: "U32", 13: "U64", 16: "BF16",
}
#: Which typed field carries which data types (onnx.proto comments).
_VARINT_FIELD = {5: {"U8", "I8", "U16", "I16", "I32", "BOOL", "F16", "BF16"}, 7: {"I64"}, 11: {"U32", "U64"}}
_FIXED_FIELD = {4: ("F32", 4), 10: ("F64", 8)}


@dataclass
class _Node:
    op: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ints: dict[str, int] = field(default_factory=dict)


@dataclass
class _Init:
    """One initializer as stored. ``raw`` is raw_data (value, offset); ``typed`` the typed fields."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    start: int
    raw: tuple[memoryview, int] | None
    typed: dict[int, list[tuple[int, Value, int]]]  # field -> [(wire, value, offset)]


def _text(v: object, path: Path | str) -> str:
    if not isinstance(v, memoryview):
        raise fail(path, "malformed ONNX (expected a string field)")
    try:
        return bytes(v).decode()
    except UnicodeDecodeError as err:
        raise fail(path, "malformed ONNX (string is not UTF-8)") from err


def _node(buf: memoryview, path: Path | str) -> _Node:
    n = _Node()
    for f, _w, v, _at in fields(buf, path):
        if f == 1:
            n.inputs.append(_text(v, path))
        elif f == 2:
            n.outputs.append(_text(v, path))
        elif f == 4:
            n.op = _text(v, path)
        elif f == 5 and isinstance(v, memoryview):
            name, ival = "", None
            for af, _aw, av, _aat in fields(v, path):
                if af == 1:
                    name = _text(av, path)
                elif af == 3 and isinstance(av, int):
                    ival = signed64(av)
            if ival is not None:
                n.ints[name] = ival
    return n


def _init(buf: memoryview, base: int, path: Path | str) -> _Init:
    dims: list[int] = []
    code = 0
    name = ""
    raw: tuple[memoryview, int] | None = None
    typed: dict[int, list[tuple[int, Value, int]]] = {}
    for f, w, v, at in fields(buf, path, base):
        if f == 1:
            dims.extend(signed64(d) for d in packed_varints(v, path))
        elif f == 2 and isinstance(v, int):
            code = v
        elif f == 8:
            name = _text(v, path)
        elif f == 9 and isinstance(v, memoryview):
            raw = (v, at)
        elif f in (4, 5, 7, 10, 11):
            typed.setdefault(f, []).append((w, v, at))
        elif f == 14 and v == 1:
            raise fail(path, f"initializer {name or '?'} uses external data, which is not supported")
    if code not in _DTYPES:
        raise fail(path, f"initializer {name!r} has unsupported data type {code}")
    shape = check_dims(path, name, dims)
    return _Init(name, _DTYPES[code], shape, base, raw, typed)


def _graph(buf: memoryview, path: Path | str) -> tuple[dict[str, tuple[memoryview, int]], list[_Node]]:
    """The initializers (message, offset) by name, and the nodes, of a ModelProto."""
    graph: tuple[memoryview, int] | None = None
    for f, w, v, at in fields(buf, path):
        if f == 7 and w == 2 and isinstance(v, memoryview):
            graph = (v, at)
    if graph is None:
        raise fail(path, "not an ONNX model (no graph)")
    inits: dict[str, tuple[memoryview, int]] = {}
    nodes: list[_Node] = []
    for f, _w, v, at in fields(graph[0], path, graph[1]):
        if f == 5 and isinstance(v, memoryview):
            name = ""
            for tf, _tw, tv, _tat in fields(v, path):
                if tf == 8:
                    name = _text(tv, path)
            if name in inits:
                raise fail(path, f"initializer {name!r} appears twice")
            inits[name] = (v, at)
            if len(inits) > MAX_TENSORS:
                raise fail(path, f"more than {MAX_TENSORS} initializers")
        elif f == 1 and isinstance(v, memoryview):
            nodes.append(_node(v, path))
    return inits, nodes


def _region(t: _Init, path: Path | str) -> TensorRegion | str:
    """The tensor's region, or why it has none."""
    count = element_count(t.dims)
    if t.raw is not None:
        data, at = t.raw
        size = count * np.dtype(NUMPY_DTYPES[t.dtype]).itemsize
        if len(data) != size:
            raise fail(path, f"initializer {t.name!r}: {len(data)} raw bytes for dims {list(t.dims)}")
        return TensorRegion(t.name, t.dtype, t.dims, at, at + size)
    if not t.typed:
        if count:
            raise fail(path, f"initializer {t.name!r} has no data")
        return TensorRegion(t.name, t.dtype, t.dims, t.start, t.start)
    if len(t.typed) != 1 or len(next(iter(t.typed.values()))) != 1 or next(iter(t.typed.values()))[0][0] != 2:
        return "values in unpacked or several typed fields: no single byte range"
    ((f, [(_w, v, at)]),) = t.typed.items()
    assert isinstance(v, memoryview)
    if f in _FIXED_FIELD:
        dtype, width = _FIXED_FIELD[f]
        if dtype != t.dtype:
            return f"{t.dtype} values in a {dtype} field"
        if len(v) != count * width:
            raise fail(path, f"initializer {t.name!r}: {len(v) // width} values for dims {list(t.dims)}")
        return TensorRegion(t.name, t.dtype, t.dims, at, at + len(v))
    if t.dtype not in _VARINT_FIELD[f]:
        return f"{t.dtype} values in typed field {f}"
    ends = np.frombuffer(v, dtype=np.uint8) < 0x80
    if int(np.count_nonzero(ends)) != count or (len(v) and not ends[-1]):
        raise fail(path, f"initializer {t.name!r}: typed values do not match dims {list(t.dims)}")
    return TensorRegion(t.name, t.dtype, t.dims, at, at + len(v), encoding=VARINT)


def layout(source: Source) -> Layout:
    """Every initializer's region as stored (no dequantizing, no transposing), sorted by name."""

    def parse(buf: memoryview) -> Layout:
        inits, _nodes = _graph(buf, source.name)
        regions: list[TensorRegion] = []
        skipped: list[tuple[str, str]] = []
        for name, (tbuf, at) in inits.items():
            r = _region(_init(tbuf, at, source.name), source.name)
            if isinstance(r, str):
                skipped.append((name, r))
            else:
                regions.append(r)
        return Layout(FORMAT, tuple(sorted(regions, key=lambda r: r.name)), tuple(skipped))

    if source.size == 0:
        raise fail(source.name, "empty file")
    return with_mapped(source, parse)


def varint_elements(read: Callable[[int, int], bytes], r: TensorRegion) -> Iterator[bytes]:
    """The little-endian element bytes of an ``onnx-varint`` region, ``_DECODE_BLOCK`` input bytes at a time."""
    target = np.dtype(NUMPY_DTYPES[r.dtype])
    unsigned = r.dtype in ("U32", "U64")
    carry = b""
    for off in range(r.start, r.end, _DECODE_BLOCK):
        data = carry + read(off, min(_DECODE_BLOCK, r.end - off))
        cut = len(data)
        while cut and data[cut - 1] & 0x80:
            cut -= 1
        carry = data[cut:]
        ints = packed_varints(memoryview(data[:cut]), "onnx")
        vals = np.array(ints if unsigned else [signed64(x) for x in ints], dtype=np.uint64 if unsigned else np.int64)
        if r.dtype in ("F16", "BF16"):
            yield vals.astype(np.uint16).astype("<u2").tobytes()
        else:
            yield vals.astype(target).tobytes()


def _typed_values(t: _Init, dt: np.dtype[np.generic], path: Path | str) -> npt.NDArray[np.generic]:
    typed = {f: [v for _w, v, _at in items] for f, items in t.typed.items()}
    for f, width in ((4, 4), (10, 8)):  # packed fixed-width values: whole elements only (make fuzz)
        if any(isinstance(v, memoryview) and len(v) % width for v in typed.get(f, ())):
            raise fail(path, f"initializer {t.name!r}: packed field {f} is not a whole number of {width}-byte values")
    if 4 in typed:  # float_data, fixed32 (packed or not)
        parts = [np.frombuffer(v, "<f4") if isinstance(v, memoryview) else
                 np.array([v], "<u4").view("<f4") for v in typed[4]]
        return np.concatenate(parts).astype(dt) if parts else np.empty(0, dt)
    if 10 in typed:
        parts = [np.frombuffer(v, "<f8") if isinstance(v, memoryview) else
                 np.array([v], "<u8").view("<f8") for v in typed[10]]
        return np.concatenate(parts).astype(dt)
    for f in (5, 7, 11):
        if f in typed:
            ints = [signed64(x) if f == 7 else x for v in typed[f] for x in packed_varints(v, path)]
            try:
                if f == 5 and t.dtype in ("F16", "BF16", "U16"):
                    # float16 / bfloat16 values travel as their 16-bit patterns in int32_data
                    return np.array(ints, dtype=np.uint64).astype(np.uint16).view(dt)
                return np.array(ints, dtype=np.int64 if f != 11 else np.uint64).astype(dt)
            except OverflowError:  # a varint beyond its field's 64 bits (make fuzz)
                raise fail(path, f"initializer {t.name!r}: field {f} holds a value beyond 64 bits") from None
    if not typed:
        return np.empty(0, dt)
    raise fail(path, f"initializer {t.name!r} has no data")


def _array(t: _Init, path: Path | str) -> npt.NDArray[np.generic]:
    """The initializer as a little-endian array (BF16 widened to float32)."""
    r = _region(t, path)  # validates sizes
    dt = np.dtype(NUMPY_DTYPES[t.dtype])
    if t.raw is not None and not isinstance(r, str):
        raw = np.frombuffer(t.raw[0], dtype=np.uint8).copy()
        return as_array(raw, t.dtype, t.dims)
    arr = _typed_values(t, dt, path)
    if arr.size != element_count(t.dims):
        raise fail(path, f"initializer {t.name!r}: {arr.size} values for dims {list(t.dims)}")
    return as_array(np.ascontiguousarray(arr).view(np.uint8), t.dtype, t.dims)


class OnnxReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        with open(self.path, "rb") as fh:
            if fh.seek(0, 2) == 0:
                raise fail(self.path, "empty file")
            failure: FormatError | None = None
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    yield from self._tensors(buf)
                except FormatError as err:
                    # Re-raised after the map closes: the traceback's frames hold slices of the map,
                    # which would make closing it fail with BufferError and hide this error.
                    failure = FormatError(str(err))
                finally:
                    buf.release()
            if failure is not None:
                raise failure

    def _tensors(self, buf: memoryview) -> Iterator[Tensor]:
        inits, nodes = _graph(buf, self.path)
        dq: dict[str, _Node] = {}  # quantized initializer -> its DequantizeLinear node
        consumed: set[str] = set()
        out_to_init: dict[str, str] = {}
        for n in nodes:
            if n.op == "DequantizeLinear" and len(n.inputs) >= 2 and all(i in inits for i in n.inputs if i):
                dq[n.inputs[0]] = n
                consumed.update(i for i in n.inputs[1:] if i)
                out_to_init.update((o, n.inputs[0]) for o in n.outputs)
        transpose: set[str] = set()
        for n in nodes:
            weight = n.inputs[1] if len(n.inputs) > 1 else ""
            weight = out_to_init.get(weight, weight)
            if weight in inits and (n.op == "MatMul" or (n.op == "Gemm" and not n.ints.get("transB", 0))):
                transpose.add(weight)
        for name, (tbuf, at) in inits.items():
            if name in consumed and name not in dq:
                continue
            arr = _array(_init(tbuf, at, self.path), self.path)
            if name in dq:
                arr = self._dequantize(name, arr, dq[name], inits)
            if name in transpose and arr.ndim == 2:
                arr = np.ascontiguousarray(arr.T)
            yield name, arr

    def _dequantize(self, name: str, x: npt.NDArray[np.generic], node: _Node,
                    inits: dict[str, tuple[memoryview, int]]) -> npt.NDArray[np.generic]:
        scale = _array(_init(*inits[node.inputs[1]], self.path), self.path).astype(np.float32)
        zp = (_array(_init(*inits[node.inputs[2]], self.path), self.path).astype(np.float32)
              if len(node.inputs) > 2 and node.inputs[2] else np.zeros_like(scale))
        axis = node.ints.get("axis", 1)
        xf = x.astype(np.float32)
        if scale.size == 1:
            return ((xf - zp.reshape(())) * scale.reshape(())).astype(np.float32)
        if x.ndim == 0 or not -x.ndim <= axis < x.ndim or scale.shape != (x.shape[axis],) or zp.shape != scale.shape:
            raise fail(self.path, f"DequantizeLinear of {name!r}: scale shape {scale.shape} does not fit {x.shape}")
        shape = [1] * x.ndim
        shape[axis] = -1
        out: npt.NDArray[np.float32] = ((xf - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
        return out
