"""Formulaic tensors: every formula family is recognised (after casts and transposition), and no
weight-like matrix ever is (parametrised cases and a Hypothesis property over seeds and shapes)."""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.descent.formulaic import LIMITS, REASONS, FormulaLimits, formulaic_reason
from client.core.descent.sketch import matrix_view
from client.errors import InvalidInputError

Arr = npt.NDArray[np.generic]
F32 = npt.NDArray[np.float32]

# ---------------------------------------------------------------- casts


def bf16(x: Arr) -> F32:
    """bfloat16 as a reader widens it: the top 16 bits of the float32 kept (truncation)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    out: F32 = (a.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    return out


def int8_dequantized(x: Arr) -> F32:
    """Symmetric per-tensor int8 quantization and back (non-finite entries kept)."""
    a = np.asarray(x, dtype=np.float64)
    fin = np.isfinite(a)
    scale = float(np.max(np.abs(a[fin]))) / 127
    return np.where(fin, np.round(np.where(fin, a, 0.0) / scale) * scale, a).astype(np.float32)


def int8_codes(x: Arr) -> Arr:
    """The int8 codes themselves (what an int8 tensor file holds)."""
    a = np.asarray(x, dtype=np.float64)
    codes: Arr = np.round(a / (np.max(np.abs(a)) / 127)).astype(np.int8)
    return codes


def relative_1pct(x: Arr) -> F32:
    """Every entry off by a relative error of up to 1%."""
    a = np.asarray(x, dtype=np.float64)
    return (a * (1 + np.random.default_rng(7).uniform(-0.01, 0.01, a.shape))).astype(np.float32)


CASTS: dict[str, Callable[[Arr], Arr]] = {
    "float32": lambda x: np.asarray(x, dtype=np.float32),
    "float16": lambda x: np.asarray(x, dtype=np.float16),
    "bfloat16": bf16,
    "int8": int8_dequantized,
    "transposed": lambda x: np.asarray(x).T,
    "bfloat16-transposed": lambda x: bf16(x).T,
}

# ---------------------------------------------------------------- formula families (numpy, as libraries build them)


def sinusoidal(length: int, d: int, base: float = 10000.0, *, interleaved: bool) -> F32:
    """The Transformer position table: interleaved sin/cos, or concatenated [sin | cos]."""
    angle = np.arange(length)[:, None] / base ** (np.arange(0, d, 2)[None, :] / d)
    if not interleaved:
        return np.concatenate([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)
    table = np.empty((length, d))
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle)
    return table.astype(np.float32)


def rotary(length: int, d: int, base: float = 10000.0, *, duplicated: bool, fn: Callable[[F32], F32]) -> F32:
    """A rotary cos or sin cache, computed in float32 as the usual implementations do."""
    inv_freq = (1.0 / base ** (np.arange(0, d, 2, dtype=np.float32) / d)).astype(np.float32)
    freqs = np.outer(np.arange(length, dtype=np.float32), inv_freq)
    if duplicated:
        freqs = np.concatenate([freqs, freqs], axis=1)
    return fn(freqs).astype(np.float32)


def dft(n: int, *, imag: bool) -> F32:
    a = 2 * np.pi * np.outer(np.arange(n), np.arange(n)) / n
    return (-np.sin(a) if imag else np.cos(a)).astype(np.float32)


def stft(n_fft: int, *, imag: bool) -> F32:
    """An STFT kernel: the Hann-windowed Fourier basis, (n_fft // 2 + 1) x n_fft."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    a = 2 * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft
    return ((np.sin(a) if imag else np.cos(a)) * window).astype(np.float32)


def dct(n: int, kind: int) -> F32:
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    shift = 0.5 if kind == 4 else 0.0
    basis: F32 = (np.sqrt(2 / n) * np.cos(np.pi / n * (i + 0.5) * (k + shift))).astype(np.float32)
    return basis


def causal(length: int, fill: float | None) -> F32:
    lower = np.tril(np.ones((length, length)))
    mask: F32 = (lower if fill is None else np.where(lower > 0, 0.0, fill)).astype(np.float32)
    return mask


def alibi(length: int, slope: float, *, causal_part: bool = False) -> F32:
    d = np.arange(length)[None, :] - np.arange(length)[:, None]
    table: F32 = (np.where(d <= 0, slope * d, -np.inf) if causal_part else -slope * np.abs(d)).astype(np.float32)
    return table


def alibi_slopes(heads: int) -> npt.NDArray[np.float64]:
    return 2.0 ** (-8 * np.arange(1, heads + 1) / heads)


RECURRENCE: dict[str, tuple[Callable[[], F32], str]] = {
    "sinusoidal-interleaved-512x768": (lambda: sinusoidal(512, 768, interleaved=True), "sinusoidal"),
    "sinusoidal-interleaved-2048x64": (lambda: sinusoidal(2048, 64, interleaved=True), "sinusoidal"),
    "sinusoidal-interleaved-64x1024": (lambda: sinusoidal(64, 1024, interleaved=True), "sinusoidal"),
    "sinusoidal-concatenated-1024x512": (lambda: sinusoidal(1024, 512, interleaved=False), "sinusoidal"),
    "sinusoidal-concatenated-base-500000": (lambda: sinusoidal(4096, 128, 500000.0, interleaved=False), "sinusoidal"),
    "rotary-cos-duplicated": (lambda: rotary(2048, 128, duplicated=True, fn=np.cos), "sinusoidal"),
    "rotary-sin-duplicated": (lambda: rotary(2048, 128, duplicated=True, fn=np.sin), "sinusoidal"),
    "rotary-cos-half": (lambda: rotary(4096, 64, duplicated=False, fn=np.cos), "sinusoidal"),
    "rotary-sin-32k-base-1e6": (lambda: rotary(32768, 128, 1e6, duplicated=True, fn=np.sin), "sinusoidal"),
    "dft-real": (lambda: dft(256, imag=False), "sinusoidal"),
    "dft-imaginary": (lambda: dft(512, imag=True), "sinusoidal"),
    "stft-real": (lambda: stft(400, imag=False), "sinusoidal"),
    "stft-imaginary": (lambda: stft(512, imag=True), "sinusoidal"),
    "dct-ii": (lambda: dct(256, 2), "sinusoidal"),
    "dct-iv": (lambda: dct(64, 4), "sinusoidal"),
    "arange-broadcast": (lambda: np.broadcast_to(np.arange(4096, dtype=np.float32), (16, 4096)).copy(), "polynomial"),
    "arange-reshaped": (lambda: np.arange(256 * 64, dtype=np.float32).reshape(256, 64), "polynomial"),
    "linspace": (lambda: np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64), "polynomial"),
    "ramp-2d": (lambda: (0.3 * np.arange(100)[:, None] + 0.7 * np.arange(80)[None, :]).astype(np.float32),
                "polynomial"),
    "alibi-per-head-ramps": (lambda: (-alibi_slopes(16)[:, None] * np.arange(2048)).astype(np.float32), "polynomial"),
}

