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
from client.core.descent.fingerprint import VERSION, Fingerprint, TensorEntry, build, decode
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


# --------------------------------------------------------------------- fingerprint v4 and later


def test_versions_since_4_carry_both_aligned_axes_of_every_sketched_tensor() -> None:
    fp = decode(build({"w": W, "v": np.ones(8, np.float32)}.items()).encode())
    by_name = {e.name: e for e in fp.entries}
    assert fp.version == VERSION >= 4 and by_name["v"].aligned is None
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
    derived_count = 4  # v4 ends with the u32 count of derived products (none here)
    assert data[4:6] == b"\x03\x00" and len(data) == len(current.encode()) - aligned_bytes - derived_count
    again = decode(data)
    assert again.encode() == data and again.digest() == old.digest() and again.digest().startswith("blake3-plfp3:")
    assert all(e.aligned is None for e in again.entries)
    with pytest.raises(FormatError, match=r"version 3 \(blake3-plfp3\).*aligned"):
        compare(again, current)
    with pytest.raises(FormatError, match="version 3"):
        compare(current, again)


def _aligned_offset(data: bytes) -> int:
    """Byte offset of the aligned section of a one-tensor (16 x 64) fingerprint (then the u32 count
    of derived products, 0)."""
    assert data[-4:] == b"\x00" * 4
    return len(data) - 4 - (1 + 2 * 8 + (16 + 64) * ALIGNED_DIRS * 2)


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


def _bounds(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """log10 bounds of the row and the column test of matrices a and b."""
    sa, sb = aligned_sketch(a), aligned_sketch(b)
    out = [float(log10_bounds(*aligned_tests([x], [y]))[0, 0]) for x, y in zip(sa, sb, strict=True)]
    return out[0], out[1]


def _exchangeable_null(r: np.random.Generator, kind: int, m: int = 64, n: int = 96) -> np.ndarray:
    """A matrix whose rows are exchangeable: Gaussian, Student-t(3), low-rank + noise, and per-column
    scales with an offset (its columns are not exchangeable; its rows are)."""
    if kind == 0:
        w = r.standard_normal((m, n))
    elif kind == 1:
        w = r.standard_t(3, (m, n))
    elif kind == 2:
        w = r.standard_normal((m, 4)) @ r.standard_normal((4, n)) + 0.3 * r.standard_normal((m, n))
    else:
        w = r.standard_normal((m, n)) * np.linspace(0.1, 2.0, n) + 0.2
    return w.astype(np.float32)


def test_the_sign_flip_null_holds_on_simulated_exchangeable_axes() -> None:
    """Independent pairs, rows exchangeable: the signs of the D_p are fair coins and the row
    bound is super-uniform (conservative) at every level, 1,200 axis tests."""
    r = np.random.default_rng(5)
    logs, positive, count = [], 0, 0
    for i in range(1200):
        a, b = _exchangeable_null(r, i % 4), _exchangeable_null(r, i % 4)
        fa, fb = aligned_sketch(a)[0].features, aligned_sketch(b)[0].features
        d = np.einsum("pk,pk->p", fa[0::2] - fa[1::2], fb[0::2] - fb[1::2])
        positive += int((d > 0).sum())
        count += d.size
        logs.append(-max(d.sum(), 0) ** 2 / (2 * (d * d).sum()) / math.log(10))
    assert abs(positive / count - 0.5) < 3 * math.sqrt(0.25 / count)
    arr = np.array(logs)
    for level in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5):
        rate = float(np.mean(arr <= math.log10(level)))
        assert rate <= level + 3 * math.sqrt(level * (1 - level) / arr.size), (level, rate)


def test_a_non_exchangeable_axis_is_what_the_max_rule_guards_against() -> None:
    """Embedding rows that share a tokenizer's structure (frequency profile, a token class pulled
    towards each model's own mean direction) make the *row* test of independent tables
    significant (the bound's assumption fails on that axis), which is why a matrix pair's p-value
    is max(p_rows, p_cols); the pair p-value stays super-uniform (columns are exchangeable)."""
    from tests.descent_aligned_fixtures import vocabulary_rows

    rows, pair = [], []
    for i in range(150):
        a, b = vocabulary_rows(3000 + 2 * i), vocabulary_rows(3001 + 2 * i)
        p_rows, p_cols = _bounds(a, b)
        rows.append(p_rows)
        pair.append(max(p_rows, p_cols))
    assert np.mean(np.array(rows) <= -2) > 0.06  # the row axis alone: over 6 times its level 0.01
    for level in (0.01, 0.05, 0.25):
        assert np.mean(np.array(pair) <= math.log10(level)) <= level + 3 * math.sqrt(level * (1 - level) / 150)


