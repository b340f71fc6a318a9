"""Models for the aligned-units test (docs/descent.md §3.2c): weak-signal derivations that keep
units in place, and independent pairs that share structure at equal unit indices (the nulls that
attack an aligned test). Shared by tests/descent/test_descent_aligned.py, the calibration test and
``bench evidence``. Deterministic given the seeds; no function modifies its input.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from tests.descent_fixtures import Model, base_model, init_mlp, noisy, train_mlp

SIBLING_DRIFT = 4.0  # noise std / weight std per sibling: correlation 1 / (1 + 16) ~ 0.06 between them
WIDE_MLP = (32, 768, 768, 10)  # BERT-base width: where rho ~ 0.06 is within the aligned test's power


def heavy_drift_siblings(t: Model, seed: int, drift: float = SIBLING_DRIFT) -> tuple[Model, Model]:
    """Two descendants of ``t``, each with its own i.i.d. drift of ``drift`` times every matrix's
    std (units never permuted): per-tensor correlation between them 1 / (1 + drift^2)."""
    return noisy(t, drift, seed=seed), noisy(t, drift, seed=seed + 1)


def wide_trained(seed: int, steps: int = 10) -> Model:
    """An MLP of ``WIDE_MLP`` trained ``steps`` SGD steps on the fixtures' task 0."""
    return train_mlp(init_mlp(seed, WIDE_MLP), steps=steps, seed=seed + 1)


LONG_STEPS = 900  # "long" training of the fixtures' 96-wide MLP (three times the usual 300 steps)


@cache
def sibling(kind: str, which: int) -> Model:
    """Sibling ``which`` (0 or 1) of :func:`heavy_drift_siblings` on a fixed base: ``"mlp"`` a
    ``WIDE_MLP`` trained 10 steps, ``"transformer"`` a 3-layer ``base_model``."""
    base = wide_trained(61) if kind == "mlp" else base_model(62, layers=3)
    return heavy_drift_siblings(base, seed=70)[which]


@cache
def long_training(seed: int = 31) -> tuple[Model, Model]:
    """(an initialisation of the fixtures' 96-wide MLP, its own training for LONG_STEPS steps)."""
    init = init_mlp(seed)
    return init, train_mlp(init, steps=LONG_STEPS, seed=seed + 1)


# ---------------------------------------------------------------- nulls with shared index structure


def _frequency_profile(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-like norm per row index and a pull towards a common direction, identical in every model
    of the vocabulary: frequent tokens, and a fixed 30 % of all tokens (a token class of the shared
    tokenizer, e.g. word-initial pieces: not smooth in the index, so adjacent rows differ), cluster
    around the model's own mean direction."""
    rank = np.arange(rows) + 1.0
    norm = rank ** -0.4
    token_class = np.random.default_rng(20_261_207).random(rows) < 0.3  # the tokenizer's, not the model's
    pull = 3.0 / np.sqrt(rank) + 3.0 * token_class
    return norm, pull


def vocabulary_structured(seed: int, *, vocab: int = 512, d: int = 128, layers: int = 1) -> Model:
    """An independent ``base_model`` whose embedding and output head rows carry the token-frequency
    structure every model of this vocabulary shares: row norms and a pull towards the model's own
    (random) mean direction, both a function of the row index alone. Rows are not exchangeable;
    the residual axis (columns) is."""
    t = base_model(seed, d=d, layers=layers, vocab=vocab)
    t["embed.weight"] = vocabulary_rows(1_000_000_000 + 2 * seed, vocab=vocab, d=d)  # seeds of no other model
    t["lm_head.weight"] = vocabulary_rows(1_000_000_001 + 2 * seed, vocab=vocab, d=d)
    return t


def vocabulary_rows(seed: int, *, vocab: int = 512, d: int = 128) -> np.ndarray:
    """One vocab x d table of :func:`vocabulary_structured`: the shared row profile, the model's own
    mean direction and entries."""
    r = np.random.default_rng(seed)
    norm, pull = _frequency_profile(vocab)
    rows = r.standard_normal((vocab, d)) + pull[:, None] * r.standard_normal(d)[None, :]
    out: np.ndarray = (0.02 * norm[:, None] * rows).astype(np.float32)
    return out


def rope_structured(seed: int, *, d: int = 128, heads: int = 8, layers: int = 1) -> Model:
    """An independent ``base_model`` whose q and k rows carry RoPE-like structure shared by every
    model of the architecture: row j of every head (half-split layout, frequency index
    j mod head_dim/2) has a norm and a signed pull towards one residual direction of the model's
    own (as q/k rows of trained models read a common massive-activation direction) that depend on
    its frequency alone. Rows are not exchangeable; the residual axis is."""
    r = np.random.default_rng(seed)
    t = base_model(seed, d=d, layers=layers)
    hd = d // heads
    freq = np.arange(hd) % (hd // 2)
    theta = 10000.0 ** (-2 * freq / hd)
    norm, pull = 0.3 + theta, 3.0 * theta**0.25 * (-1.0) ** freq  # adjacent frequencies pull opposite ways
    for layer in range(layers):
        qkv = t[f"layers.{layer}.attn.qkv.weight"].copy()
        u = r.standard_normal(d)
        for block in (0, 1):  # q and k; v keeps its exchangeable rows
            for h in range(heads):
                rows = r.standard_normal((hd, d)) + pull[:, None] * u[None, :]
                lo = block * d + h * hd
                qkv[lo : lo + hd] = (norm[:, None] * rows / np.sqrt(d)).astype(np.float32)
        t[f"layers.{layer}.attn.qkv.weight"] = qkv
    return t


def identity_recurrent(seed: int, *, hidden: int = 128, inputs: int = 32, noise: float = 0.05) -> Model:
    """An independent IRNN-style recurrent layer: ``weight_hh`` = identity + small noise (neither of
    its axes is exchangeable alone; only both at once), ``weight_ih`` Gaussian."""
    r = np.random.default_rng(seed)
    return {
        "rnn.weight_hh": (np.eye(hidden) + noise * r.standard_normal((hidden, hidden))).astype(np.float32),
        "rnn.weight_ih": (r.standard_normal((hidden, inputs)) / np.sqrt(inputs)).astype(np.float32),
        "rnn.bias": np.zeros(hidden, np.float32),
    }
