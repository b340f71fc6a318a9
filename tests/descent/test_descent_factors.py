"""Balanced low-rank factors (client/core/descent/factors.py): which matrices pair, and their product.

The pairing rule must find the two factors of a balanced SVD compression, whatever orthogonal
matrix sits between them, and must never pair the ordinary matrices of a model (transformers with
and without an output head, trained MLPs with bottleneck layers, recurrent nets).
"""

from __future__ import annotations

import struct
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from client.core.descent.compare import compare
from client.core.descent.factors import (
    MIN_RANK,
    PAIR_TOL,
    FactorProbe,
    bottleneck,
    distance,
    pair_factors,
    probe,
    probe_directions,
    product,
)
from client.core.descent.fingerprint import Fingerprint, build, decode
from client.core.descent.sketch import matrix_view
from client.errors import FormatError
from client.formats import open_model
from tests.descent_fixtures import (
    Model,
    base_model,
    fresh_init,
    init_mlp,
    noisy,
    orthogonal,
    train_mlp,
    write_safetensors,
)
from tests.descent_structural import init_rnn, svd_compress

F32 = npt.NDArray[np.float32]


def _trained_like(seed: int, m: int = 192, n: int = 160) -> F32:
    """A matrix with a decaying spectrum (what training leaves), not a Gaussian's flat one."""
    r = np.random.default_rng(seed)
    u, v = orthogonal(m, seed + 1)[:, :n], orthogonal(n, seed + 2)
    s = np.exp(-np.arange(n) / 30.0) + 0.05 * r.random(n)
    return (u * s[None, :] @ v.T).astype(np.float32)


def _balanced(w: F32, rank: int, q: F32 | None = None) -> tuple[F32, F32]:
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    left, right = u[:, :rank] * root[None, :], root[:, None] * vt[:rank]
    if q is not None:
        left, right = left @ q, q.T @ right
    return left.astype(np.float32), right.astype(np.float32)


def _probe(name: str, w: F32) -> FactorProbe:
    p = probe(name, w)
    assert p is not None
    return p


def _model_probes(t: Model) -> list[FactorProbe]:
    out = []
    for name, v in t.items():
        mat = matrix_view(v)
        if mat is not None and (p := probe(name, np.ascontiguousarray(mat, dtype=np.float32))) is not None:
            out.append(p)
    return out


def test_bottleneck_shapes() -> None:
    assert bottleneck((4096, 4096)) is None  # square: never a factor
    assert bottleneck((11008, 4096)) == (4096, True)  # an MLP up-projection is thin ...
    assert bottleneck((4096, 11008)) == (4096, False)  # ... and so is the down-projection
    assert bottleneck((512, 4096)) == (512, False)  # GQA K/V (kv_dim x d): a right candidate only
    assert bottleneck((8, 4096)) is None  # a MoE router of 8 experts: below MIN_RANK
    assert bottleneck((100, 60)) is None  # not thin
    assert bottleneck((2 * MIN_RANK, MIN_RANK)) == (MIN_RANK, True)
    assert bottleneck((2 * MIN_RANK - 2, MIN_RANK - 1)) is None
    assert bottleneck((3, 4, 5)) is None


def test_probe_directions_depend_on_the_rank_alone() -> None:
    assert np.array_equal(probe_directions(64), probe_directions(64))
    assert probe_directions(64).shape == (64, 8)
    assert not np.allclose(probe_directions(64)[:32], probe_directions(32))


@pytest.mark.parametrize("with_q", [False, True])
def test_balanced_factors_pair_and_multiply_back(with_q: bool) -> None:
    w = _trained_like(1)
    q = orthogonal(48, 5).astype(np.float32) if with_q else None
    left, right = _balanced(w, 48, q)
    assert distance(_probe("l", left), _probe("r", right)) < 0.05
    assert pair_factors([_probe("l", left), _probe("r", right)]) == [("l", "r")]
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    w_r = (u[:, :48] * s[:48]) @ vt[:48]
    assert np.allclose(product(left, right), w_r, atol=1e-4 * float(np.abs(w_r).max()))


def test_the_probe_is_invariant_to_what_the_hidden_space_and_unit_order_do_not_see() -> None:
    """Q between the factors, a scalar rebalancing, and permuted rows of the left factor (units of B
    relabelled) leave the probe alone: the pairing rule does not depend on B's unit order."""
    left, right = _balanced(_trained_like(2), 40)
    base = _probe("l", left).response
    q = orthogonal(40, 9).astype(np.float32)
    perm = np.random.default_rng(3).permutation(left.shape[0])
    assert np.allclose(_probe("l", left[perm]).response, base, atol=1e-5)
    assert np.allclose(_probe("l", 3.0 * left).response, base, atol=1e-5)
    assert distance(_probe("l", 3.0 * left), _probe("r", right / 3.0)) < 0.05
    assert distance(_probe("l", left @ q), _probe("r", q.T @ right)) < 0.05