STRUCTURED: dict[str, tuple[Callable[[], F32], str]] = {
    "causal-0-1": (lambda: causal(1024, None), "mask"),
    "causal-0-inf": (lambda: causal(512, -np.inf), "mask"),
    "causal-0-1e9": (lambda: causal(256, -1e9), "mask"),
    "upper-triangular": (lambda: np.triu(np.ones((300, 300), np.float32), 1), "mask"),
    "banded": (lambda: (np.abs(np.subtract.outer(np.arange(512), np.arange(512))) <= 16).astype(np.float32), "mask"),
    "sliding-window-causal": (lambda: (np.tril(np.ones((256, 256))) - np.tril(np.ones((256, 256)), -32))
                              .astype(np.float32), "mask"),
    "identity": (lambda: np.eye(512, dtype=np.float32), "identity"),
    "scaled-identity": (lambda: (0.02 * np.eye(768)).astype(np.float32), "identity"),
    "identity-rectangular": (lambda: np.eye(4096, 8, dtype=np.float32), "identity"),
    "alibi": (lambda: alibi(512, 0.0625), "toeplitz"),
    "alibi-causal": (lambda: alibi(256, 0.0625, causal_part=True), "toeplitz"),
    "alibi-heads-flattened": (lambda: np.stack([alibi(32, s).ravel() for s in alibi_slopes(8)]), "toeplitz"),
    "causal-heads-flattened": (lambda: np.stack([causal(64, None).ravel()] * 12), "mask"),
}


