"""GGUF (llama.cpp) models: header, metadata, tensor infos, and dequantized tensors.

Layout (GGUF v2/v3, little-endian): "GGUF" | u32 version | u64 tensor count | u64 metadata
count | metadata (key string, u32 value type, value) | tensor infos (name string, u32 n_dims,
n_dims x u64 dims, u32 ggml type, u64 offset) | padding to ``general.alignment`` (default 32)
| tensor data. Strings are u64 length + UTF-8. Dims list the fastest-varying axis first, so
the numpy shape is the reverse.

Dequantized types: F32, F16, BF16, F64, I8/I16/I32/I64, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks
of 32 values, each with a float16 scale ``d`` and for the _1 types a float16 minimum ``m``), and
the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (super-blocks of 256 values with sub-block
scales, as in ggml's ``block_q*_K`` structs). Other types (Q8_1, IQ types, TQ types) raise a
FormatError naming the type.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from client.formats.base import (
    MAX_NAME,
    MAX_NDIM,
    MAX_TENSORS,
    Tensor,
    bf16_to_f32,
    fail,
    file_size,
    read_array,
    read_exact,
)

MAGIC = b"GGUF"
MAX_KV = 1_000_000
MAX_ARRAY = 100_000_000
QK = 32
QK_K = 256

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_PLAIN = {0: "<f4", 1: "<f2", 28: "<f8", 24: "i1", 25: "<i2", 26: "<i4", 27: "<i8", 30: "<u2"}
# ggml type -> (name, bytes per block of QK values)
_BLOCKS = {8: ("Q8_0", 34), 2: ("Q4_0", 18), 3: ("Q4_1", 20), 6: ("Q5_0", 22), 7: ("Q5_1", 24)}
# ggml type -> (name, bytes per super-block of QK_K values)
_KBLOCKS = {10: ("Q2_K", 84), 11: ("Q3_K", 110), 12: ("Q4_K", 144), 13: ("Q5_K", 176), 14: ("Q6_K", 210),
            15: ("Q8_K", 292)}
_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
          11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32",
          27: "I64", 28: "F64", 30: "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (slowest axis first)
    ggml_type: int
    offset: int  # absolute, in the file


class _Stream:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f = f
        self.path = path

    def unpack(self, fmt: str, what: str) -> tuple[object, ...]:
        return struct.unpack(fmt, read_exact(self.f, struct.calcsize(fmt), self.path, what))

    def u32(self, what: str) -> int:
        v = self.unpack("<I", what)[0]
        assert isinstance(v, int)
        return v

    def u64(self, what: str) -> int:
        v = self.unpack("<Q", what)[0]
        assert isinstance(v, int)
        return v

    def string(self, what: str, limit: int = 1 << 20) -> str:
        n = self.u64(what)
        if n > limit:
            raise fail(self.path, f"{what} string of {n} bytes exceeds {limit}")
        try:
            return read_exact(self.f, n, self.path, what).decode()
        except UnicodeDecodeError as err:
            raise fail(self.path, f"{what} is not UTF-8") from err

    def value(self, vtype: int, what: str, depth: int = 0) -> object:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype], what)[0]
        if vtype == 8:
            return self.string(what)
        if vtype == 9 and depth == 0:
            etype = self.u32(what)
            count = self.u64(what)
            if count > MAX_ARRAY:
                raise fail(self.path, f"{what}: array of {count} items exceeds {MAX_ARRAY}")
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                read_exact(self.f, size * count, self.path, what)
                return f"<array of {count}>"
            return [self.value(etype, what, depth + 1) for _ in range(count)]
        raise fail(self.path, f"{what}: unknown metadata value type {vtype}")


def read_header(f: BinaryIO, path: Path) -> tuple[dict[str, object], list[TensorInfo]]:
    s = _Stream(f, path)
    if read_exact(f, 4, path, "magic") != MAGIC:
        raise fail(path, "not a GGUF file (bad magic)")
    version = s.u32("version")
    if version not in (2, 3):
        raise fail(path, f"unsupported GGUF version {version}")
    n_tensors, n_kv = s.u64("tensor count"), s.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise fail(path, f"implausible counts ({n_tensors} tensors, {n_kv} metadata)")
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = s.string("metadata key", MAX_NAME)
        meta[key] = s.value(s.u32(f"type of {key}"), key)
    raw_infos = []
    for _ in range(n_tensors):
        name = s.string("tensor name", MAX_NAME)
        ndim = s.u32(f"ndim of {name}")
        if ndim > MAX_NDIM:
            raise fail(path, f"tensor {name!r} has {ndim} dimensions")
        dims = [s.u64(f"dims of {name}") for _ in range(ndim)]
        raw_infos.append((name, tuple(reversed(dims)), s.u32(f"type of {name}"), s.u64(f"offset of {name}")))
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise fail(path, f"bad general.alignment {align!r}")
    pos = f.tell()
    base = (pos + align - 1) // align * align
    infos = [TensorInfo(n, shape, t, base + off) for n, shape, t, off in raw_infos]
    return meta, infos


def _nbytes(path: Path, info: TensorInfo) -> int:
    count = math.prod(info.shape)  # exact: np.prod in int64 wraps, and a wrapped size passed the bounds check
    if info.ggml_type in _PLAIN:
        return count * np.dtype(_PLAIN[info.ggml_type]).itemsize
    if info.ggml_type in _BLOCKS:
        if not info.shape or info.shape[-1] % QK:
            raise fail(path, f"tensor {info.name!r}: row length not a multiple of {QK}")
        return count // QK * _BLOCKS[info.ggml_type][1]
    if info.ggml_type in _KBLOCKS:
        if not info.shape or info.shape[-1] % QK_K:
            raise fail(path, f"tensor {info.name!r}: row length not a multiple of {QK_K}")
        return count // QK_K * _KBLOCKS[info.ggml_type][1]
    tname = _NAMES.get(info.ggml_type, f"type {info.ggml_type}")
    raise fail(path, f"tensor {info.name!r}: GGUF tensor type {tname} is not supported")


U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


def _f16(b: U8) -> F32:
    """Little-endian float16 fields (n, 2) -> float32 (n, 1)."""
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _bits(b: U8, width: int, mask: int) -> U8:
    """Split each byte of ``b`` (n, g, L) into 8 // width fields: (n, g, 8 // width, L), low bits first."""
    shifts = np.arange(0, 8, width, dtype=np.uint8).reshape(1, 1, -1, 1)
    out: U8 = (b[:, :, None, :] >> shifts) & np.uint8(mask)
    return out


