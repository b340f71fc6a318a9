"""The models of ``bench evidence``: derivation cells (class, strength) and null families.

Everything is deterministic given its seed, so any row of the benchmark can be rebuilt alone:
``cell_pair(cell, trial)`` and ``null_pair(family, index)`` return the two models that were
compared. Generators come from the tests' kits (:mod:`tests.descent_fixtures`,
:mod:`tests.descent_structural`) and the verdict tests' fixed derivations (``DERIVED`` in
tests/descent/test_descent_verdicts.py), imported, not copied.

Bases of the power cells, one per trial ``t`` (seed ``BASE_SEED + t``):

* ``transformer``: ``base_model(seed, layers=LAYERS)`` (one block, 128 wide, 256 hidden, 512-token embedding),
  i.i.d. Gaussian weights (the hardest case for power);
* ``mlp``: an MLP 32-96-96-10 trained 300 SGD steps on the fixtures' synthetic task 0;
* ``lstm`` / ``lstm-structured`` / ``gru``: ``init_rnn`` (2 layers, 64 hidden, 32 inputs) with PyTorch's
  uniform initialisation, or the structured one (orthogonal recurrent blocks, heavy-tailed drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tests.descent.test_descent_verdicts import DERIVED, _sinusoidal
from tests.descent_aligned_fixtures import (
    LONG_STEPS,
    heavy_drift_siblings,
    identity_recurrent,
    rope_structured,
    vocabulary_structured,
    wide_trained,
)
from tests.descent_fixtures import (
    Model,
    base_model,
    init_mlp,
    low_rank_merge,
    noisy,
    orthogonal,
    permute_hidden,
    prune,
    rotate_residual,
    train_mlp,
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

LAYERS = 1  # one block: the machine is shared; see docs/descent.md, "Error rates"
BASE_SEED = 1_000
MLP_STEPS = 300
NULL_MLP_STEPS = 250
RNN_SIZE = {"input_size": 32, "hidden": 64, "layers": 2}  # as the calibration test's trained pairs

Derive = Callable[[Model, int], Model]  # (base, seed) -> derived model


@dataclass(frozen=True)
class Cell:
    """One row of the power table: ``derive(base, seed)`` compared against ``base`` (or, with
    ``against_second``, against the second model the derivation merged in)."""

    group: str
    strength: str
    base: str  # "transformer", "mlp", "lstm", "lstm-structured", "gru"
    derive: Derive
    against_second: bool = False


def _seed(cell_index: int, trial: int) -> int:
    return 100_000 * (cell_index + 1) + trial


def _second(seed: int) -> Model:
    return base_model(seed + 50_000_000, layers=LAYERS)


def _derived(name: str) -> Derive:
    return lambda t, _s: DERIVED[name](t)


def _mlp_function_preserving(t: Model, seed: int) -> Model:
    """Hidden units permuted and positively rescaled (exact for ReLU), input space rotated with
    the inverse folded into preprocessing, every tensor renamed (as in the verdict test)."""
    r = np.random.default_rng(seed)
    copy = {k: v.copy() for k, v in t.items()}
    for i in range(2):
        units = copy[f"fc{i}.weight"].shape[0]
        perm, c = r.permutation(units), np.exp(r.normal(0, 0.5, units)).astype(np.float32)
        copy[f"fc{i}.weight"] = (copy[f"fc{i}.weight"] * c[:, None])[perm]
        copy[f"fc{i}.bias"] = (copy[f"fc{i}.bias"] * c)[perm]
        copy[f"fc{i + 1}.weight"] = (copy[f"fc{i + 1}.weight"] / c[None, :])[:, perm]
    copy["fc0.weight"] = copy["fc0.weight"] @ orthogonal(copy["fc0.weight"].shape[1], seed)
    return {f"m.{i}": np.ascontiguousarray(v) for i, (_, v) in enumerate(sorted(copy.items()))}


def _mlp_init(t: Model, seed: int) -> Model:
    """Marker: the cell compares the trial's *initialisation* against its own training."""
    raise AssertionError("handled by cell_pair")


def _rnn_cell(kind: str) -> str:
    return "gru" if kind == "gru" else "lstm"


