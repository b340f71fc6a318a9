"""tlog-cosignature v1 (Ed25519, type 0x04): keys, the signed message, signing and verifying lines."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core import note
from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.cosignature import (
    CosignerKey,
    WitnessSigner,
    cosigned_message,
    sign_cosignature,
    verify_cosignature,
)
from client.core.note import Signer, split_signatures
from client.errors import FormatError, InvalidInputError, SignatureError

SEED = bytes(range(32))
LOG = Signer.from_seed("example.com/log", bytes(range(1, 33)))
CP = Checkpoint("example.com/log", 7, hashlib.sha256(b"root").digest())
NOTE = sign_checkpoint(CP, LOG)
BODY = CP.to_text().encode()


def test_key_id_is_sha256_of_name_newline_0x04_key() -> None:
    key = WitnessSigner("w.example/w1", SEED).key()
    want = hashlib.sha256(b"w.example/w1\n\x04" + key.public_key).digest()[:4]
    assert key.key_id == want
    # Not the 0x01 key ID of the same key as a note signer.
    assert key.key_id != Signer.from_seed("w.example/w1", SEED).key_id


def test_vkey_round_trip_and_shape() -> None:
    key = WitnessSigner("w.example/w1", SEED).key()
    text = key.text()
    name, hex8, b64 = text.split("+", 2)
    assert (name, hex8) == ("w.example/w1", key.key_id.hex())
    assert base64.b64decode(b64) == b"\x04" + key.public_key
    assert CosignerKey.from_text(text) == key


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t.replace("+", "", 2), "not <name>+<key ID>+<key>"),
        (lambda t: t.split("+", 2)[0] + "+0000000+" + t.split("+", 2)[2], "not 8 lowercase hex"),
        (lambda t: t.split("+", 2)[0] + "+00000000+" + t.split("+", 2)[2], "does not match its key ID"),
        (lambda t: t[:-1] + "*", "not valid base64"),
    ],
)
def test_vkey_mangled_is_refused(mangle: object, message: str) -> None:
    text = WitnessSigner("w.example/w1", SEED).key().text()
    with pytest.raises(FormatError, match=re.escape(message)):
        CosignerKey.from_text(mangle(text))  # type: ignore[operator]


def test_vkey_of_a_log_key_type_0x01_is_refused_by_name() -> None:
    with pytest.raises(FormatError, match=r"key type 0x01 is not an Ed25519 cosignature/v1 key \(0x04\)"):
        CosignerKey.from_text(LOG.verifier().text())


def test_vkey_with_wrong_key_length_is_refused() -> None:
    raw = base64.b64encode(b"\x04" + bytes(31)).decode()
    with pytest.raises(FormatError, match="31 bytes, want 32"):
        CosignerKey.from_text(f"w+00000000+{raw}")


def test_public_key_length_checked_on_construction() -> None:
    with pytest.raises(FormatError, match="32 bytes"):
        CosignerKey("w", bytes(31))
    with pytest.raises(FormatError, match="invalid cosigner name"):
        CosignerKey("has space", bytes(32))


def test_cosigned_message_is_header_time_then_body() -> None:
    assert cosigned_message(BODY, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + BODY
    with pytest.raises(InvalidInputError):
        cosigned_message(BODY, -1)
    with pytest.raises(InvalidInputError):
        cosigned_message(BODY, 1 << 63)
    with pytest.raises(InvalidInputError):
        cosigned_message(BODY[:-1], 1)


def test_sign_and_verify_round_trip() -> None:
    signer = WitnessSigner("w.example/w1", SEED)
    line = signer.cosign(BODY, 1_700_000_000)
    assert line == sign_cosignature("w.example/w1", SEED, BODY, 1_700_000_000)
    assert line.startswith("\u2014 w.example/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == signer.key().key_id and int.from_bytes(raw[4:12], "big") == 1_700_000_000
    assert len(raw) == 4 + 8 + 64
    assert verify_cosignature(signer.key(), NOTE + line.encode()) == 1_700_000_000


def test_no_line_of_this_key_is_none() -> None:
    other = WitnessSigner("w.example/w2", bytes(32))
    note = NOTE + WitnessSigner("w.example/w1", SEED).cosign(BODY, 5).encode()
    assert verify_cosignature(other.key(), note) is None
    assert verify_cosignature(other.key(), NOTE) is None


def test_cosignature_of_another_checkpoint_does_not_verify() -> None:
    signer = WitnessSigner("w.example/w1", SEED)
    other = Checkpoint("example.com/log", 8, CP.root).to_text().encode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(signer.key(), NOTE + signer.cosign(other, 5).encode())


def test_note_signature_under_the_witness_name_is_not_a_cosignature() -> None:
    # A 0x01 note signature by the same name and seed has another key ID: it is not this key's line.
    plain = Signer.from_seed("w.example/w1", SEED)
    body, lines = split_signatures(NOTE)
    line = f"\u2014 w.example/w1 {base64.b64encode(plain.key_id + plain.sign(body)).decode()}\n"
    assert verify_cosignature(WitnessSigner("w.example/w1", SEED).key(), NOTE + line.encode()) is None


@given(st.integers(min_value=0, max_value=4 + 8 + 64 - 1), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_after_the_key_id_fails(byte: int, bit: int) -> None:
    signer = WitnessSigner("w.example/w1", SEED)
    raw = bytearray(base64.b64decode(signer.cosign(BODY, 1_700_000_000).split(" ")[2]))
    raw[byte] ^= 1 << bit
    note = NOTE + f"\u2014 w.example/w1 {base64.b64encode(bytes(raw)).decode()}\n".encode()
    if byte < 4:  # a changed key ID is another key's line
        assert verify_cosignature(signer.key(), note) is None
    else:
        with pytest.raises(SignatureError):
            verify_cosignature(signer.key(), note)


def test_a_short_line_of_this_key_fails() -> None:
    signer = WitnessSigner("w.example/w1", SEED)
    raw = base64.b64decode(signer.cosign(BODY, 9).split(" ")[2])[:-1]
    note = NOTE + f"\u2014 w.example/w1 {base64.b64encode(raw).decode()}\n".encode()
    with pytest.raises(SignatureError):
        verify_cosignature(signer.key(), note)


def test_every_line_of_the_key_must_verify_and_latest_time_wins() -> None:
    signer = WitnessSigner("w.example/w1", SEED)
    good = NOTE + signer.cosign(BODY, 10).encode() + signer.cosign(BODY, 20).encode()
    assert verify_cosignature(signer.key(), good) == 20
    other = Checkpoint("example.com/log", 8, CP.root).to_text().encode()
    with pytest.raises(SignatureError):
        verify_cosignature(signer.key(), good + signer.cosign(other, 30).encode())


def test_malformed_note_is_format_error() -> None:
    with pytest.raises(FormatError):
        verify_cosignature(WitnessSigner("w", SEED).key(), BODY)


def test_signer_refuses_bad_seed_and_does_not_show_it() -> None:
    with pytest.raises(InvalidInputError):
        WitnessSigner("w", bytes(31))
    assert SEED.hex() not in repr(WitnessSigner("w", SEED))


# -- weak keys ---------------------------------------------------------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def _decompress(enc: bytes) -> tuple[int, int] | None:
    """Naive edwards25519 point decoding (RFC 8032 5.1.3), for the test only."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    sign = enc[31] >> 7
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x2) % _P:
        return None
    if x == 0 and sign:
        return (0, y)  # -0: decoders differ; still the same (small-order) point
    if x & 1 != sign:
        x = _P - x
    return (x, y)


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2
    return ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)


