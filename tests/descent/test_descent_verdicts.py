"""Verdicts over derivations of a base model and over independent models of the same architecture.

The derivations are those a copier uses: re-serialization (other container, renamed), casts and
quantization, noise-level "fine-tunes" from small to large, pruning, merged low-rank adapters,
layer drops, permuted and renamed hidden units, ensembles; and structural derivations (vocabulary
expansion, depth up-scaling, width expansion, head pruning, SVD compression, layer-wise and
task-arithmetic merges, group-wise int4, permuted LSTM/GRU), on base_model and on trained MLPs.
docs/descent.md has the power curve.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from client.core.descent.compare import compare
from client.core.descent.fingerprint import Fingerprint, build
from client.formats import open_model
from tests.descent_aligned_fixtures import long_training, sibling
from tests.descent_fixtures import (
    Model,
    base_model,
    cast,
    drop_layers,
    ensemble,
    fresh_init,
    init_mlp,
    low_rank_merge,
    noisy,
    orthogonal,
    permute_hidden,
    prune,
    rotate_residual,
    train_mlp,
    write_gguf,
    write_onnx_model,
    write_safetensors,
    write_sharded,
    write_torch_legacy,
    write_torch_zip,
)
from tests.descent_structural import (
    depth_upscale,
    expand_vocab,
    init_rnn,
    merge_layers,
    permute_rnn,
    prune_heads,
    quantize_int4,
    requantize_int8,
    svd_compress,
    task_arithmetic,
    widen,
)

BASE_SEED = 0


@cache
def base() -> Model:
    return base_model(BASE_SEED, layers=3)


@cache
def base_fp() -> Fingerprint:
    return build(base().items())


def _fp(t: Model) -> Fingerprint:
    return build(t.items())


_GAINS = np.exp(np.random.default_rng(9).normal(0.0, 0.3, 128)).astype(np.float32)  # RMSNorm-like gains

DERIVED: dict[str, Callable[[Model], Model]] = {
    "fp16": lambda t: cast(t, "float16"),
    "fine-tune noise 0.1%": lambda t: noisy(t, 0.001),
    "fine-tune noise 1%": lambda t: noisy(t, 0.01),
    "fine-tune noise 3%": lambda t: noisy(t, 0.03),
    "fine-tune noise 10%": lambda t: noisy(t, 0.1),
    "fine-tune noise 20%": lambda t: noisy(t, 0.2),
    "pruned 30%": lambda t: prune(t, 0.3),
    "pruned 50%": lambda t: prune(t, 0.5),
    "rank-8 merge, 10% norm": lambda t: low_rank_merge(t, 8, 0.1),
    "rank-16 merge, 20% norm": lambda t: low_rank_merge(t, 16, 0.2),
    "rank-64 merge, 20% norm": lambda t: low_rank_merge(t, 64, 0.2),
    "layers dropped": lambda t: drop_layers(t, {0, 2}),
    "hidden units permuted and renamed": permute_hidden,
    "permuted + fp16 + 3% noise": lambda t: cast(permute_hidden(noisy(t, 0.03)), "float16"),
    "transposed storage": lambda t: {k: np.ascontiguousarray(v.T) for k, v in t.items()},
    "ensemble with another model": lambda t: ensemble(t, base_model(77, layers=3)),
    # function-preserving transforms of hidden spaces (docs/descent.md, "Rotations")
    "residual stream rotated (QuaRot / SliceGPT)": rotate_residual,
    "residual rotated + per-unit positive scaling": lambda t: rotate_residual(t, scale_units=True),
    "norm gains folded, then rotated": lambda t: rotate_residual(t, fold_gains=_GAINS),
    "rotated + 10% noise": lambda t: rotate_residual(noisy(t, 0.1)),
    "rotated + fp16 + 3% noise": lambda t: cast(rotate_residual(noisy(t, 0.03)), "float16"),
}


@pytest.mark.parametrize("name", list(DERIVED))
def test_derivations_are_related(name: str) -> None:
    result = compare(base_fp(), _fp(DERIVED[name](base())))
    assert result.verdict == "related", (name, result.log10_p)
    assert result.p_value < 0.01


def test_renamed_copy_is_identical() -> None:
    renamed = {f"w{i}": v for i, v in enumerate(base().values())}
    result = compare(base_fp(), _fp(renamed))
    assert result.verdict == "identical"
    assert result.shared_a_in_b == result.shared_b_in_a == 1.0


def test_ensemble_containment_in_both_directions() -> None:
    other = base_model(77, layers=3)
    result = compare(base_fp(), _fp(ensemble(base(), other)))
    assert result.basis == "exact"
    assert result.shared_a_in_b == 1.0
    assert 0.4 < result.shared_b_in_a < 0.6


def test_layer_drop_shares_exact_tensors_one_way() -> None:
    result = compare(base_fp(), _fp(drop_layers(base(), {0, 2})))
    assert result.shared_b_in_a == 1.0 and result.shared_a_in_b < 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_independent_models_are_independent(seed: int) -> None:
    other = fresh_init(seed) if seed == 1 else base_model(seed, layers=3)
    result = compare(base_fp(), _fp(other))
    assert result.verdict == "independent", result.log10_p
    # The LayerNorm ones and zero biases are byte-identical in both, and must not count.
    assert result.shared_a_in_b > 0 and result.informative_shared_a_in_b == 0


@pytest.mark.parametrize("seed", [21, 22])
def test_rotated_independent_models_are_independent(seed: int) -> None:
    """A rotation hides nothing that is not there: a rotated fresh initialisation stays independent."""
    result = compare(base_fp(), _fp(rotate_residual(fresh_init(seed), seed=seed)))
    assert result.verdict == "independent", result.log10_p


def test_rotation_evidence_is_named_and_only_the_gram_axes_see_it() -> None:
    result = compare(base_fp(), _fp(rotate_residual(base())))
    assert result.verdict == "related"
    top = result.evidence[0]
    assert top.how.endswith("rotation-invariant")
    js = top.to_json()
    gram = js["gram_rows"]["agreements"] + js["gram_cols"]["agreements"]
    assert gram > js["rows"]["agreements"] + js["cols"]["agreements"]


def test_trained_network_with_rotated_input_and_rescaled_permuted_units_is_related() -> None:
    """A genuinely trained ReLU network; the copy permutes and rescales its hidden units (exact for
    ReLU) and rotates its input space, with the inverse rotation folded into the preprocessing."""
    trained = train_mlp(init_mlp(31), steps=300, seed=3)
    r = np.random.default_rng(5)
    copy = {k: v.copy() for k, v in trained.items()}
    for i in range(2):  # hidden layers after fc0 and fc1
        units = copy[f"fc{i}.weight"].shape[0]
        perm, c = r.permutation(units), np.exp(r.normal(0, 0.5, units))
        copy[f"fc{i}.weight"] = (copy[f"fc{i}.weight"] * c[:, None].astype(np.float32))[perm]
        copy[f"fc{i}.bias"] = (copy[f"fc{i}.bias"] * c.astype(np.float32))[perm]
        copy[f"fc{i + 1}.weight"] = (copy[f"fc{i + 1}.weight"] / c[None, :].astype(np.float32))[:, perm]
    copy["fc0.weight"] = copy["fc0.weight"] @ orthogonal(32, 8)
    renamed = {f"m.{i}": np.ascontiguousarray(v) for i, (_, v) in enumerate(sorted(copy.items()))}
    assert compare(_fp(trained), _fp(renamed)).verdict == "related"
    other = train_mlp(init_mlp(32), steps=300, seed=4)
    assert compare(_fp(trained), _fp(other)).verdict == "independent"


def _sinusoidal(positions: int, d: int) -> np.ndarray:
    """The standard transformer position table (interleaved sin/cos, base 10000)."""
    pos = np.arange(positions)[:, None]
    freq = 10000.0 ** (-np.arange(0, d, 2) / d)
    table = np.zeros((positions, d), np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    return table


def test_shared_formula_tables_are_set_aside_and_never_relate_independent_models() -> None:
    """Two independent initialisations that both carry the same sinusoidal table (byte-identical)
    and a causal mask: the tables are produced by a formula, so they are neither exact nor
    statistical evidence, and the JSON names them."""
    table, mask = _sinusoidal(512, 128), np.tril(np.ones((256, 256), np.float32))
    a = {**base(), "pos.weight": table, "attn.mask": mask}
    b = {**fresh_init(41), "position_table": table.copy(), "causal": mask.copy()}
    result = compare(_fp(a), _fp(b))
    assert result.verdict == "independent", result.log10_p
    assert result.informative_shared_a_in_b == 0
    aside = {(s.model, s.tensor) for s in result.set_aside}
    assert {("a", "pos.weight"), ("a", "attn.mask"), ("b", "position_table"), ("b", "causal")} <= aside
    assert all(s["reason"] for s in result.to_json()["set_aside"])


def test_only_low_information_tensors_is_inconclusive() -> None:
    a = {"ln.weight": np.ones(64, np.float32), "bias": np.zeros(64, np.float32), "v": np.arange(5.0)}
    b = {"ln.weight": np.full(64, 1.5, np.float32), "v": np.arange(6.0)}
    assert compare(_fp(a), _fp(b)).verdict == "inconclusive"


def test_different_architectures_are_inconclusive() -> None:
    a = {"w": np.random.default_rng(0).standard_normal((512, 16)).astype(np.float32)}
    b = {"w": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}
    assert compare(_fp(a), _fp(b)).verdict == "inconclusive"


def test_evidence_names_the_matching_tensors() -> None:
    derived = noisy(base(), 0.01)
    result = compare(base_fp(), _fp(derived))
    top = result.evidence[0]
    assert top.a == top.b and top.how.startswith("units matched")
    js = result.to_json()
    assert {"verdict", "p_value", "shared_fraction", "evidence"} <= set(js)


# ---- through the file formats

def _files(tmp: Path) -> dict[str, tuple[Path, str]]:
    t = base()
    out: dict[str, tuple[Path, str]] = {}
    write_torch_zip(p := tmp / "copy.pt", t)
    out["torch zip re-serialization"] = (p, "identical")
    write_sharded(p := tmp / "sharded", t, shards=2)
    out["sharded safetensors"] = (p, "identical")
    write_torch_legacy(p := tmp / "legacy.bin", {k: v for k, v in t.items()})
    out["legacy torch (nested state_dict)"] = (p, "identical")
    write_safetensors(p := tmp / "bf16.safetensors", t, bf16=set(t))
    out["bf16 safetensors"] = (p, "related")
    write_onnx_model(p := tmp / "int8.onnx", t, int8=True)
    out["ONNX int8 per-row scales"] = (p, "related")
    write_onnx_model(p := tmp / "matmul.onnx", t)
    out["ONNX transposed MatMul weights"] = (p, "identical")
    kinds = {k: "Q8_0" for k, v in t.items() if v.ndim == 2}
    write_gguf(p := tmp / "q8.gguf", t, kinds)
    out["GGUF Q8_0"] = (p, "related")
    write_gguf(p := tmp / "q4.gguf", t, {k: "Q4_0" for k in kinds})
    out["GGUF Q4_0"] = (p, "related")
    write_gguf(p := tmp / "q5.gguf", t, {k: "Q5_1" for k in kinds})
    out["GGUF Q5_1"] = (p, "related")
    return out


def test_verdicts_through_every_format(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "base.safetensors", base())
    fa = build(open_model(tmp_path / "base.safetensors").tensors())
    got = {}
    for label, (path, _want) in _files(tmp_path).items():
        got[label] = compare(fa, build(open_model(path).tensors())).verdict
    assert got == {label: want for label, (_p, want) in _files(tmp_path).items()}


# ---- structural derivations (docs/descent.md, "Structural derivations")
#
# Each derived model also gets small noise (1 % of each matrix's std) wherever the class leaves
# tensors byte-identical, so no informative tensor is shared byte for byte: basis "statistical"
# proves the descent test itself sees the derivation.

STRUCT_NOISE = 0.01
_MLP_SIZES = (32, 256, 256, 10)


@cache
def trained(seed: int = 31) -> Model:
    return train_mlp(init_mlp(seed, _MLP_SIZES), steps=300, seed=seed + 1)


@cache
def finetuned(task: int) -> Model:
    """A trained continuation of ``trained()`` on another task (same shapes)."""
    return train_mlp(trained(), task=task, steps=200, lr=0.01, seed=50 + task)


@cache
def with_head(seed: int = BASE_SEED) -> Model:
    """A 4-layer base_model with an untied output head."""
    head = (np.random.default_rng(seed + 999).standard_normal((512, 128)) * 0.02).astype(np.float32)
    return {**base_model(seed, layers=4), "lm_head.weight": head}


@cache
def rnn(cell: str, init: str, seed: int = 3) -> Model:
    return init_rnn(seed, cell=cell, init=init)


def _n(t: Model) -> Model:
    return noisy(t, STRUCT_NOISE, seed=7)


STRUCTURAL: dict[str, tuple[Callable[[], Model], Callable[[], Model]]] = {
    "vocabulary +128 rows (embedding and head)": (with_head, lambda: _n(expand_vocab(with_head(), 128, seed=1))),
    "depth up-scaled (SOLAR: layers 0-2 + 1-3)": (
        with_head, lambda: _n(depth_upscale(with_head(), first_end=3, second_start=1))),
    "width expanded 50% (Net2Net), transformer MLPs": (with_head, lambda: _n(widen(with_head(), 0.5, seed=1))),
    "width expanded 50% (Net2Net), trained MLP": (trained, lambda: _n(widen(trained(), 0.5, seed=1))),
    "width expanded 100% (Net2Net), trained MLP": (trained, lambda: _n(widen(trained(), 1.0, seed=2))),
    "2 of 8 heads pruned per layer": (with_head, lambda: _n(prune_heads(with_head(), heads=8, drop=2, seed=1))),
    "5 of 8 heads pruned per layer": (with_head, lambda: _n(prune_heads(with_head(), heads=8, drop=5, seed=1))),
    "SVD rank 0.5, reconstructed, trained MLP": (trained, lambda: _n(svd_compress(trained(), 0.5))),
    "SVD rank 0.4, reconstructed, trained MLP": (trained, lambda: _n(svd_compress(trained(), 0.4))),
    "SVD rank 0.5, factored U S | V^T, trained MLP": (
        trained, lambda: _n(svd_compress(trained(), 0.5, factored=True, split="left", seed=1))),
    "SVD rank 0.4, factored U S | V^T, trained MLP": (
        trained, lambda: _n(svd_compress(trained(), 0.4, factored=True, split="left", seed=1))),
    "SVD rank 0.4, factored U S | V^T, transformer": (
        with_head, lambda: _n(svd_compress(with_head(), 0.4, factored=True, split="left", seed=1))),
    "layer-wise merge, trained MLPs, vs first parent": (
        trained, lambda: _n(merge_layers(trained(), trained(33), split=1))),
    "layer-wise merge, trained MLPs, vs second parent": (
        lambda: trained(33), lambda: _n(merge_layers(trained(), trained(33), split=1))),
    "layer-wise merge, transformers, vs first parent": (
        with_head, lambda: _n(merge_layers(with_head(), with_head(5), split=2))),
    "layer-wise merge, transformers, vs second parent": (
        lambda: with_head(5), lambda: _n(merge_layers(with_head(), with_head(5), split=2))),
    "task arithmetic (two trained fine-tunes, lambda 0.5) vs base": (
        trained, lambda: task_arithmetic(trained(), [finetuned(1), finetuned(2)], lam=0.5)),
    "task arithmetic (two trained fine-tunes, lambda 0.5) vs a fine-tune": (
        lambda: finetuned(1), lambda: task_arithmetic(trained(), [finetuned(1), finetuned(2)], lam=0.5)),
    "int4 symmetric, groups of 32, trained MLP": (trained, lambda: quantize_int4(_n(trained()), group=32)),
    "int4 asymmetric, groups of 128, trained MLP": (
        trained, lambda: quantize_int4(_n(trained()), group=128, symmetric=False)),
    "int4 symmetric, groups of 128, transformer": (with_head, lambda: quantize_int4(_n(with_head()), group=128)),
    "LSTM (PyTorch uniform init), hidden axes permuted": (
        lambda: rnn("lstm", "uniform"), lambda: _n(permute_rnn(rnn("lstm", "uniform"), seed=1))),
    "LSTM (orthogonal + heavy-tailed drift), hidden axes permuted": (
        lambda: rnn("lstm", "structured"), lambda: _n(permute_rnn(rnn("lstm", "structured"), seed=1))),
    "GRU (PyTorch uniform init), hidden axes permuted": (
        lambda: rnn("gru", "uniform"), lambda: _n(permute_rnn(rnn("gru", "uniform"), cell="gru", seed=1))),
    "GRU (orthogonal + heavy-tailed drift), hidden axes permuted": (
        lambda: rnn("gru", "structured"), lambda: _n(permute_rnn(rnn("gru", "structured"), cell="gru", seed=1))),
    "LSTM permuted + 10% noise + int8 re-quantized": (
        lambda: rnn("lstm", "uniform"),
        lambda: requantize_int8(noisy(permute_rnn(rnn("lstm", "uniform"), seed=1), 0.1, seed=7))),
    "GRU permuted + 10% noise + int8 re-quantized": (
        lambda: rnn("gru", "structured"),
        lambda: requantize_int8(noisy(permute_rnn(rnn("gru", "structured"), cell="gru", seed=1), 0.1, seed=7))),
    # units kept in place, signal weak: the aligned-units test (docs/descent.md §3.2c)
    "siblings of one initialisation, heavy separate drift (correlation 0.06), 768-wide trained MLP": (
        lambda: sibling("mlp", 0), lambda: sibling("mlp", 1)),
    "an initialisation against its own long training (900 steps), trained MLP": (
        lambda: long_training()[0], lambda: long_training()[1]),
}


@pytest.mark.parametrize("name", list(STRUCTURAL))
def test_structural_derivations_are_related_on_statistical_evidence(name: str) -> None:
    source, derived = STRUCTURAL[name]
    a, b = source(), derived()
    result = compare(_fp(a), _fp(b))
    assert result.verdict == "related", (name, result.verdict, result.log10_p)
    assert result.basis == "statistical", (name, result.basis)
    assert result.informative_shared_a_in_b == 0


def test_int4_gguf_q4_0_of_a_trained_network_is_related(tmp_path: Path) -> None:
    """Group-wise int4 through a real container: the noised trained MLP stored as GGUF Q4_0."""
    copy = _n(trained())
    write_gguf(path := tmp_path / "q4.gguf", copy, {k: "Q4_0" for k, v in copy.items() if v.ndim == 2})
    result = compare(_fp(trained()), build(open_model(path).tensors()))
    assert (result.verdict, result.basis) == ("related", "statistical"), result.log10_p


def test_factored_svd_is_seen_on_one_axis() -> None:
    """U_r S_r (m x r) against W (m x n) with r < n/2: only the rows are comparable, and the Gram
    of U_r S_r's rows is that of W_r's rows; compare tests that axis alone."""
    result = compare(_fp(trained()), _fp(_n(svd_compress(trained(), 0.4, factored=True, split="left", seed=1))))
    assert result.verdict == "related"
    top = result.evidence[0]
    assert "one axis" in top.how and top.how.endswith("rotation-invariant"), top.how
    js = top.to_json()
    assert "gram_rows" in js and "cols" not in js and "gram_cols" not in js


def test_balanced_factored_svd_is_related() -> None:
    """Balanced factors U_r S_r^1/2 | S_r^1/2 V_r^T keep no per-tensor invariant of W; their product
    does: the fingerprint pairs them and sketches U_r S_r V_r^T as a derived matrix."""
    b = _n(svd_compress(trained(), 0.4, factored=True, split="balanced", seed=1))
    result = compare(_fp(trained()), _fp(b))
    assert (result.verdict, result.basis) == ("related", "statistical"), result.log10_p
    top = result.evidence[0]
    assert top.b == "fc1.weight.left @ fc1.weight.right" and "derived product" in top.how, top


STRUCTURAL_INDEPENDENT: dict[str, tuple[Callable[[], Model], Callable[[], Model]]] = {
    "vocabulary-expanded fresh initialisation": (with_head, lambda: expand_vocab(with_head(11), 128, seed=1)),
    "depth up-scaled fresh initialisation": (
        with_head, lambda: _n(depth_upscale(with_head(12), first_end=3, second_start=1))),
    "head-pruned fresh initialisation": (with_head, lambda: prune_heads(with_head(13), heads=8, drop=5, seed=1)),
    "widened independently trained MLP": (trained, lambda: widen(trained(35), 0.5, seed=1)),
    "factored SVD of an independently trained MLP": (
        trained, lambda: svd_compress(trained(35), 0.4, factored=True, split="left", seed=1)),
    "layer-wise merge of two other trained MLPs": (trained, lambda: merge_layers(trained(35), trained(37), split=1)),
    "permuted independent LSTM": (lambda: rnn("lstm", "uniform"), lambda: permute_rnn(rnn("lstm", "uniform", 4))),
}


@pytest.mark.parametrize("name", list(STRUCTURAL_INDEPENDENT))
def test_structural_analogues_of_independent_models_stay_independent(name: str) -> None:
    source, other = STRUCTURAL_INDEPENDENT[name]
    result = compare(_fp(source()), _fp(other()))
    assert result.verdict == "independent", (name, result.log10_p)