@pytest.mark.parametrize("cast", list(CASTS))
@pytest.mark.parametrize("family", list(RECURRENCE) + list(STRUCTURED))
def test_formula_family_is_recognised(family: str, cast: str) -> None:
    build, reason = {**RECURRENCE, **STRUCTURED}[family]
    with np.errstate(invalid="ignore", over="ignore"):
        got = formulaic_reason(CASTS[cast](build()))
    if family in ("alibi-per-head-ramps", "alibi-heads-flattened") and cast == "int8":
        # Known miss (docs/descent.md): one int8 scale for heads whose slopes span 2^8 leaves the
        # flat heads a few steps deep. A miss only costs power; it must never be a wrong reason.
        assert got in (None, reason)
        return
    assert got == reason


@pytest.mark.parametrize("family", list(RECURRENCE))
def test_recurrence_family_survives_one_percent_relative_error(family: str) -> None:
    build, reason = RECURRENCE[family]
    assert formulaic_reason(relative_1pct(build())) == reason


@pytest.mark.parametrize("family", ["sinusoidal-interleaved-512x768", "dft-real", "arange-reshaped", "causal-0-1",
                                    "identity", "alibi"])
def test_int8_codes_are_recognised(family: str) -> None:
    build, reason = {**RECURRENCE, **STRUCTURED}[family]
    assert formulaic_reason(int8_codes(build())) == reason


def test_boolean_and_uint8_masks() -> None:
    mask = np.tril(np.ones((128, 128), dtype=bool))
    assert formulaic_reason(mask) == "mask"
    assert formulaic_reason(mask.astype(np.uint8)[::-1]) == "mask"  # anti-triangular: Hankel


def test_through_matrix_view() -> None:
    """What the caller passes: 4-D buffers squeezed and flattened by matrix_view."""
    view = matrix_view(causal(256, None)[None, None])
    assert view is not None and formulaic_reason(view) == "mask"
    heads = np.stack([alibi(64, s) for s in alibi_slopes(8)])[None]  # (1, heads, L, L)
    view = matrix_view(heads)
    assert view is not None and view.shape == (8, 64 * 64) and formulaic_reason(view) == "toeplitz"
    view = matrix_view(rotary(1024, 64, duplicated=True, fn=np.cos)[None, None])
    assert view is not None and formulaic_reason(view) == "sinusoidal"
    conv = np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32)
    view = matrix_view(conv)
    assert view is not None and formulaic_reason(view) is None


# ---------------------------------------------------------------- the hard side: weights are never flagged