def _small_order_encodings() -> set[bytes]:
    """Every encoding (both sign bits) of a point P with 8P = identity, found by trying the y of each candidate."""
    found = set()
    # Small-order points satisfy 8P = 0; enumerate them from the order-8 y values the code lists plus 0, 1, -1,
    # and check each by doubling three times, so a wrong constant in the code fails here.

    for y in note._SMALL_ORDER_Y:
        for sign in (0, 1):
            enc = (y | sign << 255).to_bytes(32, "little")
            pt = _decompress(enc)
            assert pt is not None, hex(y)
            q = pt
            for _ in range(3):
                q = _add(q, q)
            assert q == (0, 1), f"{hex(y)} is not of small order"
            found.add(enc)
    return found


def test_small_order_keys_are_refused() -> None:
    encodings = _small_order_encodings()
    assert len(encodings) == 10
    for enc in encodings:
        with pytest.raises(FormatError, match="small order"):
            CosignerKey("w", enc)
    # The identity key would let anyone "cosign" anything: R = identity, S = 0.
    ident = (1).to_bytes(32, "little")
    with pytest.raises(FormatError, match="small order"):
        CosignerKey.from_text("w+" + hashlib.sha256(b"w\n\x04" + ident).digest()[:4].hex() + "+"
                              + base64.b64encode(b"\x04" + ident).decode())
    with pytest.raises(FormatError, match="canonical"):
        CosignerKey("w", (_P + 1).to_bytes(32, "little"))


def test_the_listed_order_8_points_double_to_order_4_points() -> None:
    # The four order-8 points are the two y values with both signs: their doubles are the order-4 points (y = 0).

    order8 = [y for y in note._SMALL_ORDER_Y if y not in (0, 1, _P - 1)]
    assert len(order8) == 2
    for y in order8:
        pt = _decompress(y.to_bytes(32, "little"))
        assert pt is not None and _add(pt, pt)[1] == 0
