"""Calibration: under the null (independent models of the same shapes), `related` appears at most
at the significance level, and the per-axis p-values are super-uniform.

The null models are deliberately varied: Gaussian and heavy-tailed initialisations, low-rank
"trained-like" structure, shared per-column scales, LayerNorm ones and zero biases (which are
byte-identical across all of them and must not count), and networks genuinely trained on the same
task from different seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from client.core.descent.compare import _candidates, compare
from client.core.descent.fingerprint import Fingerprint, build
from client.core.descent.gram import gram_sketch
from client.core.descent.sketch import sketch_matrix
from client.core.descent.stats import agreement_log_p, axis_test
from tests.descent_fixtures import Model, init_mlp, orthogonal, train_mlp

SHAPES = ((64, 48), (96, 64), (64, 96))
KINDS = ("gauss", "student-t", "low-rank", "column-scales", "rotated low-rank")


def null_model(seed: int, kind: str) -> Model:
    r = np.random.default_rng(seed)
    t: Model = {}
    for i, (m, n) in enumerate(SHAPES):
        if kind == "gauss":
            w = r.standard_normal((m, n))
        elif kind == "student-t":
            w = r.standard_t(3, (m, n))
        elif kind == "low-rank":
            w = r.standard_normal((m, 4)) @ r.standard_normal((4, n)) + 0.3 * r.standard_normal((m, n))
        elif kind == "rotated low-rank":  # structure, then a random rotation of the column space
            w = r.standard_normal((m, 4)) @ r.standard_normal((4, n)) + 0.3 * r.standard_normal((m, n))
            w = w @ orthogonal(n, int(r.integers(1 << 30)))
        else:
            w = r.standard_normal((m, n)) * np.linspace(0.1, 2.0, n) + 0.2
        t[f"l{i}.weight"] = (w / np.sqrt(n)).astype(np.float32)
        t[f"l{i}.norm"] = np.ones(m, np.float32)
        t[f"l{i}.bias"] = np.zeros(m, np.float32)
    return t


def _binomial_upper(n: int, p: float, z: float = 3.1) -> float:
    return n * p + z * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def null_results() -> list[float]:
    """log10 p of 300 independent same-shape pairs (60 per kind)."""
    out = []
    for i in range(300):
        kind = KINDS[i % len(KINDS)]
        a: Fingerprint = build(null_model(2 * i, kind).items())
        b: Fingerprint = build(null_model(2 * i + 1, kind).items())
        result = compare(a, b, alpha=0.05)
        assert result.verdict in ("independent", "related")
        out.append(result.log10_p)
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_related_rate_at_most_alpha(null_results: list[float], alpha: float) -> None:
    related = sum(1 for lp in null_results if lp < math.log10(alpha))
    assert related <= _binomial_upper(len(null_results), alpha), related


def test_axis_p_values_are_super_uniform() -> None:
    r = np.random.default_rng(123)
    ps = []
    for i in range(300):
        kind = KINDS[i % len(KINDS)]
        a = null_model(int(r.integers(1 << 30)), kind)["l1.weight"]
        b = null_model(int(r.integers(1 << 30)), kind)["l1.weight"]
        sa, sb = sketch_matrix(a) + gram_sketch(a), sketch_matrix(b) + gram_sketch(b)
        for x, y in zip(sa, sb, strict=True):  # rows, columns, Gram rows, Gram columns
            res = axis_test(x.features, y.features)
            assert res is not None
            ps.append(res.p_value)
    arr = np.array(ps)
    for level in (0.01, 0.05, 0.1, 0.25, 0.5):
        rate = float(np.mean(arr <= level))
        assert rate <= level + 3 * math.sqrt(level * (1 - level) / arr.size), (level, rate)


def test_trained_networks_from_different_seeds_are_not_related() -> None:
    """Genuinely trained (same task, same data, different initialisations) — the hardest null."""
    related = 0
    for i in range(12):
        a = train_mlp(init_mlp(500 + 2 * i), steps=250, seed=i)
        b = train_mlp(init_mlp(501 + 2 * i), steps=250, seed=100 + i)
        if compare(build(a.items()), build(b.items()), alpha=0.05).verdict == "related":
            related += 1
    assert related <= 3  # Bin(12, 0.05) exceeds 3 with probability < 0.3%


def test_bound_is_the_poisson_order_for_full_matchings() -> None:
    # s = m: C(m, k) / m(m-1)...(m-k+1) = 1/k!
    for k in range(0, 8):
        assert math.isclose(math.exp(agreement_log_p(k, 200, 200)), 1 / math.factorial(k) if k else 1.0)
    # and never above one
    assert agreement_log_p(1, 500, 10_000) <= 0.0


def test_trained_network_continued_on_the_same_task_is_related() -> None:
    base = train_mlp(init_mlp(7), steps=300, seed=1)
    tuned = train_mlp(base, steps=200, lr=0.005, seed=2)
    assert compare(build(base.items()), build(tuned.items())).verdict == "related"


def _one_axis_null(seed: int, kind: str) -> Model:
    """An independent model whose matrices match SHAPES on one axis only: rows tripled (three
    independent draws stacked, as a vocabulary or width expansion would) on even seeds, stored
    SVD-factored (U_r S_r and V_r^T at rank 0.3) on odd ones."""
    from tests.descent_structural import svd_compress

    if seed % 2:
        return svd_compress(null_model(seed, kind), 0.3, factored=True, split="left", seed=seed)
    parts = [null_model(seed + 7919 * j, kind) for j in range(3)]
    return {k: np.vstack([p[k] for p in parts]) if v.ndim == 2 else v for k, v in parts[0].items()}


@pytest.fixture(scope="module")
def one_axis_null_results() -> list[float]:
    """log10 p of 150 independent pairs from the structural null family (30 per kind); each pair
    must give compare one-axis candidates, or the family would test nothing new."""
    out = []
    for i in range(150):
        kind = KINDS[i % len(KINDS)]
        a: Fingerprint = build(null_model(20_000 + 2 * i, kind).items())
        b: Fingerprint = build(_one_axis_null(20_001 + 2 * i + (i % 2), kind).items())
        assert any(c.only is not None for c in _candidates(a, b))
        result = compare(a, b, alpha=0.05)
        assert result.verdict in ("independent", "related"), result.verdict
        out.append(result.log10_p)
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_one_axis_candidates_keep_the_related_rate_at_most_alpha(one_axis_null_results: list[float],
                                                                 alpha: float) -> None:
    """The structural null family: matrices that share one axis length only (compare then tests
    that axis alone, direct and Gram); `related` at most at alpha + 3.1 binomial standard errors."""
    related = sum(1 for lp in one_axis_null_results if lp < math.log10(alpha))
    assert related <= _binomial_upper(len(one_axis_null_results), alpha), related


def _balanced_null(seed: int, kind: str) -> Model:
    """An independent model stored as balanced SVD factors at rank 0.5 (every matrix's
    U_r S_r^1/2 | S_r^1/2 V_r^T), so its fingerprint holds derived products."""
    from tests.descent_structural import svd_compress

    return svd_compress(null_model(seed, kind), 0.5, factored=True, split="balanced", seed=seed)


@pytest.fixture(scope="module")
def balanced_null_results() -> list[float]:
    """log10 p of 50 independent pairs (10 per kind) in which B, or on odd pairs both, is stored as
    balanced factors: compare then tests derived products against A's matrices (or A's products).
    The evidence benchmark's null family of the same kind has 500 pairs (docs/descent.md 5b)."""
    out = []
    for i in range(50):
        kind = KINDS[i % len(KINDS)]
        a_model = _balanced_null(40_000 + 2 * i, kind) if i % 2 else null_model(40_000 + 2 * i, kind)
        a: Fingerprint = build(a_model.items())
        b: Fingerprint = build(_balanced_null(40_001 + 2 * i, kind).items())
        assert b.derived and any(c.b.factors for c in _candidates(a, b))
        result = compare(a, b, alpha=0.05)
        assert result.verdict in ("independent", "related"), result.verdict
        out.append(result.log10_p)
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_derived_products_keep_the_related_rate_at_most_alpha(balanced_null_results: list[float],
                                                             alpha: float) -> None:
    """Independent models compressed to balanced factors, against uncompressed independents and
    against each other: a product of two of B's matrices is a function of B alone, so `related`
    stays at most at alpha + 3.1 binomial standard errors."""
    related = sum(1 for lp in balanced_null_results if lp < math.log10(alpha))
    assert related <= _binomial_upper(len(balanced_null_results), alpha), related


