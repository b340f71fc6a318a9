"""Structural derivations of a model, for the descent verdict tests and the evidence benchmark.

Each function takes a model (``dict`` name -> array, as in :mod:`tests.descent_fixtures`) and
returns a new one; none modifies its input. They are what a lab does to someone else's weights
when it changes the architecture rather than only the values: tokenizer extension, depth
up-scaling, width expansion, head pruning, low-rank compression, merges, group-wise quantization,
and recurrent networks with permuted hidden units. Names follow the two layouts of the fixtures:
``base_model`` (``embed.weight``, ``layers.N.attn.qkv.weight`` ...) and the MLP chain of
``init_mlp`` / ``train_mlp`` (``fcN.weight``, ``fcN.bias``); recurrent models use PyTorch's names
(``weight_ih_lN``, ``weight_hh_lN``, ``bias_ih_lN``, ``bias_hh_lN``).

Where a derivation needs randomness it takes ``seed`` and is deterministic given it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tests.descent_fixtures import Model, quantize_rows_int8

F32 = npt.NDArray[np.float32]

_LAYER = re.compile(r"^(?P<pre>(?:.*\.)?layers\.)(?P<n>\d+)(?P<post>\..*)$")
_FC = re.compile(r"^fc(?P<n>\d+)\.(?P<post>weight|bias)$")


def _f32(a: npt.ArrayLike) -> F32:
    return np.ascontiguousarray(a, dtype=np.float32)


def _layer_of(name: str) -> int | None:
    """The layer number of a tensor in either layout (``layers.N.`` or ``fcN.``), else None."""
    m = _LAYER.match(name) or _FC.match(name)
    return int(m.group("n")) if m else None


# ---------------------------------------------------------------- vocabulary expansion

def expand_vocab(t: Model, extra: int, *, seed: int = 0, spread: float = 0.003,
                 tables: Sequence[str] = ("embed.weight", "lm_head.weight")) -> Model:
    """Tokenizer extension: ``extra`` rows appended to each of ``tables`` present in ``t`` (the
    input embedding and, if present, the output head), as ``resize_token_embeddings`` with mean
    initialisation does: every new row is the mean of the old rows plus Gaussian noise of
    ``spread`` times the old rows' per-column standard deviation. Other tensors are unchanged."""
    r = np.random.default_rng(seed)
    out = dict(t)
    for name in tables:
        if name not in t:
            continue
        old = t[name].astype(np.float32)
        new = old.mean(axis=0) + spread * old.std(axis=0) * r.standard_normal((extra, old.shape[1]))
        out[name] = _f32(np.vstack([old, new])).astype(t[name].dtype)
    return out


# ---------------------------------------------------------------- depth up-scaling

def depth_upscale(t: Model, *, first_end: int, second_start: int) -> Model:
    """SOLAR-style depth up-scaling of a ``layers.N.`` model of n layers: the stack of layers
    ``0 .. first_end-1`` followed by layers ``second_start .. n-1`` (so layers in both ranges
    appear twice), renumbered ``0 ..``. Tensors outside the layers are kept once. Deterministic
    (byte-identical duplicates: compose with noise for continued pre-training)."""
    layers = sorted({n for k in t if (n := _layer_of(k)) is not None and _LAYER.match(k)})
    order = [n for n in layers if n < first_end] + [n for n in layers if n >= second_start]
    out: Model = {k: v for k, v in t.items() if not _LAYER.match(k)}
    for new, old in enumerate(order):
        for k, v in t.items():
            m = _LAYER.match(k)
            if m and int(m.group("n")) == old:
                out[f"{m.group('pre')}{new}{m.group('post')}"] = v.copy()
    return out


# ---------------------------------------------------------------- width expansion (Net2Net)

