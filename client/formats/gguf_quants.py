"""Dequantizing GGUF (ggml) block types to float32: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants.

Blocks of 32 values each carry a float16 scale ``d`` (and for the _1 types a float16 minimum
``m``); the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K are super-blocks of 256 values with
sub-block scales, as in ggml's ``block_q*_K`` structs. Pure: bytes in, arrays out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

QK = 32
QK_K = 256
# ggml type -> (name, bytes per block of QK values)
BLOCKS = {8: ("Q8_0", 34), 2: ("Q4_0", 18), 3: ("Q4_1", 20), 6: ("Q5_0", 22), 7: ("Q5_1", 24)}
# ggml type -> (name, bytes per super-block of QK_K values)
KBLOCKS = {10: ("Q2_K", 84), 11: ("Q3_K", 110), 12: ("Q4_K", 144), 13: ("Q5_K", 176), 14: ("Q6_K", 210),
           15: ("Q8_K", 292)}


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
    name, size = KBLOCKS[ggml_type]
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
    if ggml_type in KBLOCKS:
        return dequantize_k(ggml_type, raw, shape)
    name, size = BLOCKS[ggml_type]
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