def test_unbalanced_and_isotropic_factors_are_not_probed() -> None:
    """U_r S_r | V_r^T (the "left" split) has an orthonormal right factor: its Gram is the identity,
    with no traceless part to match on (that layout is seen by the one-axis test instead)."""
    u, s, vt = np.linalg.svd(_trained_like(4).astype(np.float64), full_matrices=False)
    assert probe("r", vt[:40].astype(np.float32)) is None
    assert probe("square", _trained_like(4, 64, 64)) is None


def test_noise_on_the_factors_keeps_them_paired_and_unrelated_factors_are_far() -> None:
    r = np.random.default_rng(6)
    left, right = _balanced(_trained_like(5), 48)
    noisy = [f + 0.1 * f.std() * r.standard_normal(f.shape).astype(np.float32) for f in (left, right)]
    assert distance(_probe("l", noisy[0]), _probe("r", noisy[1])) < PAIR_TOL
    # unrelated factors with another orthogonal matrix between them
    q = orthogonal(48, 51).astype(np.float32)
    other_left, other_right = _balanced(_trained_like(50), 48, q)
    assert distance(_probe("l", left), _probe("r", other_right)) > PAIR_TOL
    assert distance(_probe("l", other_left), _probe("r", right)) > PAIR_TOL


def test_factors_in_the_sorted_svd_basis_of_equal_spectra_look_alike() -> None:
    """The rule's known limit: stored in the SVD's own basis (Q = I or sign flips), the Grams of
    unrelated factors are both diag(S_r), and matrices with the same singular spectrum (i.i.d.
    Gaussian layers of one shape) give the same diag(S_r): such factors can be cross-paired. A
    cross-paired product is still a matrix of B alone (valid, only useless as evidence)."""
    left, _ = _balanced(_trained_like(5), 48)
    _, other_right = _balanced(_trained_like(50), 48)
    assert distance(_probe("l", left), _probe("r", other_right)) < PAIR_TOL


def test_each_factor_is_paired_once_best_first() -> None:
    left, right = _balanced(_trained_like(7), 48)
    r = np.random.default_rng(8)
    near = right + 0.05 * right.std() * r.standard_normal(right.shape).astype(np.float32)
    probes = [_probe("a.left", left), _probe("a.right", right), _probe("b.right", near)]
    assert pair_factors(probes) == [("a.left", "a.right")]
    assert pair_factors(probes[::-1]) == [("a.left", "a.right")]  # order of the stream does not matter


@cache
def _ordinary_models() -> dict[str, Model]:
    head = (np.random.default_rng(999).standard_normal((512, 128)) * 0.02).astype(np.float32)
    out: dict[str, Model] = {
        "transformer": base_model(0, layers=3),
        "transformer with head": {**base_model(0, layers=4), "lm_head.weight": head},
        "lstm": init_rnn(3, cell="lstm", init="uniform"),
        "gru": init_rnn(3, cell="gru", init="structured"),
    }
    for seed in range(3):
        out[f"fresh initialisation {seed}"] = fresh_init(seed)
    for sizes in ((32, 128, 32, 128, 10), (32, 256, 32, 256, 32, 256, 10)):
        out[f"trained MLP {sizes}"] = train_mlp(init_mlp(5, sizes), steps=200, seed=6)
    return out


def test_ordinary_models_never_pair() -> None:
    """Their thin matrices meet in a shared width (embeddings, MLP up and down, bottleneck layers of
    a trained MLP) but no two have the same Gram: no pair, and a wide margin below the tolerance."""
    compatible = 0
    for label, t in _ordinary_models().items():
        probes = _model_probes(t)
        assert pair_factors(probes) == [], label
        for a in probes:
            for b in probes:
                if a.left and not b.left and a.rank == b.rank:
                    compatible += 1
                    assert distance(a, b) > PAIR_TOL + 0.3, (label, a.name, b.name)
    assert compatible > 50  # the rule was exercised, not vacuous


def test_a_balanced_compression_of_a_trained_network_pairs_its_own_factors() -> None:
    t = svd_compress(_trained(), 0.4, factored=True, split="balanced", seed=1)
    # fc0 (256 x 32) and fc2 (10 x 256) are compressed below MIN_RANK: only fc1's factors qualify
    assert pair_factors(_model_probes(t)) == [("fc1.weight.left", "fc1.weight.right")]


# ---- derived products in the fingerprint (v4) and in compare

@cache
def _trained() -> Model:
    return train_mlp(init_mlp(31, (32, 256, 256, 10)), steps=300, seed=32)