# ---- nulls that attack the aligned-units test (docs/descent.md §3.2c): independent models that
# share structure at equal unit indices on one axis (a tokenizer's rows, RoPE-structured q/k rows),
# on both axes jointly (identity-initialised recurrent matrices), or the same data in the same order.

def _same_batches(seed: int) -> Model:
    """A small MLP trained 100 steps from its own initialisation on the same batches as every other."""
    return train_mlp(init_mlp(seed, (32, 48, 48, 10)), steps=100, seed=777)


def _aligned_null_families() -> dict[str, tuple[int, object]]:
    from tests.descent_aligned_fixtures import identity_recurrent, rope_structured, vocabulary_structured

    return {"shared vocabulary structure": (40, vocabulary_structured), "RoPE-like q/k rows": (40, rope_structured),
            "identity-initialised recurrent": (100, identity_recurrent), "same task, same batches": (20, _same_batches)}


def _aligned_only_log10_p(a: Model, b: Model) -> float:
    """The model-level p-value of the aligned candidates alone (Bonferroni over them)."""
    from types import SimpleNamespace

    from client.core.descent.aligned import aligned_outcome, aligned_sketch
    from client.core.descent.fingerprint import tensor_digest
    from client.core.descent.sketch import matrix_view

    def entries(t: Model) -> list[SimpleNamespace]:
        out = []
        for name, v in t.items():
            if (m := matrix_view(v)) is not None:
                w = np.ascontiguousarray(m, dtype=np.float32)
                out.append(SimpleNamespace(name=name, digest=tensor_digest(v), aligned=aligned_sketch(w)))
        return out

    got = aligned_outcome(entries(a), entries(b))  # type: ignore[arg-type]
    return min(0.0, got.best[0].log10_p + math.log10(got.count)) if got.best else 0.0