def _hidden_spaces(t: Model) -> list[tuple[str, str | None, str]]:
    """(writer matrix, its bias or None, reader matrix) for every hidden space a ReLU MLP has:
    ``fcI`` -> ``fcI+1`` in the MLP chain, ``mlp.up`` -> ``mlp.down`` in a ``base_model``."""
    out: list[tuple[str, str | None, str]] = []
    i = 0
    while f"fc{i + 1}.weight" in t:
        bias = f"fc{i}.bias"
        out.append((f"fc{i}.weight", bias if bias in t else None, f"fc{i + 1}.weight"))
        i += 1
    for k in sorted(t):
        if k.endswith("mlp.up.weight"):
            bias = k.replace("up.weight", "up.bias")
            out.append((k, bias if bias in t else None, k.replace("mlp.up.weight", "mlp.down.weight")))
    return out


def widen(t: Model, fraction: float, *, seed: int = 0, noise: float = 0.01) -> Model:
    """Net2WiderNet: every hidden space of a ReLU MLP (see :func:`_hidden_spaces`) gets
    ``round(fraction * units)`` new units, each a copy of a randomly chosen old unit (its writer
    row and bias); the reader's columns of a unit copied c times are divided by c + 1 and given to
    every copy, so the function is unchanged. The new copies get noise of ``noise`` times the
    writer's std (Net2Net's symmetry breaking); the old units are left as they were."""
    r = np.random.default_rng(seed)
    out = dict(t)
    for up, bias, down in _hidden_spaces(t):
        w_up, w_down = out[up].astype(np.float32), out[down].astype(np.float32)
        units = w_up.shape[0]
        pick = r.integers(0, units, round(fraction * units))
        copies = np.bincount(pick, minlength=units) + 1
        rows = w_up[pick] + noise * w_up.std() * r.standard_normal((len(pick), w_up.shape[1]))
        out[up] = _f32(np.vstack([w_up, rows]))
        if bias is not None:
            out[bias] = _f32(np.concatenate([out[bias], out[bias][pick]]))
        shared = w_down / copies[None, :]
        out[down] = _f32(np.hstack([shared, shared[:, pick]]))
    return out


# ---------------------------------------------------------------- attention head pruning

def prune_heads(t: Model, *, heads: int, drop: int, seed: int = 0) -> Model:
    """Attention head pruning in a ``base_model``: the residual width d is split into ``heads``
    heads; in every layer ``drop`` random heads are removed — their rows from each of the q, k
    and v blocks of ``attn.qkv.weight`` (3d x d becomes 3d' x d) and their columns from
    ``attn.out.weight`` (d x d becomes d x d'), d' = d (heads - drop) / heads."""
    r = np.random.default_rng(seed)
    out = dict(t)
    for k in sorted(t):
        if not k.endswith("attn.qkv.weight"):
            continue
        qkv, proj = t[k], t[k.replace("qkv.weight", "out.weight")]
        d = qkv.shape[1]
        size = d // heads
        kept = np.sort(r.permutation(heads)[: heads - drop])
        dims = (kept[:, None] * size + np.arange(size)[None, :]).reshape(-1)
        out[k] = np.ascontiguousarray(np.vstack([qkv[b * d + dims] for b in range(3)]))
        out[k.replace("qkv.weight", "out.weight")] = np.ascontiguousarray(proj[:, dims])
    return out


# ---------------------------------------------------------------- low-rank (SVD) compression

def svd_compress(t: Model, rank_fraction: float, *, factored: bool = False, split: str = "balanced",
                 seed: int = 0) -> Model:
    """Truncated-SVD compression of every matrix: ``W = U S V^T`` keeps its top
    ``r = max(1, round(rank_fraction * min(m, n)))`` singular triples. Stored either as the
    reconstruction ``W_r = U_r S_r V_r^T`` (same shape) or, with ``factored``, as two matrices
    ``NAME.left = U_r S_r^(1/2)`` (m x r) and ``NAME.right = S_r^(1/2) V_r^T`` (r x n) in place of
    ``NAME`` (``split="balanced"``, as SVD-LLM and LoRA-style initialisations store it), or
    ``NAME.left = U_r S_r`` and ``NAME.right = V_r^T`` (``split="left"``). ``seed`` draws the signs
    of the singular pairs (an SVD routine's arbitrary choice: ``W_r`` does not depend on it, the
    factors do)."""
    r = np.random.default_rng(seed)
    out: Model = {}
    for k, v in t.items():
        if v.ndim != 2:
            out[k] = v
            continue
        u, s, vt = np.linalg.svd(v.astype(np.float64), full_matrices=False)
        rank = max(1, round(rank_fraction * min(v.shape)))
        signs = r.choice([-1.0, 1.0], rank)
        root = np.sqrt(s[:rank]) if split == "balanced" else s[:rank]
        left = u[:, :rank] * (root * signs)[None, :]
        right = (s[:rank] / np.where(root > 0, root, 1.0) * signs)[:, None] * vt[:rank]
        if factored:
            out[k + ".left"], out[k + ".right"] = _f32(left), _f32(right)
        else:
            out[k] = _f32(left @ right)
    return out