@cache
def _compressed() -> Model:
    return noisy(svd_compress(_trained(), 0.4, factored=True, split="balanced", seed=1), 0.01, seed=7)


def _with_q(t: Model, seed: int) -> Model:
    """Every balanced pair with a random orthogonal Q between its factors: (F1 Q)(Q^T F2)."""
    out = dict(t)
    for name in t:
        if name.endswith(".left"):
            right = name[: -len("left")] + "right"
            q = orthogonal(t[name].shape[1], seed)
            out[name], out[right] = np.ascontiguousarray(t[name] @ q), np.ascontiguousarray(q.T @ t[right])
    return out


def test_fingerprint_of_a_balanced_compression_holds_the_product_and_round_trips() -> None:
    fp = build(_compressed().items())
    assert [d.name for d in fp.derived] == ["fc1.weight.left @ fc1.weight.right"]
    d = fp.derived[0]
    assert d.factors == ("fc1.weight.left", "fc1.weight.right") and d.shape == (256, 256) and d.digest == b""
    assert d.moments is None and d.sketch is not None and d.aligned is not None
    data = fp.encode()
    back = decode(data)
    assert back.encode() == data and back.derived[0].factors == d.factors and back.derived[0].shape == d.shape
    assert fp.numel == sum(v.size for v in _compressed().values())  # the product adds no parameters


def test_the_stream_is_read_again_or_held_with_the_same_result(tmp_path: Path) -> None:
    write_safetensors(path := tmp_path / "c.safetensors", _compressed())
    in_memory = build(_compressed().items()).encode()
    assert build(open_model(path).tensors(), reread=lambda: open_model(path).tensors()).encode() == in_memory
    assert build(open_model(path).tensors()).encode() == in_memory  # one-shot iterator: candidates held
    with pytest.raises(FormatError, match="went missing"):
        build(open_model(path).tensors(), reread=lambda: iter([]))


def test_ordinary_models_have_no_derived_entries() -> None:
    for label, t in _ordinary_models().items():
        assert build(t.items()).derived == (), label


def _mangled(fp: Fingerprint, **changes: object) -> Fingerprint:
    return Fingerprint(fp.entries, fp.version, (replace(fp.derived[0], **changes),))


def test_derived_entries_are_checked() -> None:
    fp = build(_compressed().items())
    d = fp.derived[0]
    with pytest.raises(FormatError, match="digest or moments"):
        _mangled(fp, digest=b"\x01" * 32)
    with pytest.raises(FormatError, match="digest or moments"):
        _mangled(fp, moments=(1.0, 0.0))
    with pytest.raises(FormatError, match="not a left and a right"):
        _mangled(fp, factors=("fc1.weight.right", "fc1.weight.left"))
    with pytest.raises(FormatError, match="names no two"):
        _mangled(fp, factors=("fc1.weight.left", "nope"))
    with pytest.raises(FormatError, match="once"):
        Fingerprint(fp.entries, fp.version, (d, d))
    with pytest.raises(FormatError, match="version 3"):
        Fingerprint(tuple(replace(e, aligned=None) for e in fp.entries), 3, fp.derived)


def test_derived_section_mangling_is_refused() -> None:
    data = build(_compressed().items()).encode()
    fp = decode(data)
    # the derived section starts after the entries: re-encode without it to find its offset
    start = len(Fingerprint(fp.entries, fp.version).encode()) - 4
    assert data[start : start + 4] == struct.pack("<I", 1)
    for offset in (0, 4, 8, 12):  # count, left index, right index, status byte
        bad = bytearray(data)
        bad[start + offset] ^= 0x01
        with pytest.raises(FormatError):
            decode(bytes(bad))
    with pytest.raises(FormatError):
        decode(data[:-1])


def test_derived_products_are_never_exact_evidence() -> None:
    """Two byte-identical compressed copies are identical by their tensors; the products (no digest)
    add nothing to the shared fractions and are not byte-identical evidence."""
    fa = build(_compressed().items())
    result = compare(fa, build(_compressed().items()))
    assert result.verdict == "identical" and result.shared_a_in_b == result.shared_b_in_a == 1.0
    assert all("@" not in e.a and "@" not in e.b for e in result.evidence if e.how == "byte-identical")


@pytest.mark.parametrize("label", ["Q between the factors", "both compressed, Q on one"])
def test_balanced_compression_with_orthogonal_q_is_related(label: str) -> None:
    b = _with_q(_compressed(), 11)
    a = _trained() if label.startswith("Q") else noisy(svd_compress(_trained(), 0.4, factored=True, seed=2), 0.01)
    result = compare(build(a.items()), build(b.items()))
    assert (result.verdict, result.basis) == ("related", "statistical"), (label, result.log10_p)
    assert "derived product" in result.evidence[0].how