def test_identity_structure_on_both_axes_is_left_out_of_the_projection() -> None:
    """weight_hh = I + noise in two independent models: neither axis is exchangeable alone, only
    both at once. Projected naively, rows i of the two share the entry at column i and the test
    would accuse them; with the pair's own indices left out (§3.2c) the features swap exactly under
    a joint swap and the bound holds."""
    from tests.descent_aligned_fixtures import identity_recurrent

    naive, kept = [], []
    for i in range(100):
        a, b = (identity_recurrent(1000 + 2 * i + j)["rnn.weight_hh"] for j in (0, 1))
        fa, fb = (w @ directions(w.shape[1]) for w in (a, b))
        fa, fb = (f - f.mean(axis=1, keepdims=True) for f in (fa, fb))
        fa, fb = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in (fa, fb))
        d = np.einsum("pk,pk->p", fa[0::2] - fa[1::2], fb[0::2] - fb[1::2])
        naive.append(-max(d.sum(), 0) ** 2 / (2 * (d * d).sum()) / math.log(10))
        kept.append(max(_bounds(a, b)))
    assert np.mean(np.array(naive) <= -10) > 0.9
    assert np.mean(np.array(kept) <= math.log10(0.05)) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 100)


# --------------------------------------------------------------------- in compare


def test_init_against_its_long_training_is_related_by_the_aligned_test_and_json_says_so() -> None:
    """The matching tests miss an initialisation against its own long training (units never
    permuted, content moved): the aligned test finds it, labelled, with both axes in the JSON;
    another initialisation against the same training stays independent."""
    from client.core.descent.compare import _candidates
    from tests.descent_aligned_fixtures import long_training
    from tests.descent_fixtures import init_mlp

    init, trained = long_training()
    fa, fb = build(init.items()), build(trained.items())
    result = compare(fa, fb)
    assert result.verdict == "related" and result.basis == "statistical"
    top = result.evidence[0]
    assert top.how == "units aligned (same order)" and top.a == top.b == "fc1.weight", top
    js = top.to_json()
    assert set(js["aligned_rows"]) == {"statistic", "pairs", "bound", "log10_bound"}
    assert js["aligned_rows"]["pairs"] == 48 and js["aligned_cols"]["statistic"] > 0
    assert max(js["aligned_rows"]["log10_bound"], js["aligned_cols"]["log10_bound"]) == pytest.approx(top.log10_p,
                                                                                                        abs=1e-3)
    # Bonferroni: the two aligned candidates (fc0, fc1: each shape once; fc2 is too small) joined the count
    assert result.candidates == len(_candidates(fa, fb)) + 2
    assert result.log10_p == pytest.approx(top.log10_p + math.log10(result.candidates))
    assert compare(build(init_mlp(33).items()), fb).verdict == "independent"


def test_heavy_drift_siblings_of_independent_bases_are_not_aligned() -> None:
    """The analogue of the heavy-drift siblings: the same drift on two independent wide bases —
    no aligned pair reaches alpha after its Bonferroni factor."""
    from client.core.descent.aligned import aligned_outcome
    from tests.descent_aligned_fixtures import WIDE_MLP, heavy_drift_siblings, sibling
    from tests.descent_fixtures import init_mlp

    other = heavy_drift_siblings(init_mlp(63, WIDE_MLP), seed=70)[1]
    a = [(k, v) for k, v in sibling("mlp", 0).items() if v.ndim == 2]
    b = [(k, v) for k, v in other.items() if v.ndim == 2]
    fa, fb = ([TensorEntry(k, "float32", v.shape, bytes([i]) * 32, None, aligned=aligned_sketch(v)) for k, v in t]
              for i, t in ((1, a), (2, b)))
    got = aligned_outcome(fa, fb)
    assert got.count == 3 and got.best[0].log10_p + math.log10(got.count) > -2
