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
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from client.errors import FormatError
from client.formats._protobuf import fields, packed_varints, signed64
from client.formats.base import MAX_NDIM, MAX_TENSORS, Tensor, bf16_to_f32, fail

_DTYPES: dict[int, str] = {
    1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?",
    10: "<f2", 11: "<f8", 12: "<u4", 13: "<u8", 16: "bf16",
}


@dataclass
class _Node:
    op: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ints: dict[str, int] = field(default_factory=dict)


def _text(v: object, path: Path) -> str:
    if not isinstance(v, memoryview):
        raise fail(path, "malformed ONNX (expected a string field)")
    try:
        return bytes(v).decode()
    except UnicodeDecodeError as err:
        raise fail(path, "malformed ONNX (string is not UTF-8)") from err


def _node(buf: memoryview, path: Path) -> _Node:
    n = _Node()
    for f, _w, v in fields(buf, path):
        if f == 1:
            n.inputs.append(_text(v, path))
        elif f == 2:
            n.outputs.append(_text(v, path))
        elif f == 4:
            n.op = _text(v, path)
        elif f == 5 and isinstance(v, memoryview):
            name, ival = "", None
            for af, _aw, av in fields(v, path):
                if af == 1:
                    name = _text(av, path)
                elif af == 3 and isinstance(av, int):
                    ival = signed64(av)
            if ival is not None:
                n.ints[name] = ival
    return n


def _tensor(buf: memoryview, path: Path) -> tuple[str, npt.NDArray[np.generic]]:
    dims: list[int] = []
    dtype_code = 0
    name = ""
    raw: memoryview | None = None
    typed: dict[int, list[memoryview | int]] = {}
    for f, _w, v in fields(buf, path):
        if f == 1:
            dims.extend(signed64(d) for d in packed_varints(v, path))
        elif f == 2 and isinstance(v, int):
            dtype_code = v
        elif f == 8:
            name = _text(v, path)
        elif f == 9 and isinstance(v, memoryview):
            raw = v
        elif f in (4, 5, 7, 10, 11):
            typed.setdefault(f, []).append(v)
        elif f == 14 and v == 1:
            raise fail(path, f"initializer {name or '?'} uses external data, which is not supported")
    if dtype_code not in _DTYPES:
        raise fail(path, f"initializer {name!r} has unsupported data type {dtype_code}")
    if len(dims) > MAX_NDIM or any(d < 0 for d in dims):
        raise fail(path, f"initializer {name!r} has bad dims {dims}")
    code = _DTYPES[dtype_code]
    dt = np.dtype("<u2" if code == "bf16" else code)
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if raw is not None:
        if len(raw) != count * dt.itemsize:
            raise fail(path, f"initializer {name!r}: {len(raw)} raw bytes for dims {dims}")
        arr = np.frombuffer(raw, dtype=dt).copy()
    else:
        arr = _typed_values(typed, dt, path, name)
        if arr.size != count:
            raise fail(path, f"initializer {name!r}: {arr.size} values for dims {dims}")
    arr = arr.reshape(dims)
    return name, bf16_to_f32(arr.view(np.uint16)) if code == "bf16" else arr


def _typed_values(typed: dict[int, list[memoryview | int]], dt: np.dtype[np.generic], path: Path,
                  name: str) -> npt.NDArray[np.generic]:
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
            if f == 5 and (dt.kind == "f" or dt == np.dtype("<u2")):
                # float16 / bfloat16 values travel as their 16-bit patterns in int32_data
                return np.array(ints, dtype=np.uint16).view(dt)
            return np.array(ints, dtype=np.int64 if f != 11 else np.uint64).astype(dt)
    if not typed:
        return np.empty(0, dt)
    raise fail(path, f"initializer {name!r} has no data")


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
        graph = None
        for f, w, v in fields(buf, self.path):
            if f == 7 and w == 2:
                graph = v
        if not isinstance(graph, memoryview):
            raise fail(self.path, "not an ONNX model (no graph)")
        inits: dict[str, memoryview] = {}
        nodes: list[_Node] = []
        for f, _w, v in fields(graph, self.path):
            if f == 5 and isinstance(v, memoryview):
                name = ""
                for tf, _tw, tv in fields(v, self.path):
                    if tf == 8:
                        name = _text(tv, self.path)
                if name in inits:
                    raise fail(self.path, f"initializer {name!r} appears twice")
                inits[name] = v
                if len(inits) > MAX_TENSORS:
                    raise fail(self.path, f"more than {MAX_TENSORS} initializers")
            elif f == 1 and isinstance(v, memoryview):
                nodes.append(_node(v, self.path))
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
        for name, tbuf in inits.items():
            if name in consumed and name not in dq:
                continue
            _, arr = _tensor(tbuf, self.path)
            if name in dq:
                arr = self._dequantize(name, arr, dq[name], inits)
            if name in transpose and arr.ndim == 2:
                arr = np.ascontiguousarray(arr.T)
            yield name, arr

    def _dequantize(self, name: str, x: npt.NDArray[np.generic], node: _Node,
                    inits: dict[str, memoryview]) -> npt.NDArray[np.generic]:
        scale = _tensor(inits[node.inputs[1]], self.path)[1].astype(np.float32)
        zp = (_tensor(inits[node.inputs[2]], self.path)[1].astype(np.float32)
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