# ---------------------------------------------------------------- merges

def merge_layers(first: Model, second: Model, *, split: int) -> Model:
    """Layer-wise merge (a "frankenmerge") of two models of one architecture: layers below
    ``split`` from ``first``, layers from ``split`` on from ``second``, tensors outside the layers
    (embeddings, final norm) from ``first``. Deterministic."""
    out: Model = {}
    for k, v in first.items():
        n = _layer_of(k)
        out[k] = (v if n is None or n < split else second[k]).copy()
    return out


def task_arithmetic(base: Model, finetunes: Sequence[Model], *, lam: float) -> Model:
    """Task-arithmetic merge: ``base + lam * sum_i (finetune_i - base)`` for every tensor
    (Ilharco et al., "Editing models with task arithmetic"). Deterministic."""
    out: Model = {}
    for k, v in base.items():
        delta = sum((ft[k].astype(np.float64) - v for ft in finetunes), np.zeros(v.shape))
        out[k] = (v + lam * delta).astype(v.dtype)
    return out


# ---------------------------------------------------------------- group-wise int4

def quantize_int4(t: Model, *, group: int = 32, symmetric: bool = True) -> Model:
    """Group-wise 4-bit quantization of every matrix (GPTQ / AWQ storage without the error
    feedback), dequantised back to float32: each row is cut into groups of ``group`` consecutive
    entries along the input (last) axis, the last group possibly shorter. Symmetric: one scale
    ``max|w| / 7`` per group, levels -8..7. Asymmetric: scale ``(max - min) / 15`` and a zero
    point per group, levels 0..15. Vectors are kept. Deterministic."""
    out: Model = {}
    for k, v in t.items():
        if v.ndim != 2:
            out[k] = v
            continue
        w = v.astype(np.float32)
        deq = np.empty_like(w)
        for lo in range(0, w.shape[1], group):
            blk = w[:, lo:lo + group]
            if symmetric:
                scale = np.abs(blk).max(axis=1, keepdims=True) / 7.0
                scale[scale == 0] = 1.0
                deq[:, lo:lo + group] = np.clip(np.round(blk / scale), -8, 7) * scale
            else:
                low = blk.min(axis=1, keepdims=True)
                scale = (blk.max(axis=1, keepdims=True) - low) / 15.0
                scale[scale == 0] = 1.0
                deq[:, lo:lo + group] = np.clip(np.round((blk - low) / scale), 0, 15) * scale + low
        out[k] = deq
    return out


def requantize_int8(t: Model) -> Model:
    """Symmetric int8 re-quantization of every matrix with one scale per row, stored as the int8
    matrix ``NAME`` and a float32 vector ``NAME.scale`` (an inference engine's storage; the
    descent test reads the int8 matrix as it is). Vectors are kept. Deterministic."""
    out: Model = {}
    for k, v in t.items():
        if v.ndim != 2:
            out[k] = v
            continue
        q, scale = quantize_rows_int8(v.astype(np.float32))
        out[k], out[k + ".scale"] = q, scale
    return out


# ---------------------------------------------------------------- recurrent networks

GATES = {"lstm": 4, "gru": 3}  # gate blocks stacked along the rows of weight_ih / weight_hh