@functools.cache
def trained_mlp(seed: int) -> tuple[F32, F32]:
    """Weights of a small tanh MLP trained by gradient descent on a regression task."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((512, 32))
    y = np.concatenate([np.sin(x[:, :8]), x[:, 8:16] ** 2], axis=1)
    w1 = r.standard_normal((32, 128)) / np.sqrt(32)
    w2 = r.standard_normal((128, 16)) / np.sqrt(128)
    for _ in range(300):
        h = np.tanh(x @ w1)
        g = (h @ w2 - y) / len(x)
        gh = g @ w2.T * (1 - h * h)
        w2 -= 0.5 * h.T @ g
        w1 -= 0.5 * x.T @ gh
    return w1.astype(np.float32), w2.astype(np.float32)


def per_channel_int8(w: npt.NDArray[np.float64]) -> F32:
    """Symmetric int8 with one scale per row (output unit), dequantized."""
    return np.vstack([int8_dequantized(row[None]) for row in w])


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


WEIGHTS: dict[str, Callable[[], F32]] = {
    "gaussian": lambda: _rng(1).standard_normal((512, 512)).astype(np.float32),
    "uniform": lambda: _rng(2).uniform(-1, 1, (256, 1024)).astype(np.float32),
    "student-t-3": lambda: _rng(3).standard_t(3, (512, 256)).astype(np.float32),
    "cauchy": lambda: _rng(4).standard_cauchy((256, 256)).astype(np.float32),
    "low-rank-plus-noise": lambda: (_rng(5).standard_normal((1024, 8)) @ _rng(6).standard_normal((8, 512))
                                    + 0.05 * _rng(7).standard_normal((1024, 512))).astype(np.float32),
    "rank-one": lambda: np.outer(_rng(8).standard_normal(512), _rng(9).standard_normal(256)).astype(np.float32),
    "mlp-trained-input": lambda: trained_mlp(10)[0],
    "mlp-trained-output": lambda: trained_mlp(10)[1],
    "ternary-bitnet": lambda: _rng(11).choice([-1.0, 0.0, 1.0], (512, 512)).astype(np.float32),
    "ternary-sparse": lambda: _rng(12).choice([-1.0, 0.0, 1.0], (512, 512), p=[0.02, 0.96, 0.02]).astype(np.float32),
    "int8-quantized-random": lambda: int8_dequantized(_rng(13).standard_normal((512, 512))),
    "per-channel-int8": lambda: per_channel_int8(_rng(14).standard_normal((256, 256))
                                                 * np.exp(_rng(15).standard_normal((256, 1)))),
    # a random walk (each row cumulatively summed) is not a short formula; nor is a twice-summed one
    "random-walk-rows": lambda: np.cumsum(_rng(16).standard_normal((256, 1024)), axis=1).astype(np.float32),
    "random-walk-columns": lambda: np.cumsum(_rng(17).standard_normal((1024, 256)), axis=0).astype(np.float32),
    "random-walk-twice-summed": lambda: np.cumsum(np.cumsum(_rng(18).standard_normal((256, 1024)), 1), 1)
                                        .astype(np.float32),
    "conv-kernel-out-by-in-k-k": lambda: _rng(19).standard_normal((64, 3 * 7 * 7)).astype(np.float32),
    "embedding-30k-by-64": lambda: (0.02 * _rng(20).standard_normal((30000, 64))).astype(np.float32),
    "shape-3-by-4096": lambda: _rng(21).standard_normal((3, 4096)).astype(np.float32),
    "shape-4096-by-8": lambda: _rng(22).standard_normal((4096, 8)).astype(np.float32),
    "stacked-norm-gains": lambda: (1 + 0.05 * _rng(23).standard_normal((24, 1024))).astype(np.float32),
    # a table that training moved by 2% (of its rms) is learned, not a formula
    "sinusoidal-table-trained-2pct": lambda: sinusoidal(512, 256, interleaved=True)
                                             + 0.02 * _rng(24).standard_normal((512, 256)).astype(np.float32),
    "sparse-embedding": lambda: np.where(_rng(25).random((30000, 64)) < 0.001, 1.0, 0.0).astype(np.float32)
                                * _rng(26).standard_normal((30000, 64)).astype(np.float32),
    "permutation-matrix": lambda: np.eye(256, dtype=np.float32)[_rng(27).permutation(256)],
    "rows-sorted": lambda: np.sort(_rng(28).standard_normal((256, 512)), axis=1).astype(np.float32),
    "outlier-rows-of-random-walks": lambda: np.cumsum(_rng(29).standard_normal((256, 256)), 1).astype(np.float32)
                                            * np.exp(3 * _rng(30).standard_normal((256, 1))).astype(np.float32),
}


@pytest.mark.parametrize("cast", ["float32", "float16", "bfloat16", "transposed"])
@pytest.mark.parametrize("name", list(WEIGHTS))
def test_weight_matrix_is_never_flagged(name: str, cast: str) -> None:
    with np.errstate(over="ignore"):  # heavy tails overflow float16 to inf, as a real cast would
        w = CASTS[cast](WEIGHTS[name]())
    assert formulaic_reason(w) is None


def test_int8_codes_of_random_weights_are_not_flagged() -> None:
    assert formulaic_reason(int8_codes(_rng(31).standard_normal((512, 512)))) is None


def _weight_like(kind: str, seed: int, m: int, n: int) -> F32:
    r = np.random.default_rng(seed)
    match kind:
        case "gaussian":
            w = r.standard_normal((m, n))
        case "student-t":
            w = r.standard_t(2.5, (m, n))
        case "uniform":
            w = r.uniform(-1, 1, (m, n))
        case "ternary":
            w = r.choice([-1.0, 0.0, 1.0], (m, n))
        case "int8":
            w = np.clip(np.round(r.standard_normal((m, n)) * 30), -127, 127)
        case "low-rank":
            w = r.standard_normal((m, 4)) @ r.standard_normal((4, n)) + 0.05 * r.standard_normal((m, n))
        case "walk-rows":
            w = np.cumsum(r.standard_normal((m, n)), axis=1)
        case "walk-columns":
            w = np.cumsum(r.standard_normal((m, n)), axis=0)
        case "sparse":
            w = np.where(r.random((m, n)) < 0.05, r.standard_normal((m, n)), 0.0)
        case "row-scaled":
            w = r.standard_normal((m, n)) * np.exp(2 * r.standard_normal((m, 1)))
        case _:
            raise AssertionError(kind)
    return w.astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["gaussian", "student-t", "uniform", "ternary", "int8", "low-rank", "walk-rows",
                             "walk-columns", "sparse", "row-scaled"]),
       seed=st.integers(0, 2**32 - 1), m=st.integers(8, 320), n=st.integers(8, 320),
       cast=st.sampled_from(["float32", "float16", "bfloat16", "transposed"]))
def test_property_weight_like_matrices_are_never_flagged(kind: str, seed: int, m: int, n: int, cast: str) -> None:
    w = CASTS[cast](_weight_like(kind, seed, m, n))
    if bool(np.all(w == w.flat[0])):  # matrix_view drops constants before we are called
        return
    assert formulaic_reason(w) is None


# ---------------------------------------------------------------- contract


def test_reasons_are_the_documented_ids() -> None:
    assert set(REASONS) == {"identity", "mask", "toeplitz", "polynomial", "sinusoidal"}
    found = {formulaic_reason(b()) for b, _ in {**RECURRENCE, **STRUCTURED}.values()}
    assert found == set(REASONS)


def test_deterministic_and_input_untouched() -> None:
    t = sinusoidal(512, 128, interleaved=True)
    t.setflags(write=False)
    before = t.copy()
    assert formulaic_reason(t) == formulaic_reason(t) == "sinusoidal"
    assert np.array_equal(t, before)


def test_matrix_is_never_copied() -> None:
    for w in (np.random.default_rng(0).standard_normal((4096, 1024)).astype(np.float32), causal(2048, None)):
        tracemalloc.start()
        try:
            formulaic_reason(w)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < w.nbytes // 4


def test_small_or_short_matrices_are_answered() -> None:
    assert formulaic_reason(np.eye(16, dtype=np.float32)) == "identity"
    assert formulaic_reason(np.eye(2, dtype=np.float32)) is None  # too few rows to tell
    assert formulaic_reason(np.random.default_rng(0).standard_normal((1, 50))) is None
    assert formulaic_reason(np.random.default_rng(0).standard_normal((8, 8))) is None


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        formulaic_reason(np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(InvalidInputError):
        formulaic_reason(np.zeros((16, 16), dtype=np.complex64))
    with pytest.raises(InvalidInputError):
        FormulaLimits(pass_fraction=0.0)
    with pytest.raises(InvalidInputError):
        FormulaLimits(max_rank=8)
    with pytest.raises(InvalidInputError):
        FormulaLimits(eta=-1.0)
    assert FormulaLimits() == LIMITS
