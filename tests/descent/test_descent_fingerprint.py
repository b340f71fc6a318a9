"""Fingerprints: invariances, canonical encoding, strict decoding, size, digest naming."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.descent.compare import compare
from client.core.descent.fingerprint import DIGEST_NAME, VERSION, Fingerprint, TensorEntry, build, decode, tensor_digest
from client.core.descent.moments import moments
from client.core.descent.sketch import matrix_view, sketch_matrix
from client.errors import FormatError
from tests.descent_fixtures import base_model, noisy

W = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)


def test_row_features_ignore_column_order_and_follow_row_order() -> None:
    r = np.random.default_rng(1)
    rows, cols = sketch_matrix(W)
    pr, pc = r.permutation(96), r.permutation(64)
    rows2, cols2 = sketch_matrix(W[pr][:, pc])
    np.testing.assert_allclose(rows2.features, rows.features[pr], atol=2e-2)
    np.testing.assert_allclose(cols2.features, cols.features[pc], atol=2e-2)


def test_sketch_is_scale_invariant() -> None:
    a, _ = sketch_matrix(W)
    b, _ = sketch_matrix(W * 37.5)
    np.testing.assert_allclose(a.features, b.features, atol=2e-2)


@pytest.mark.parametrize("array", [np.ones((64, 64)), np.zeros((32, 32)), np.arange(100.0), np.ones((4, 1000)),
                                   np.random.default_rng(0).standard_normal((10, 10))])
def test_low_information_tensors_are_not_sketched(array: np.ndarray) -> None:
    assert matrix_view(array) is None


def test_conv_kernels_become_matrices() -> None:
    k = np.random.default_rng(0).standard_normal((32, 16, 3, 3)).astype(np.float32)
    view = matrix_view(k)
    assert view is not None and view.shape == (32, 144)


def test_encoding_round_trips_and_digest_is_named() -> None:
    fp = build(base_model(0, layers=1).items())
    data = fp.encode()
    again = decode(data)
    assert again.encode() == data
    assert fp.digest() == again.digest() and fp.digest().startswith(DIGEST_NAME + ":")
    assert compare(fp, again).verdict == "identical"


def test_fingerprint_from_decoded_bytes_compares_like_the_original() -> None:
    a = build(base_model(0, layers=2).items())
    b = build(noisy(base_model(0, layers=2), 0.05).items())
    direct = compare(a, b)
    via_bytes = compare(decode(a.encode()), decode(b.encode()))
    assert direct.verdict == via_bytes.verdict == "related"
    assert direct.log10_p == via_bytes.log10_p


def test_tensor_digest_is_bytes_only_and_little_endian() -> None:
    a = np.arange(10, dtype="<f4")
    assert tensor_digest(a) == tensor_digest(a.astype(">f4"))
    assert tensor_digest(a) == tensor_digest(a.reshape(2, 5))
    assert tensor_digest(a) != tensor_digest(a.astype("<f8"))
    big = np.random.default_rng(0).standard_normal(3_000_000).astype(np.float32)  # multithreaded path
    import blake3

    assert tensor_digest(big) == blake3.blake3(big.tobytes()).digest()


def test_fingerprint_size_is_small_for_large_matrices() -> None:
    w = np.random.default_rng(0).standard_normal((4096, 1024)).astype(np.float32)
    fp = build([("w", w)])
    assert len(fp.encode()) <= 0.02 * w.nbytes  # 2,048 + 1,024 aligned units x 32 directions: 192 KiB of it


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(FormatError, match="twice"):
        build([("a", W), ("a", W)])


@given(st.data())
def test_mangled_fingerprints_are_refused_or_canonical(data: st.DataObject) -> None:
    raw = bytearray(_SMALL)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        fp = decode(bytes(raw))
    except FormatError:
        return
    assert fp.encode() == bytes(raw)  # anything accepted is canonical


@pytest.mark.parametrize("cut", [0, 3, 4, 10, 50, -1])
def test_truncated_fingerprints_are_refused(cut: int) -> None:
    with pytest.raises(FormatError):
        decode(_SMALL[:cut] if cut >= 0 else _SMALL[:-1])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(FormatError, match="trailing"):
        decode(_SMALL + b"\x00")


_SMALL = build([("b", W[:16, :64]), ("a", np.ones(8, np.float32))]).encode()


def _older(current: Fingerprint, version: int) -> Fingerprint:
    """``current`` as a fingerprint of an older version would have held it."""
    return Fingerprint(tuple(TensorEntry(e.name, e.dtype, e.shape, e.digest, e.sketch,
                                         e.gram if version >= 2 else None, e.formula if version >= 2 else "",
                                         e.moments if version >= 3 else None)
                             for e in current.entries), version=version)


def test_version_2_fingerprints_decode_keep_their_digest_and_compare_refuses_them_by_name() -> None:
    """A v2 fingerprint (before the moments) still decodes to the same bytes and digest, so it checks
    against its record; compare refuses it, naming the version and what it lacks."""
    current = build({"w": W, "pos": np.arange(64.0 * 64).reshape(64, 64) % 7, "v": np.ones(8)}.items())
    old = _older(current, 2)
    data = old.encode()
    assert data[4:6] == b"\x02\x00" and len(data) == len(_older(current, 3).encode()) - 8 * 1  # one sketched
    again = decode(data)
    assert again.encode() == data and again.digest().startswith("blake3-plfp2:") and again.digest() == old.digest()
    assert all(e.moments is None for e in again.entries)
    with pytest.raises(FormatError, match=r"version 2 \(blake3-plfp2\).*moments"):
        compare(again, current)
    with pytest.raises(FormatError, match="version 2"):
        compare(current, again)


@pytest.mark.parametrize(("version", "lacks"), [(4, "diagonal"), (5, "principal directions")])
def test_versions_4_and_5_decode_keep_their_digest_and_compare_refuses_them_by_name(version: int, lacks: str) -> None:
    """v4 and v5 have v6's bytes, but their sketches mean other numbers (v4 kept a square matrix's
    diagonal and the Gram units' common direction, v5 the Gram matrix's strong principal directions):
    each decodes to the same bytes and digest, and compare refuses it by name."""
    current = build({"w": W, "sq": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}.items())
    old = Fingerprint(current.entries, version=version, derived=current.derived)
    data = old.encode()
    assert data[4:6] == bytes([version, 0]) and data[6:] == current.encode()[6:]
    again = decode(data)
    assert again.version == version and again.encode() == data
    assert again.digest().startswith(f"blake3-plfp{version}:")
    with pytest.raises(FormatError, match=rf"version {version} \(blake3-plfp{version}\).*{lacks}"):
        compare(again, current)
    with pytest.raises(FormatError, match=f"version {version}"):
        compare(current, again)


def test_version_3_stores_the_moments_of_every_sketched_tensor() -> None:
    r = np.random.default_rng(3)
    t = r.standard_t(5, (128, 96)).astype(np.float32) * 0.02 + 0.5
    fp = decode(build({"t": t, "v": np.ones(8)}.items()).encode())
    assert fp.version == VERSION == 6 and DIGEST_NAME == "blake3-plfp6"
    by_name = {e.name: e for e in fp.entries}
    assert by_name["v"].moments is None
    assert by_name["t"].moments is not None
    std, kurt = by_name["t"].moments
    x = t.astype(np.float64).ravel()
    z = (x - x.mean()) / x.std()
    assert std == pytest.approx(x.std(), rel=1e-5)
    assert kurt == pytest.approx(float(np.mean(z**4) - 3), rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("array,kurt", [(np.random.default_rng(0).standard_normal(200_000), 0.0),
                                        (np.random.default_rng(0).uniform(-1, 1, 200_000), -1.2),
                                        (np.random.default_rng(0).laplace(size=200_000), 3.0)])
def test_moments_match_the_distribution(array: np.ndarray, kurt: float) -> None:
    x = (array * 1e-3 + 7.0).astype(np.float32)  # a large offset must not cancel
    std, k = moments(x)
    ref = x.astype(np.float64)
    assert std == pytest.approx(float(ref.std()), rel=1e-4)
    assert k == pytest.approx(float(np.mean((ref - ref.mean()) ** 4) / ref.var() ** 2 - 3), abs=2e-3)
    assert k == pytest.approx(kurt, abs=0.25)  # and it is the distribution's (sampling error aside)
    assert moments(np.full(100, 3.0, np.float32)) == (0.0, 0.0)


def test_moments_are_required_exactly_where_version_3_sketches() -> None:
    e = build([("w", W)]).entries[0]
    with pytest.raises(FormatError, match="moments"):
        Fingerprint((dataclasses.replace(e, moments=None),))
    with pytest.raises(FormatError, match="moments"):
        Fingerprint((e,), version=2)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_bad_moments_are_refused(value: float) -> None:
    fp = build([("w", W[:16, :64])])
    data = _older(fp, 3).encode()  # v3 ends with the moments; v4 decodes them with the same code
    good = struct.pack("<ff", *fp.entries[0].moments or (0.0, 0.0))
    assert data.endswith(good)
    with pytest.raises(FormatError, match="moments"):
        decode(data[:-8] + struct.pack("<ff", value, 0.0))
    if value != -1.0:
        with pytest.raises(FormatError, match="moments"):
            decode(data[:-8] + struct.pack("<ff", 1.0, value))


def test_version_1_fingerprints_decode_but_compare_refuses_them_by_name() -> None:
    """A v1 fingerprint (published or committed before the Gram sketches) still decodes and keeps
    its digest, so it checks against its record; a comparison refuses it, naming the version."""
    from client.core.descent.compare import compare
    from client.core.descent.fingerprint import Fingerprint, TensorEntry

    current = build({"w": np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)}.items())
    old = Fingerprint(tuple(TensorEntry(e.name, e.dtype, e.shape, e.digest, e.sketch) for e in current.entries),
                      version=1)
    data = old.encode()
    assert data[4:6] == b"\x01\x00"
    again = decode(data)
    assert again.version == 1 and again.digest().startswith("blake3-plfp1:") and again.entries[0].gram is None
    with pytest.raises(FormatError, match="version 1"):
        compare(again, current)
    with pytest.raises(FormatError, match="version 1"):
        compare(current, again)
