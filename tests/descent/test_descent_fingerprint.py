"""Fingerprints: invariances, canonical encoding, strict decoding, size, digest naming."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.descent.compare import compare
from client.core.descent.fingerprint import DIGEST_NAME, build, decode, tensor_digest
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
    assert len(fp.encode()) <= 0.01 * w.nbytes


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