@pytest.mark.parametrize("family", ["shared vocabulary structure", "RoPE-like q/k rows",
                                    "identity-initialised recurrent", "same task, same batches"])
def test_nulls_with_shared_index_structure_are_not_related(family: str) -> None:
    """Each family: the aligned candidates alone are `related` at most at alpha + 3.1 binomial
    standard errors (alpha 0.05 and 0.01), and the full comparison of the first pair is not related
    (the evidence benchmark runs 500 full comparisons of the first three families, docs/descent.md 5b)."""
    pairs, make = _aligned_null_families()[family]
    assert callable(make)
    logs = [_aligned_only_log10_p(make(50_000 + 2 * i), make(50_001 + 2 * i)) for i in range(pairs)]
    for alpha in (0.05, 0.01):
        related = sum(1 for lp in logs if lp < math.log10(alpha))
        assert related <= _binomial_upper(pairs, alpha), (family, alpha, related)
    result = compare(build(make(50_000).items()), build(make(50_001).items()))
    assert result.verdict == "independent", (family, result.log10_p)


@pytest.mark.parametrize("family", ["identity-initialised recurrent", "shared vocabulary structure"])
def test_nulls_with_shared_index_structure_are_not_related_by_the_full_comparison(family: str) -> None:
    """Full comparisons (matching tests included) of the two families that once broke the matching
    tests' null (§3.3: B's units exchangeable, a unit's two feature halves independent): an
    identity-like diagonal made each unit's features a function of one entry (15 of 100 pairs
    `related` at 0.01 before the diagonal was left out of square matrices' sketches, §3.2), and a
    tokenizer's lean profile made Gram rows match (5 of 20 before the common direction was removed,
    §3.2b). Now at most alpha + 3.1 binomial standard errors (the evidence benchmark runs 500)."""
    _pairs, make = _aligned_null_families()[family]
    assert callable(make)
    pairs = 30 if family == "identity-initialised recurrent" else 8  # the recurrent pairs are cheap
    related = sum(compare(build(make(60_000 + 2 * i).items()), build(make(60_001 + 2 * i).items())).verdict
                  == "related" for i in range(pairs))
    assert related <= _binomial_upper(pairs, 0.01), (family, related)


def test_gram_sketches_of_independent_rope_structured_rows_agree_no_more_than_chance() -> None:
    """Independent q/k matrices whose rows load on one residual direction of their own with signed,
    frequency-tied weights (their mean misses it): each unit's two Gram feature halves were functions
    of that loading, and the Gram matchings agreed on 2.7 units per pair on average (rows; 1.8 on
    columns), where the null allows E[K] = s / m_B = 1; 8 of 500 full comparisons came out `related`.
    With the strong principal directions removed (docs/descent.md 3.2b step 4b) the mean over 30 pairs
    and both axes stays within 3 standard errors (K's variance is at most about 1) of 1."""
    from tests.descent_aligned_fixtures import rope_structured

    ks = []
    for i in range(30):
        a = rope_structured(70_000 + 2 * i)["layers.0.attn.qkv.weight"]
        b = rope_structured(70_001 + 2 * i)["layers.0.attn.qkv.weight"]
        for x, y in zip(gram_sketch(a), gram_sketch(b), strict=True):
            r = axis_test(x.features, y.features)
            assert r is not None and r.matched == r.candidates  # s = m_B: E[K] = 1 exactly under the null
            ks.append(r.agreements)
    assert float(np.mean(ks)) <= 1 + 3 / math.sqrt(len(ks)), ks


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.astype(np.float64).ravel(), y.astype(np.float64).ravel())[0, 1])


def test_strong_principal_directions_are_removed_rotation_invariantly_and_only_where_they_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 4b of the Gram sketch: a planted signed spike is taken out (the sketch is that of the
    units without it, whatever rotation the other axis had); a matrix without one is left as it was."""
    import client.core.descent.gram as gram

    r = np.random.default_rng(5)
    noise = r.standard_normal((256, 96)).astype(np.float32)
    u = r.standard_normal(96)
    spiked = (noise + 3.0 * np.outer((-1.0) ** np.arange(256), u)).astype(np.float32)
    plain = gram.gram_axis(spiked)
    rotated = gram.gram_axis(np.ascontiguousarray(spiked @ orthogonal(96, 6)))
    assert _corr(plain.features, rotated.features) > 0.999
    off = u / np.linalg.norm(u)  # the units projected off the spike direction: (nearly) the same sketch
    projected = (spiked - np.outer(spiked @ off, off)).astype(np.float32)
    assert _corr(plain.features, gram.gram_axis(projected).features) > 0.95
    before = gram.gram_axis(noise).features
    monkeypatch.setattr(gram, "SPIKE_FACTOR", math.inf)  # the step switched off
    assert np.array_equal(gram.gram_axis(noise).features, before)  # nothing to remove: nothing changed
    assert _corr(plain.features, gram.gram_axis(spiked).features) < 0.9  # left in, the spike ruled the sketch