def _scale_min_k4(packed: U8) -> tuple[F32, F32]:
    """The 8 six-bit scales and 8 six-bit mins packed in 12 bytes (Q4_K, Q5_K): each (n, 8, 1)."""
    a, b, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 6) << 4)], axis=1)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 6) << 4)], axis=1)
    return sc.astype(np.float32)[:, :, None], mn.astype(np.float32)[:, :, None]


def dequantize_k(ggml_type: int, raw: U8, shape: tuple[int, ...]) -> F32:
    """Dequantize super-blocks of a Q2_K/Q3_K/Q4_K/Q5_K/Q6_K/Q8_K tensor to float32 of ``shape``.

    Element ``i`` of a super-block uses sub-block scale ``i // 16`` (Q2_K, Q3_K, Q6_K) or
    ``i // 32`` (Q4_K, Q5_K). Arithmetic is float32 in ggml's order, (d * scale) * q - dmin * min.
    """
    name, size = _KBLOCKS[ggml_type]
    blk = raw.reshape(-1, size)
    n = blk.shape[0]
    if name == "Q8_K":  # f32 d | i8 qs[256] | i16 bsums[16] (bsums only serve dot products)
        d = np.ascontiguousarray(blk[:, 0:4]).view("<f4").astype(np.float32)
        q8 = np.ascontiguousarray(blk[:, 4:4 + QK_K]).view(np.int8).astype(np.float32)
        return (d * q8).reshape(shape)
    if name == "Q2_K":  # scales[16] (lo nibble scale, hi nibble min) | qs[64] | f16 d | f16 dmin
        sc, qs = blk[:, 0:16], blk[:, 16:80]
        d, dmin = _f16(blk[:, 80:82]), _f16(blk[:, 82:84])
        # qs byte 32h + l holds elements 128h + 32j + l in bits 2j..2j+1
        q2 = _bits(qs.reshape(n, 2, 32), 2, 3).reshape(n, 16, 16).astype(np.float32)
        dl = (d * (sc & 0x0F).astype(np.float32))[:, :, None]
        ml = (dmin * (sc >> 4).astype(np.float32))[:, :, None]
        return (dl * q2 - ml).reshape(shape)
    if name == "Q3_K":  # hmask[32] | qs[64] | scales[12] | f16 d
        hmask, qs, packed, d = blk[:, 0:32], blk[:, 32:96], blk[:, 96:108], _f16(blk[:, 108:110])
        # 16 six-bit scales: low nibble of scale j in byte j % 8 (shift 4 * (j // 8)),
        # top two bits in byte 8 + j % 4 (shift 2 * (j // 4)); stored with an offset of 32
        lo = _bits(packed[:, None, 0:8], 4, 0x0F).reshape(n, 16)
        hi = _bits(packed[:, None, 8:12], 2, 0x03).reshape(n, 16)
        scale = (lo | (hi << 4)).astype(np.float32) - 32
        low2 = _bits(qs.reshape(n, 2, 32), 2, 3).reshape(n, 8, 32)
        # element 32g + l: bit g of hmask[l]; a clear bit subtracts 4
        high = _bits(hmask[:, None, :], 1, 1).reshape(n, 8, 32)
        q3 = (low2.astype(np.int8) - ((high ^ 1) << 2).astype(np.int8)).astype(np.float32).reshape(n, 16, 16)
        return ((d * scale)[:, :, None] * q3).reshape(shape)
    if name in ("Q4_K", "Q5_K"):  # f16 d | f16 dmin | scales[12] | (Q5_K: qh[32]) | qs[128]
        d, dmin = _f16(blk[:, 0:2]), _f16(blk[:, 2:4])
        sck, mnk = _scale_min_k4(blk[:, 4:16])
        at = 16 + (32 if name == "Q5_K" else 0)
        # qs byte 32k + l holds element 64k + l (low nibble) and 64k + 32 + l (high nibble)
        q45: U8 = _bits(blk[:, at:at + 128].reshape(n, 4, 32), 4, 0x0F).reshape(n, 8, 32)
        if name == "Q5_K":  # element 32g + l: bit g of qh[l] is its fifth bit
            q45 = q45 | (_bits(blk[:, None, 16:48], 1, 1).reshape(n, 8, 32) << np.uint8(4))
        return ((d[:, :, None] * sck) * q45.astype(np.float32) - dmin[:, :, None] * mnk).reshape(shape)
    # Q6_K: ql[128] | qh[64] | scales[16] (int8) | f16 d
    ql, qh = blk[:, 0:128], blk[:, 128:192]
    sc6 = np.ascontiguousarray(blk[:, 192:208]).view(np.int8).astype(np.float32)
    d = _f16(blk[:, 208:210])
    # half h: ql byte 64h + l -> elements 128h + l (lo), 128h + 64 + l (hi), l < 64;
    # qh byte 32h + l -> two top bits of elements 128h + 32j + l at bits 2j..2j+1
    low4 = _bits(ql.reshape(n, 2, 64), 4, 0x0F).reshape(n, 2, 128)
    top2 = _bits(qh.reshape(n, 2, 32), 2, 3).reshape(n, 2, 128)
    q6 = ((low4 | (top2 << 4)).astype(np.int8) - np.int8(32)).astype(np.float32).reshape(n, 16, 16)
    return ((d * sc6)[:, :, None] * q6).reshape(shape)


