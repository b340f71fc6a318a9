"""Verdicts over derivations of a base model and over independent models of the same architecture.

The derivations are those a copier uses: re-serialization (other container, renamed), casts and
quantization, noise-level "fine-tunes" from small to large, pruning, merged low-rank adapters,
layer drops, permuted and renamed hidden units, ensembles. docs/descent.md has the power curve.
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