def _with_q(t: Model, seed: int) -> Model:
    """A random orthogonal Q between the two factors of every ``NAME.left`` / ``NAME.right`` pair."""
    out = dict(t)
    for k in (k for k in t if k.endswith(".left")):
        q = orthogonal(t[k].shape[1], seed)
        right = k[: -len("left")] + "right"
        out[k], out[right] = np.ascontiguousarray(t[k] @ q), np.ascontiguousarray(q.T @ t[right])
    return out


def _balanced_cells() -> list[tuple[str, str, Derive]]:
    """U_r S_r^1/2 | S_r^1/2 V_r^T of every matrix (SVD-LLM's layout), at a few ranks, with a random
    orthogonal Q between the factors, with noise on the factors; on the transformer and the trained MLP."""
    def bal(f: float, q: bool = False, e: float = 0.0) -> Derive:
        def derive(t: Model, s: int) -> Model:
            out = svd_compress(t, f, factored=True, split="balanced", seed=s)
            out = _with_q(out, s) if q else out
            return noisy(out, e, seed=s) if e else out
        return derive
    return [("rank 50%", "transformer", bal(0.5)), ("rank 25%", "transformer", bal(0.25)),
            ("rank 25%, orthogonal Q between factors", "transformer", bal(0.25, q=True)),
            ("rank 25% + 10% noise on the factors", "transformer", bal(0.25, e=0.1)),
            ("rank 10% (r = 13 < 16: not paired)", "transformer", bal(0.1)),
            ("rank 40%", "mlp", bal(0.4)), ("rank 25% + 10% noise on the factors", "mlp", bal(0.25, e=0.1))]