def init_rnn(seed: int, *, cell: str = "lstm", input_size: int = 64, hidden: int = 128, layers: int = 2,
             init: str = "uniform") -> Model:
    """A stacked LSTM or GRU with PyTorch's tensor names and layouts: per layer ``weight_ih_lN``
    (G*hidden x in), ``weight_hh_lN`` (G*hidden x hidden), ``bias_ih_lN``, ``bias_hh_lN``, G = 4
    gate blocks for an LSTM (i, f, g, o), 3 for a GRU (r, z, n). ``init="uniform"`` is PyTorch's
    default, U(-1/sqrt(hidden), 1/sqrt(hidden)) everywhere (non-Gaussian). ``init="structured"``
    is a common recipe, also non-Gaussian: Xavier-uniform input weights, each recurrent gate block
    an orthogonal matrix, LSTM forget-gate bias 1, plus a heavy-tailed (Student-t, 3 dof) rank-8
    drift of 30 % of each matrix's norm, standing in for what training adds."""
    r = np.random.default_rng(seed)
    g = GATES[cell]
    bound = 1.0 / np.sqrt(hidden)
    t: Model = {}
    for n in range(layers):
        fan_in = input_size if n == 0 else hidden
        if init == "uniform":
            w_ih = r.uniform(-bound, bound, (g * hidden, fan_in))
            w_hh = r.uniform(-bound, bound, (g * hidden, hidden))
            b_ih = r.uniform(-bound, bound, g * hidden)
            b_hh = r.uniform(-bound, bound, g * hidden)
        else:
            lim = np.sqrt(6.0 / (fan_in + hidden))
            w_ih = r.uniform(-lim, lim, (g * hidden, fan_in))
            blocks = []
            for _ in range(g):
                q, rr = np.linalg.qr(r.standard_normal((hidden, hidden)))
                blocks.append(q * np.sign(np.diag(rr)))
            w_hh = np.vstack(blocks)
            b_ih, b_hh = np.zeros(g * hidden), np.zeros(g * hidden)
            if cell == "lstm":
                b_ih[hidden:2 * hidden] = 1.0
            for w in (w_ih, w_hh):
                drift = r.standard_t(3, (w.shape[0], 8)) @ r.standard_t(3, (8, w.shape[1]))
                w += drift * (0.3 * np.linalg.norm(w) / np.linalg.norm(drift))
        t[f"weight_ih_l{n}"], t[f"weight_hh_l{n}"] = _f32(w_ih), _f32(w_hh)
        t[f"bias_ih_l{n}"], t[f"bias_hh_l{n}"] = _f32(b_ih), _f32(b_hh)
    return t


def permute_rnn(t: Model, *, cell: str = "lstm", seed: int = 0, rename: bool = True) -> Model:
    """Function-preserving permutation of every hidden axis of an :func:`init_rnn` model: per
    layer one permutation p of the hidden units, applied to the rows of every gate block of
    ``weight_ih``, ``weight_hh`` and both biases (the same p in each block), to the columns of
    ``weight_hh``, and to the columns of the next layer's ``weight_ih``. With ``rename`` every
    tensor is renamed (``rnn.0`` ...), as a copier would."""
    r = np.random.default_rng(seed)
    g = GATES[cell]
    out = dict(t)
    n = 0
    while f"weight_hh_l{n}" in t:
        hidden = t[f"weight_hh_l{n}"].shape[1]
        p = r.permutation(hidden)
        rows = (np.arange(g)[:, None] * hidden + p[None, :]).reshape(-1)
        for k in (f"weight_ih_l{n}", f"bias_ih_l{n}", f"bias_hh_l{n}"):
            out[k] = np.ascontiguousarray(out[k][rows])
        out[f"weight_hh_l{n}"] = np.ascontiguousarray(t[f"weight_hh_l{n}"][rows][:, p])
        nxt = f"weight_ih_l{n + 1}"
        if nxt in t:
            out[nxt] = np.ascontiguousarray(t[nxt][:, p])
        n += 1
    if not rename:
        return out
    return {f"rnn.{i}": out[k] for i, k in enumerate(sorted(out))}