def dequantize(ggml_type: int, raw: npt.NDArray[np.uint8], shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Dequantize blocks of a Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 or K-quant tensor to float32 of ``shape``."""
    if ggml_type in _KBLOCKS:
        return dequantize_k(ggml_type, raw, shape)
    name, size = _BLOCKS[ggml_type]
    blocks = raw.reshape(-1, size)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
    if name == "Q8_0":
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(shape)
    has_min = name in ("Q4_1", "Q5_1")
    m = blocks[:, 2:4].copy().view("<f2").astype(np.float32) if has_min else None
    at = 4 if has_min else 2
    if name in ("Q5_0", "Q5_1"):
        qh = blocks[:, at:at + 4].copy().view("<u4")  # (nb, 1)
        at += 4
    qs = blocks[:, at:at + 16]
    lo = (qs & 0x0F).astype(np.int32)
    hi = (qs >> 4).astype(np.int32)
    if name in ("Q5_0", "Q5_1"):
        bits = np.arange(16, dtype=np.uint32)
        lo |= (((qh >> bits) & 1) << 4).astype(np.int32)
        hi |= (((qh >> (bits + 16)) & 1) << 4).astype(np.int32)
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    if name == "Q4_0":
        q -= 8
    elif name == "Q5_0":
        q -= 16
    out = q * d
    if m is not None:
        out += m
    return out.reshape(shape)


class GgufReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tensors(self) -> Iterator[Tensor]:
        size = file_size(self.path)
        with open(self.path, "rb") as f:
            meta, infos = read_header(f, self.path)
            seen: set[str] = set()
            for info in infos:
                if info.name in seen:
                    raise fail(self.path, f"tensor {info.name!r} appears twice")
                seen.add(info.name)
                nbytes = _nbytes(self.path, info)
                if info.offset + nbytes > size:
                    raise fail(self.path, f"truncated: tensor {info.name!r} ends past the end of the file")
                yield info.name, self._read(f, info, nbytes)

    def _read(self, f: BinaryIO, info: TensorInfo, nbytes: int) -> npt.NDArray[np.generic]:
        if info.ggml_type in _PLAIN:
            arr = read_array(f, info.offset, np.dtype(_PLAIN[info.ggml_type]), info.shape, self.path, info.name)
            return bf16_to_f32(arr.view(np.uint16)) if info.ggml_type == 30 else arr
        raw = read_array(f, info.offset, np.dtype(np.uint8), (nbytes,), self.path, info.name)
        return dequantize(info.ggml_type, raw.view(np.uint8), info.shape)