def _cells() -> tuple[Cell, ...]:
    n = noisy
    out: list[Cell] = [Cell("verdict tests' DERIVED", name, "transformer", _derived(name)) for name in DERIVED]
    out += [Cell("fine-tune noise (% of weight std)", f"{p}%", "transformer",
                 lambda t, s, e=p / 100: n(t, e, seed=s)) for p in (30, 50, 60, 100)]
    out += [Cell("magnitude pruning", f"{p}%", "transformer", lambda t, _s, f=p / 100: prune(t, f))
            for p in (70, 80, 95)]
    out += [Cell("merged low-rank adapter", f"rank {r}, {p}% of norm", "transformer",
                 lambda t, s, r=r, f=p / 100: low_rank_merge(t, r, f, seed=s))
            for r, p in ((8, 30), (8, 50), (64, 50))]
    out += [Cell("hidden units permuted + noise", f"{p}%", "transformer",
                 lambda t, s, e=p / 100: permute_hidden(n(t, e, seed=s), seed=s)) for p in (10, 30)]
    out += [Cell("residual rotated (QuaRot) + noise", f"{p}%", "transformer",
                 lambda t, s, e=p / 100: rotate_residual(n(t, e, seed=s), seed=s)) for p in (20, 30)]
    out += [Cell("residual rotated + per-unit scaling + noise", "10%", "transformer",
                 lambda t, s: rotate_residual(n(t, 0.1, seed=s), seed=s, scale_units=True))]
    out += [
        Cell("quantization", "int8 per-row (stored int8 + scales)", "transformer", lambda t, _s: requantize_int8(t)),
        Cell("quantization", "int4 group-wise 32, symmetric", "transformer", lambda t, _s: quantize_int4(t)),
        Cell("quantization", "int4 group-wise 32, asymmetric", "transformer",
             lambda t, _s: quantize_int4(t, symmetric=False)),
        Cell("quantization", "permuted + int4 group-wise 32", "transformer",
             lambda t, s: quantize_int4(permute_hidden(t, seed=s))),
    ]
    out += [Cell("vocabulary expansion + noise", f"+{rows}% rows, {p}% noise", "transformer",
                 lambda t, s, x=rows * 512 // 100, e=p / 100: n(expand_vocab(t, x, seed=s), e, seed=s))
            for rows, p in ((25, 10), (100, 30))]
    out += [Cell("depth up-scaling (layers duplicated) + noise", f"{p}% noise", "transformer",
                 lambda t, s, e=p / 100: n(depth_upscale(t, first_end=LAYERS, second_start=0), e, seed=s))
            for p in (10, 30)]
    out += [Cell("width expansion (Net2Net) + noise", f"+{w}% units, {p}% noise", "transformer",
                 lambda t, s, f=w / 100, e=p / 100: n(widen(t, f, seed=s), e, seed=s))
            for w, p in ((25, 10), (100, 30))]
    out += [Cell("attention head pruning + 10% noise", f"{d} of 8 heads", "transformer",
                 lambda t, s, d=d: n(prune_heads(t, heads=8, drop=d, seed=s), 0.1, seed=s)) for d in (2, 4, 6)]
    out += [Cell("low-rank (SVD) compression", f"rank {p}%", "transformer",
                 lambda t, s, f=p / 100: svd_compress(t, f, seed=s)) for p in (50, 25, 10)]
    out += [Cell("SVD compression, balanced factors", label, base, derive) for label, base, derive in _balanced_cells()]
    out += [
        Cell("layer-wise merge + 10% noise", "vs first model", "transformer",
             lambda t, s: n(merge_layers(t, _second(s), split=LAYERS // 2), 0.1, seed=s)),
        Cell("layer-wise merge + 10% noise", "vs second model", "transformer",
             lambda t, s: n(merge_layers(t, _second(s), split=LAYERS // 2), 0.1, seed=s), against_second=True),
    ]
    out += [Cell("task arithmetic (2 fine-tunes of 30% noise)", f"lambda {lam}", "transformer",
                 lambda t, s, lam=lam: task_arithmetic(t, [n(t, 0.3, seed=s), n(t, 0.3, seed=s + 1)], lam=lam))
            for lam in (0.5, 1.0)]
    out += [
        Cell("trained MLP", "initialisation vs its own training", "mlp", _mlp_init),
        Cell("trained MLP", "continued, same task (200 steps, lr 0.005)", "mlp",
             lambda t, s: train_mlp(t, steps=200, lr=0.005, seed=s)),
        Cell("trained MLP", "continued, same task (600 steps, lr 0.05)", "mlp",
             lambda t, s: train_mlp(t, steps=600, lr=0.05, seed=s)),
        Cell("trained MLP", "fine-tuned on another task (300 steps, lr 0.05)", "mlp",
             lambda t, s: train_mlp(t, task=1, steps=300, lr=0.05, seed=s)),
        Cell("trained MLP", "units permuted + rescaled, input rotated", "mlp", _mlp_function_preserving),
        Cell("trained MLP", "widened 50% (Net2Net)", "mlp", lambda t, s: widen(t, 0.5, seed=s)),
    ]
    for kind in ("lstm", "lstm-structured", "gru"):
        cell = _rnn_cell(kind)
        out += [
            Cell(f"recurrent ({kind})", "hidden axes permuted", kind,
                 lambda t, s, c=cell: permute_rnn(t, cell=c, seed=s)),
            Cell(f"recurrent ({kind})", "permuted + 10% noise + int8", kind,
                 lambda t, s, c=cell: requantize_int8(permute_rnn(n(t, 0.1, seed=s), cell=c, seed=s))),
        ]
    return tuple(out)


CELLS: tuple[Cell, ...] = _cells()


@dataclass(frozen=True)
class _PairOf:
    """A cell whose two models are both made from the trial's base and its initialisation:
    ``make(base, init, seed) -> (A, B)`` (siblings; an initialisation against a longer training)."""

    make: Callable[[Model, Model, int], tuple[Model, Model]]

    def __call__(self, t: Model, seed: int) -> Model:
        return self.make(t, t, seed)[1]


def _aligned_cells() -> tuple[Cell, ...]:
    """Weak signal with units in place (the aligned-units test, docs/descent.md 3.2c), appended so
    that every earlier cell keeps its index and seeds."""
    def sib(drift: float) -> _PairOf:
        return _PairOf(lambda t, _i, s: heavy_drift_siblings(t, seed=s, drift=drift))

    out = [Cell("heavy-drift siblings (units in place)", f"drift {d:g} x std each (corr {1 / (1 + d * d):.2f})",
                "transformer", sib(d)) for d in (2.0, 3.0, 4.0)]
    out += [Cell("heavy-drift siblings (units in place)", "drift 4 x std each (corr 0.06)", "mlp-wide", sib(4.0))]
    out += [Cell("trained MLP", f"initialisation vs its own long training ({steps} steps)", "mlp",
                 _PairOf(lambda _t, i, s, n=steps: (i, train_mlp(i, steps=n, seed=s)))) for steps in (LONG_STEPS, 1800)]
    return tuple(out)


CELLS = CELLS + _aligned_cells()


def base_of(kind: str, trial: int) -> tuple[Model, Model]:
    """(the base compared against, its initialisation) of one trial: for the MLP the trained
    network and its initialisation; otherwise the same model twice."""
    seed = BASE_SEED + trial
    if kind == "transformer":
        t = base_model(seed, layers=LAYERS)
        return t, t
    if kind == "mlp-wide":  # a 32-768-768-10 MLP trained 10 steps (tests/descent_aligned_fixtures.py)
        t = wide_trained(seed)
        return t, t
    if kind == "mlp":
        init = init_mlp(seed)
        return train_mlp(init, steps=MLP_STEPS, seed=seed), init
    rnn = init_rnn(seed, cell=_rnn_cell(kind), init="structured" if kind == "lstm-structured" else "uniform",
                   **RNN_SIZE)
    return rnn, rnn


def cell_pair(index: int, trial: int, bases: tuple[Model, Model] | None = None) -> tuple[Model, Model]:
    """The two models of power cell ``CELLS[index]``, trial ``trial`` (``bases``: ``base_of`` of
    the trial, when the caller already has it)."""
    cell = CELLS[index]
    base, init = bases if bases is not None else base_of(cell.base, trial)
    seed = _seed(index, trial)
    if cell.derive is _mlp_init:
        return init, base
    if isinstance(cell.derive, _PairOf):
        return cell.derive.make(base, init, seed)
    derived = cell.derive(base, seed)
    return (_second(seed) if cell.against_second else base), derived


# ---------------------------------------------------------------- null families

def _rotary(positions: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The rotary position tables (cos, sin), each positions x dim (frequencies repeated twice)."""
    inv = 10000.0 ** (-np.arange(0, dim, 2) / dim)
    ang = np.arange(positions)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=1)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _tables(index: int) -> dict[str, np.ndarray]:
    """Formula-produced tables, varied with ``index``, byte-identical in both models of a pair."""
    positions = (256, 512, 1024)[index % 3]
    cos, sin = _rotary(positions, 64)
    size = (128, 256)[index % 2]
    tril = np.tril(np.ones((size, size), np.float32))
    mask = tril if index % 4 < 2 else np.where(tril > 0, 0.0, -np.inf if index % 4 == 2 else -1e9).astype(np.float32)
    return {"pos": _sinusoidal(positions, 128), "rope_cos": cos, "rope_sin": sin, "mask": mask}


def _with_tables(t: Model, tables: dict[str, np.ndarray], names: tuple[str, ...]) -> Model:
    return {**t, **{name: tables[k].copy() for name, k in zip(names, ("pos", "rope_cos", "rope_sin", "mask"),
                                                                 strict=True)}}


def _seeds(family: int, index: int) -> tuple[int, int]:
    return 10_000_000 * (family + 1) + 2 * index, 10_000_000 * (family + 1) + 2 * index + 1


def _fresh(sa: int, sb: int, _i: int) -> tuple[Model, Model]:
    return base_model(sa, layers=LAYERS), base_model(sb, layers=LAYERS)


POOL = 100  # trained MLPs of the trained-pairs family; its pairs are distinct pairs of this pool
TRAINED_FAMILY = 1


def pool_member(m: int) -> Model:
    """Member ``m`` of the trained pool: an MLP trained from its own initialisation and batch seed."""
    seed = 10_000_000 * (TRAINED_FAMILY + 1) + m
    return train_mlp(init_mlp(seed), steps=NULL_MLP_STEPS, seed=seed)


def pool_pairs(n: int, pool: int = POOL) -> list[tuple[int, int]]:
    """``n`` distinct unordered pairs of pool members (requires n <= pool (pool - 1) / 2), in a
    fixed pseudo-random order, so each member appears in about 2 n / pool pairs."""
    every = [(i, j) for i in range(pool) for j in range(i + 1, pool)]
    order = np.random.default_rng(12).permutation(len(every))
    return [every[k] for k in order[:n]]


def _trained(sa: int, sb: int, i: int) -> tuple[Model, Model]:
    ma, mb = pool_pairs(i + 1)[i]
    return pool_member(ma), pool_member(mb)


def _formula(sa: int, sb: int, i: int) -> tuple[Model, Model]:
    tables = _tables(i)
    a = _with_tables(base_model(sa, layers=LAYERS), tables, ("pos.weight", "rope.cos", "rope.sin", "attn.mask"))
    b = _with_tables(base_model(sb, layers=LAYERS), tables, ("position_table", "freqs_cos", "freqs_sin", "causal"))
    return a, b


def _rotated(sa: int, sb: int, i: int) -> tuple[Model, Model]:
    a = base_model(sa, layers=LAYERS)
    if i % 3 == 2:
        a = rotate_residual(a, seed=sa)
    return a, rotate_residual(base_model(sb, layers=LAYERS), seed=sb, scale_units=i % 3 == 1)


def _recurrent(sa: int, sb: int, i: int) -> tuple[Model, Model]:
    cell, init = ("lstm", "uniform") if i % 3 == 0 else ("lstm", "structured") if i % 3 == 1 else ("gru", "uniform")
    a = init_rnn(sa, cell=cell, init=init, **RNN_SIZE)
    return a, permute_rnn(init_rnn(sb, cell=cell, init=init, **RNN_SIZE), cell=cell, seed=sb)


def _balanced(sa: int, sb: int, i: int) -> tuple[Model, Model]:
    """B stored as balanced SVD factors (rank 50 % or 25 %; every fourth pair with an orthogonal Q),
    against an uncompressed A on even pairs and a compressed one on odd pairs."""
    def squash(seed: int) -> Model:
        out = svd_compress(base_model(seed, layers=LAYERS), 0.5 if i % 4 < 2 else 0.25, factored=True, seed=seed)
        return _with_q(out, seed) if i % 4 == 3 else out
    return (squash(sa) if i % 2 else base_model(sa, layers=LAYERS)), squash(sb)


NULLS: tuple[tuple[str, Callable[[int, int, int], tuple[Model, Model]]], ...] = (
    ("same architecture, fresh initialisations", _fresh),
    ("same-task trained MLPs, different seeds (pool of 100)", _trained),
    ("shared formulaic tables (sinusoidal, rotary, causal masks)", _formula),
    ("rotated independents (QuaRot R, some with unit scaling)", _rotated),
    ("independent recurrent nets (LSTM/GRU, one permuted)", _recurrent),
    ("independents stored as balanced SVD factors (vs plain and vs factored)", _balanced),
)


def _tokenizer(sa: int, sb: int, _i: int) -> tuple[Model, Model]:
    return vocabulary_structured(sa, layers=LAYERS), vocabulary_structured(sb, layers=LAYERS)


def _rope(sa: int, sb: int, _i: int) -> tuple[Model, Model]:
    return rope_structured(sa, layers=LAYERS), rope_structured(sb, layers=LAYERS)


def _irnn(sa: int, sb: int, _i: int) -> tuple[Model, Model]:
    return identity_recurrent(sa), identity_recurrent(sb)


NULLS = NULLS + (  # families that attack the aligned-units test, appended (earlier families keep their seeds)
    ("shared tokenizer rows (embedding and head: frequency profile, token class)", _tokenizer),
    ("shared RoPE-like q/k row structure", _rope),
    ("identity-initialised recurrent matrices (I + noise, IRNN-style)", _irnn),
)


def null_pair(family: int, index: int) -> tuple[Model, Model]:
    """The two independent models of pair ``index`` of null family ``NULLS[family]``."""
    sa, sb = _seeds(family, index)
    return NULLS[family][1](sa, sb, index)


def null_seeds(family: int, index: int) -> tuple[int, int]:
    """The seeds of pair ``index`` of null family ``family`` (distinct for every pair; for the
    trained pool, the seeds of the two pool members)."""
    if family == TRAINED_FAMILY:
        ma, mb = pool_pairs(index + 1)[index]
        return 10_000_000 * (TRAINED_FAMILY + 1) + ma, 10_000_000 * (TRAINED_FAMILY + 1) + mb
    return _seeds(family, index)
