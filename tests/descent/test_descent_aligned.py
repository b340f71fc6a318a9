"""The aligned-units swap test (docs/descent.md §3.2c): sketch, fingerprint v4 section, null, power."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest

from client.core.descent.aligned import (
    ALIGNED_DIRS,
    ALIGNED_UNITS,
    aligned_sketch,
    aligned_tests,
    aligned_units,
    directions,
    log10_bounds,
)
from client.core.descent.compare import compare
from client.core.descent.fingerprint import Fingerprint, TensorEntry, build, decode
from client.errors import FormatError

W = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)

# --------------------------------------------------------------------- the fixed directions


def test_directions_follow_the_documented_bit_rule_and_are_golden() -> None:
    """R_n is reproducible from its docstring alone: PCG64(SeedSequence([0x504C4131, n])) raw words,
    bit t % 64 of word t // 64 (least significant first) gives entry t; golden bytes pin it."""
    n = 8
    words = np.random.PCG64(np.random.SeedSequence([0x504C4131, n])).random_raw(n * ALIGNED_DIRS // 64)
    naive = [[1.0 if (int(words[(i * ALIGNED_DIRS + j) // 64]) >> ((i * ALIGNED_DIRS + j) % 64)) & 1 else -1.0
              for j in range(ALIGNED_DIRS)] for i in range(n)]
    np.testing.assert_array_equal(directions(n), np.array(naive, np.float32))
    golden = "edc0a0b29d65b997a5f7a7f3f5804050ace8fffd1831e66dbfa2c5434e345ef4"
    assert np.packbits(directions(8).ravel() > 0).tobytes().hex() == golden
    assert not directions(8).flags.writeable
    assert not np.array_equal(directions(9)[:8], directions(8))


def test_kept_units_are_a_rule_of_the_length_alone() -> None:
    np.testing.assert_array_equal(aligned_units(100), np.arange(100))
    idx = aligned_units(4097)
    assert len(idx) == ALIGNED_UNITS and idx[0] == 0 and idx[-1] == 4096 and np.all(np.diff(idx) >= 1)


# --------------------------------------------------------------------- the sketch


def test_aligned_sketch_ignores_per_unit_positive_scaling_and_casts() -> None:
    rows, cols = aligned_sketch(W)
    assert rows.features.shape == (96, ALIGNED_DIRS) and cols.features.shape == (64, ALIGNED_DIRS)
    np.testing.assert_allclose(np.linalg.norm(rows.features, axis=1), 1, atol=2e-3)
    np.testing.assert_allclose(rows.features.mean(axis=1), 0, atol=2e-3)
    c = np.exp(np.random.default_rng(1).normal(0, 1, 96)).astype(np.float32)
    rows2, _ = aligned_sketch(W * c[:, None])
    np.testing.assert_allclose(rows2.features, rows.features, atol=2e-3)
    _, cols2 = aligned_sketch(W.astype(np.float16).astype(np.float32) * 3.0)
    np.testing.assert_allclose(cols2.features, cols.features, atol=2e-2)


def test_a_unit_of_norm_zero_stays_zero() -> None:
    w = W.copy()
    w[5] = 0
    rows, _ = aligned_sketch(w)
    assert not rows.features[5].any() and np.all(np.isfinite(rows.features))


# --------------------------------------------------------------------- fingerprint v4


def test_version_4_carries_both_aligned_axes_of_every_sketched_tensor() -> None:
    fp = decode(build({"w": W, "v": np.ones(8, np.float32)}.items()).encode())
    by_name = {e.name: e for e in fp.entries}
    assert fp.version == 4 and by_name["v"].aligned is None
    aligned = by_name["w"].aligned
    assert aligned is not None and aligned[0].length == 96 and aligned[1].length == 64
    np.testing.assert_array_equal(aligned[0].features, aligned_sketch(W)[0].features)
    with pytest.raises(FormatError, match="aligned"):
        Fingerprint((dataclasses.replace(by_name["w"], aligned=None),))
    with pytest.raises(FormatError, match="aligned"):
        Fingerprint((by_name["w"],), version=3)


def _v3(current: Fingerprint) -> Fingerprint:
    return Fingerprint(tuple(TensorEntry(e.name, e.dtype, e.shape, e.digest, e.sketch, e.gram, e.formula, e.moments)
                             for e in current.entries), version=3)


def test_version_3_fingerprints_decode_keep_their_digest_and_compare_refuses_them_by_name() -> None:
    current = build({"w": W, "v": np.ones(8, np.float32)}.items())
    old = _v3(current)
    data = old.encode()
    aligned_bytes = 1 + 2 * 8 + (96 + 64) * ALIGNED_DIRS * 2
    assert data[4:6] == b"\x03\x00" and len(data) == len(current.encode()) - aligned_bytes
    again = decode(data)
    assert again.encode() == data and again.digest() == old.digest() and again.digest().startswith("blake3-plfp3:")
    assert all(e.aligned is None for e in again.entries)
    with pytest.raises(FormatError, match=r"version 3 \(blake3-plfp3\).*aligned"):
        compare(again, current)
    with pytest.raises(FormatError, match="version 3"):
        compare(current, again)


def _aligned_offset(data: bytes) -> int:
    """Byte offset of the aligned section of a one-tensor (16 x 64) fingerprint."""
    return len(data) - (1 + 2 * 8 + (16 + 64) * ALIGNED_DIRS * 2)


@pytest.mark.parametrize("field,value", [("dirs", 16), ("dirs", 0), ("kept", 15), ("length", 17)])
def test_bad_aligned_sections_are_refused(field: str, value: int) -> None:
    data = bytearray(build([("w", W[:16, :64])]).encode())
    at = _aligned_offset(bytes(data))
    assert data[at] == ALIGNED_DIRS and struct.unpack_from("<II", data, at + 1) == (16, 16)
    if field == "dirs":
        data[at] = value
    else:
        struct.pack_into("<I", data, at + 1 + (4 if field == "kept" else 0), value)
    with pytest.raises(FormatError, match="aligned"):
        decode(bytes(data))


def test_a_non_finite_aligned_value_is_refused() -> None:
    data = bytearray(build([("w", W[:16, :64])]).encode())
    at = _aligned_offset(bytes(data)) + 1 + 8
    data[at : at + 2] = np.array([np.inf], "<f2").tobytes()
    with pytest.raises(FormatError, match="non-finite"):
        decode(bytes(data))


# --------------------------------------------------------------------- the test and its null


def test_the_bound_is_exactly_hoeffding_on_the_pair_differences() -> None:
    a, b = aligned_sketch(W)[0], aligned_sketch(W + 0.5 * np.random.default_rng(2).standard_normal(W.shape)
                                                .astype(np.float32))[0]
    t, s = aligned_tests([a], [b])
    fa, fb = a.features.astype(np.float64), b.features.astype(np.float64)
    d = np.einsum("pk,pk->p", fa[0::2] - fa[1::2], fb[0::2] - fb[1::2])
    assert t[0, 0] == pytest.approx(d.sum()) and s[0, 0] == pytest.approx((d * d).sum())
    assert log10_bounds(t, s)[0, 0] == pytest.approx(-d.sum() ** 2 / (2 * (d * d).sum()) / math.log(10))
    assert log10_bounds(-t, s)[0, 0] == 0.0 and log10_bounds(t * 0, s * 0)[0, 0] == 0.0
