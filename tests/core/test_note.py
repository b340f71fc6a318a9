"""client/core/note.py: C2SP signed notes with Ed25519 (https://c2sp.org/signed-note).

Golden vectors come from two places: the example in Go's golang.org/x/mod/sumdb/note package
documentation (data, not code), and our own fixed-seed key, whose bytes Go reproduces
(tests/interop/test_go_interop.py). Ed25519 is deterministic, so a fixed seed gives a fixed note. To
regenerate ours after a deliberate format change, print ``sign_note(CP_TEXT, [log_signer(),
witness_signer()])`` and the key texts of ``log_signer()`` and ``witness_signer()`` below.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    key_id_for,
    open_note,
    sign_note,
    valid_name,
)
from client.errors import FormatError, InvalidInputError, SignatureError

# Go's sumdb/note package documentation example.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT.encode()
    + b"\n\xe2\x80\x94 PeterNeumann "
    + b"x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# Ours: seed 00 01 .. 1f.
LOG_NAME = "example.com/provenance-log"
LOG_SKEY = "PRIVATE+KEY+example.com/provenance-log+34cdfbc9+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
LOG_VKEY = "example.com/provenance-log+34cdfbc9+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
WITNESS_VKEY = "witness.example/w1+484bc619+ASmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X"
CP_TEXT = "example.com/provenance-log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
LOG_SIG_LINE = (
    b"\xe2\x80\x94 example.com/provenance-log "
    b"NM37yW4KN2lj6ed0uGpku6C8xjXNoZH9JYQSUj6q25FCS22Rm4vYcDSxyIkqGsvhrBtCzUSQNKOJwUIOES/d4ot0IQk=\n"
)
WITNESS_SIG_LINE = (
    b"\xe2\x80\x94 witness.example/w1 "
    b"SEvGGUvsMLeyG83aOr52FRqdyokc2IG2aQUgAWARZ8FNd+dxd5wNixp/bFClwwvpMntZ6F4+qGHhFnqnm4BsuSyfHgY=\n"
)
COSIGNED = CP_TEXT.encode() + b"\n" + LOG_SIG_LINE + WITNESS_SIG_LINE


def log_signer() -> Signer:
    return Signer.from_seed(LOG_NAME, bytes(range(32)))


def witness_signer() -> Signer:
    return Signer.from_seed("witness.example/w1", bytes(range(32, 64)))


# --- golden vectors ---------------------------------------------------------------------------


def test_go_documentation_vector() -> None:
    signer = Signer.from_private_text(GO_SKEY)
    assert signer.private_text() == GO_SKEY
    assert signer.verifier().text() == GO_VKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    opened = open_note(GO_NOTE, [Verifier.from_text(GO_VKEY)])
    assert opened.text == GO_TEXT
    raw = base64.b64decode(GO_NOTE.rsplit(b" ", 1)[1])
    assert opened.signatures == (NoteSignature("PeterNeumann", bytes.fromhex("c74f20a3"), raw[4:]),)
    assert opened.unverified == ()


def test_fixed_seed_vector() -> None:
    log = log_signer()
    assert log.private_text() == LOG_SKEY
    assert log.verifier().text() == LOG_VKEY
    assert witness_signer().verifier().text() == WITNESS_VKEY
    assert sign_note(CP_TEXT, [log]) == CP_TEXT.encode() + b"\n" + LOG_SIG_LINE
    assert sign_note(CP_TEXT, [log, witness_signer()]) == COSIGNED


def test_key_id_is_sha256_of_name_newline_type_key() -> None:
    log = log_signer()
    pub = log.verifier().public_key
    want = hashlib.sha256(LOG_NAME.encode() + b"\n\x01" + pub).digest()[:4]
    assert log.key_id == log.verifier().key_id == key_id_for(LOG_NAME, pub) == want == bytes.fromhex("34cdfbc9")


# --- keys ---------------------------------------------------------------------------------


def test_generated_keys_round_trip() -> None:
    for name in ["a", "example.com/log", "\u00fcn\u00ef.example/\u03ba"]:
        signer = Signer.generate(name)
        again = Signer.from_private_text(signer.private_text())
        assert (again.name, again.key_id) == (signer.name, signer.key_id) == (name, signer.verifier().key_id)
        assert again.verifier() == signer.verifier() == Verifier.from_text(signer.verifier().text())
        assert len(signer.key_id) == 4
        assert Verifier.from_public_key(name, signer.verifier().public_key) == signer.verifier()
        msg = b"message"
        sig = signer.sign(msg)
        assert len(sig) == 64 and sig == again.sign(msg)
        assert signer.verifier().verify(msg, sig)
        assert not signer.verifier().verify(msg + b"!", sig)
        assert not signer.verifier().verify(msg, sig[:-1])
        assert not Signer.generate(name).verifier().verify(msg, sig)


def test_signer_repr_hides_the_private_key() -> None:
    signer = log_signer()
    secret = LOG_SKEY.rsplit("+", 1)[1]
    assert secret not in repr(signer) and secret not in str(signer)


BAD_NAMES = [
    "", "a+b", "+", "a b", " a", "a ", "a\tb", "a\nb", "a\rb", "a\x00b", "a\x1fb", "a\x85b", "a\u00a0b",
    "a\u1680b", "a\u2000b", "a\u2003b", "a\u200ab", "a\u2028b", "a\u2029b", "a\u202fb", "a\u205fb", "a\u3000b",
    "\ud800",
]  # fmt: skip
GOOD_NAMES = ["a", "example.com/log", "PeterNeumann", "\u00fc", "a\u200bb", "\u2014", "a=b/c_d-e.f~g", "x" * 1000]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_refused(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(FormatError):
        Signer.generate(name)
    pub = log_signer().verifier().public_key
    with pytest.raises(FormatError):
        Verifier.from_public_key(name, pub)
    with pytest.raises(FormatError):
        key_id_for(name, pub)
    # Even with a key ID that matches, a bad name does not parse.
    kid = hashlib.sha256(name.encode("utf-8", "surrogatepass") + b"\n\x01" + pub).digest()[:4]
    with pytest.raises(FormatError):
        Verifier.from_text(_key_text(name, kid, b"\x01" + pub))


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_accepted(name: str) -> None:
    assert valid_name(name)
    signer = Signer.generate(name)
    assert open_note(sign_note("t\n", [signer]), [Verifier.from_text(signer.verifier().text())]).text == "t\n"


def _key_text(name: str, key_id: bytes, data: bytes) -> str:
    return f"{name}+{key_id.hex()}+{base64.b64encode(data).decode()}"


def test_verifier_text_rejections() -> None:
    pub = log_signer().verifier().public_key
    kid = key_id_for(LOG_NAME, pub)
    good = _key_text(LOG_NAME, kid, b"\x01" + pub)
    assert Verifier.from_text(good).text() == good == LOG_VKEY
    bad = [
        "",
        LOG_NAME,
        f"{LOG_NAME}+{kid.hex()}",
        f"{LOG_NAME}+{kid.hex()}+",
        _key_text(LOG_NAME, b"\x00\x00\x00\x00", b"\x01" + pub),  # wrong key ID
        _key_text("example.com/other", kid, b"\x01" + pub),  # key ID of another name
        _key_text(LOG_NAME, key_id_for(LOG_NAME, pub[:31]), b"\x01" + pub[:31]),
        _key_text(LOG_NAME, key_id_for(LOG_NAME, pub + b"\x00"), b"\x01" + pub + b"\x00"),
        _key_text(LOG_NAME, kid, b"\x02" + pub),  # ECDSA and other types are not supported
        _key_text(LOG_NAME, kid, b""),
        _key_text(LOG_NAME, kid, pub),  # no type byte
        good.replace(kid.hex(), kid.hex().upper()),  # canonical lowercase hex only
        good.replace(kid.hex(), kid.hex()[:7]),
        good.replace(kid.hex(), "0x" + kid.hex()[2:]),
        good.replace(kid.hex(), kid.hex() + "0"),
        good[:-4] + "\n" + good[-4:],  # base64 with a line break
        good + "=",
        good + "\n",
        " " + good,
        good.replace("+", " + ", 1),
        "PRIVATE+KEY+" + good,
        LOG_SKEY,
    ]
    for text in bad:
        with pytest.raises(FormatError):
            Verifier.from_text(text)


def test_signer_text_rejections() -> None:
    assert Signer.from_private_text(LOG_SKEY).private_text() == LOG_SKEY
    seed_b64 = LOG_SKEY.rsplit("+", 1)[1]
    bad = [
        LOG_VKEY,
        LOG_SKEY.replace("PRIVATE+KEY+", "private+key+"),
        LOG_SKEY.replace("PRIVATE+KEY+", "PRIVATE+KEY+PRIVATE+KEY+"),
        LOG_SKEY.replace("34cdfbc9", "34cdfbca"),
        LOG_SKEY.replace("34cdfbc9", "34CDFBC9"),
        LOG_SKEY.replace(seed_b64, base64.b64encode(b"\x02" + bytes(range(32))).decode()),
        LOG_SKEY.replace(seed_b64, base64.b64encode(b"\x01" + bytes(range(31))).decode()),
        LOG_SKEY.replace(seed_b64, base64.b64encode(bytes(range(32))).decode()),
        LOG_SKEY + "\n",
        LOG_SKEY.replace(LOG_NAME, "example.com/other"),
    ]
    for text in bad:
        with pytest.raises(FormatError):
            Signer.from_private_text(text)


def _char_manglings(text: str) -> list[str]:
    out = []
    for i, c in enumerate(text):
        for r in {chr(ord(c) ^ 1), chr(ord(c) ^ 0x20), c.swapcase(), "+", " ", "/", "\n", ""}:
            out.append(text[:i] + r + text[i + 1 :])
        out.append(text[:i] + c + text[i:])
    return [m for m in dict.fromkeys(out) if m != text]


def test_every_mangled_verifier_key_is_refused() -> None:
    mangled = _char_manglings(LOG_VKEY)
    assert len(mangled) > 6 * len(LOG_VKEY)
    for text in mangled:
        with pytest.raises(FormatError):
            Verifier.from_text(text)


def test_every_mangled_signer_key_is_refused() -> None:
    for text in _char_manglings(LOG_SKEY):
        with pytest.raises(FormatError):
            Signer.from_private_text(text)


@given(st.text(max_size=200))
def test_key_parsers_raise_only_format_error(text: str) -> None:
    for parse in (Verifier.from_text, Signer.from_private_text):
        with contextlib.suppress(FormatError):
            parse(text)


# --- opening notes --------------------------------------------------------------------------


def test_unknown_signatures_are_ignored_and_kept_apart() -> None:
    log, witness = log_signer().verifier(), witness_signer().verifier()
    opened = open_note(COSIGNED, [log])
    assert opened.text == CP_TEXT
    assert [(s.name, s.key_id) for s in opened.signatures] == [(log.name, log.key_id)]
    assert [(s.name, s.key_id) for s in opened.unverified] == [(witness.name, witness.key_id)]
    both = open_note(COSIGNED, [witness, log])
    assert [s.name for s in both.signatures] == [log.name, witness.name] and both.unverified == ()
    only_witness = open_note(COSIGNED, [witness])
    assert [s.name for s in only_witness.signatures] == [witness.name]
    assert isinstance(opened, Note)


def test_no_known_signature_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(COSIGNED, [])
    with pytest.raises(SignatureError):
        open_note(COSIGNED, [Signer.generate("unrelated").verifier()])


def test_same_name_other_key_is_unknown_not_failed() -> None:
    """A key sharing only the name (or only the key ID) with a known key is an unknown key (signed-note)."""
    impostor = Signer.generate(LOG_NAME)
    note = sign_note(CP_TEXT, [impostor, log_signer()])
    opened = open_note(note, [log_signer().verifier()])
    assert [s.key_id for s in opened.unverified] == [impostor.key_id]
    with pytest.raises(SignatureError):
        open_note(sign_note(CP_TEXT, [impostor]), [log_signer().verifier()])
    # Same key ID, another name: a signature line claiming the log's key ID under a different name.
    sig = base64.b64encode(log_signer().key_id + bytes(64)).decode()
    forged = COSIGNED + f"\u2014 other.example/name {sig}\n".encode()
    assert [s.name for s in open_note(forged, [log_signer().verifier()]).unverified][-1] == "other.example/name"


def test_a_failing_known_signature_rejects_the_whole_note() -> None:
    log = log_signer()
    other_text = sign_note("other text\n", [log]).split(b"\n\n")[1]
    # A valid witness signature does not rescue a bad log signature.
    note = CP_TEXT.encode() + b"\n" + other_text + WITNESS_SIG_LINE
    with pytest.raises(SignatureError):
        open_note(note, [log.verifier(), witness_signer().verifier()])
    # A bad repeated signature by a known key is not skipped.
    with pytest.raises(SignatureError):
        open_note(CP_TEXT.encode() + b"\n" + LOG_SIG_LINE + other_text, [log.verifier()])


def test_repeated_signatures_are_recorded_once() -> None:
    note = COSIGNED + LOG_SIG_LINE + WITNESS_SIG_LINE
    opened = open_note(note, [log_signer().verifier()])
    assert len(opened.signatures) == 1 and len(opened.unverified) == 1


def test_ambiguous_verifiers_are_refused() -> None:
    log = log_signer().verifier()
    twin = Signer.generate(LOG_NAME).verifier()
    twin._key_id = log.key_id  # a name and key ID collision (2**-32 per key pair); forced here
    with pytest.raises(InvalidInputError):
        open_note(COSIGNED, [log, twin])
    assert open_note(COSIGNED, [log, Verifier.from_text(LOG_VKEY)]).text == CP_TEXT  # same key twice is fine


MALFORMED = [
    b"",
    b"\n",
    CP_TEXT.encode(),  # no signatures
    CP_TEXT.encode() + b"\n",  # blank line but no signature lines
    CP_TEXT.encode() + LOG_SIG_LINE,  # no blank line
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE[:-1],  # no final newline
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE + b"\n",  # trailing blank line
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"\xe2\x80\x94", b"-"),
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"\xe2\x80\x94", b"\xe2\x80\x93"),  # en dash
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"\xe2\x80\x94 ", b"\xe2\x80\x94"),
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"log ", b"log  "),
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"log ", b"log"),
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"=\n", b"\n"),  # missing padding
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"=\n", b"= \n"),
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"Qk=\n", b"Ql=\n"),  # non-canonical base64
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"/", b"_"),  # URL alphabet
    CP_TEXT.encode() + b"\n" + b"\xe2\x80\x94 " + LOG_NAME.encode() + b" \n",  # empty signature
    CP_TEXT.encode() + b"\n" + b"\xe2\x80\x94 " + LOG_NAME.encode() + b" NM37yQ==\n",  # 4 bytes: key ID only
    CP_TEXT.encode() + b"\n" + LOG_SIG_LINE.replace(b"example.com/provenance-log", b"a+b"),
    CP_TEXT.encode().replace(b"5", b"5\r") + b"\n" + LOG_SIG_LINE,  # CR
    CP_TEXT.encode().replace(b"5", b"5\t") + b"\n" + LOG_SIG_LINE,
    CP_TEXT.encode().replace(b"5", b"\x00") + b"\n" + LOG_SIG_LINE,
    CP_TEXT.encode().replace(b"5", b"\xff") + b"\n" + LOG_SIG_LINE,  # invalid UTF-8
    CP_TEXT.encode().replace(b"5", b"\xed\xa0\x80") + b"\n" + LOG_SIG_LINE,  # encoded surrogate
    CP_TEXT.encode().replace(b"5", b"\xc0\xb5") + b"\n" + LOG_SIG_LINE,  # overlong
    b"\xef\xbb\xbf" + COSIGNED.replace(b"\n", b"\r\n"),
]


@pytest.mark.parametrize("note", MALFORMED)
def test_malformed_notes_are_format_errors(note: bytes) -> None:
    with pytest.raises(FormatError):
        open_note(note, [log_signer().verifier()])


def test_open_refuses_text_input() -> None:
    with pytest.raises(FormatError):
        open_note(COSIGNED.decode(), [log_signer().verifier()])  # type: ignore[arg-type]


def test_signature_count_limit() -> None:
    log = log_signer()
    strangers = b"".join(
        f"\u2014 stranger{i}.example {base64.b64encode(bytes(68)).decode()}\n".encode() for i in range(MAX_SIGNATURES)
    )
    at_limit = CP_TEXT.encode() + b"\n" + LOG_SIG_LINE + strangers[: strangers.index(b"stranger99.example") - 4]
    opened = open_note(at_limit, [log.verifier()])
    assert len(opened.signatures) + len(opened.unverified) == MAX_SIGNATURES
    over = CP_TEXT.encode() + b"\n" + LOG_SIG_LINE + strangers
    with pytest.raises(FormatError):
        open_note(over, [log.verifier()])
    assert MAX_SIGNATURES >= 16  # the spec's floor


def test_size_limit() -> None:
    log = log_signer()
    overhead = len(sign_note("\n", [log])) - 1
    text = "x" * (MAX_NOTE_SIZE - overhead - 1) + "\n"
    note = sign_note(text, [log])
    assert len(note) == MAX_NOTE_SIZE
    assert open_note(note, [log.verifier()]).text == text
    with pytest.raises(InvalidInputError):
        sign_note("x" + text, [log])
    bigger = b"x" + note
    with pytest.raises(FormatError):
        open_note(bigger, [log.verifier()])


def test_every_mangled_byte_is_refused_or_harmless() -> None:
    """Change, delete or repeat any byte of a cosigned note: never accept an altered text or signer."""
    log = log_signer().verifier()
    outcomes = {"accepted": 0, "format": 0, "signature": 0}
    for i in range(len(COSIGNED)):
        for mangled in {
            COSIGNED[:i] + bytes([COSIGNED[i] ^ 0x01]) + COSIGNED[i + 1 :],
            COSIGNED[:i] + bytes([COSIGNED[i] ^ 0x40]) + COSIGNED[i + 1 :],
            COSIGNED[:i] + b"\n" + COSIGNED[i + 1 :],
            COSIGNED[:i] + COSIGNED[i + 1 :],
            COSIGNED[:i] + COSIGNED[i : i + 1] * 2 + COSIGNED[i + 1 :],
        } - {COSIGNED}:
            try:
                opened = open_note(mangled, [log])
            except FormatError:
                outcomes["format"] += 1
                continue
            except SignatureError:
                outcomes["signature"] += 1
                continue
            outcomes["accepted"] += 1
            assert opened.text == CP_TEXT, mangled
            assert [(s.name, s.key_id) for s in opened.signatures] == [(log.name, log.key_id)]
            assert mangled.startswith(CP_TEXT.encode() + b"\n" + LOG_SIG_LINE), "only the witness line may change"
    assert outcomes["accepted"] and outcomes["format"] and outcomes["signature"]


def test_mangled_verifier_never_verifies() -> None:
    for text in _char_manglings(LOG_VKEY):
        try:
            verifier = Verifier.from_text(text)
        except FormatError:
            continue
        with pytest.raises(SignatureError):
            open_note(COSIGNED, [verifier])


@given(st.binary(max_size=400))
def test_open_raises_only_our_errors(data: bytes) -> None:
    for note in (data, COSIGNED[: len(data) % len(COSIGNED)] + data):
        with contextlib.suppress(FormatError, SignatureError):
            open_note(note, [log_signer().verifier()])


# --- signing --------------------------------------------------------------------------------

note_texts = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters=[chr(c) for c in range(32) if c != 10]),
    max_size=300,
).map(lambda t: t + "\n")


@given(note_texts, st.integers(1, 4))
def test_sign_open_round_trip(text: str, count: int) -> None:
    signers = [log_signer(), witness_signer(), *(Signer.from_seed(f"s{i}", bytes([i]) * 32) for i in range(count))]
    note = sign_note(text, signers)
    opened = open_note(note, [s.verifier() for s in signers[::2]])
    assert opened.text == text
    assert [s.name for s in opened.signatures] == [s.name for s in signers[::2]]
    assert [s.name for s in opened.unverified] == [s.name for s in signers[1::2]]
    assert sign_note(text, signers) == note  # deterministic


@pytest.mark.parametrize(
    "text", ["", "no newline", "a\r\n", "a\tb\n", "a\x00\n", "a\x1b[31m\n", "\ud800\n", b"bytes\n"]
)
def test_sign_refuses_bad_text(text: str) -> None:
    with pytest.raises(FormatError):
        sign_note(text, [log_signer()])


def test_sign_refuses_bad_signer_lists() -> None:
    with pytest.raises(InvalidInputError):
        sign_note("t\n", [])
    with pytest.raises(InvalidInputError):
        sign_note("t\n", [log_signer(), log_signer()])
    many = [Signer.from_seed(f"s{i}", bytes([i]) * 32) for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(InvalidInputError):
        sign_note("t\n", many)
    assert open_note(sign_note("t\n", many[:MAX_SIGNATURES]), [many[0].verifier()]).text == "t\n"


def test_texts_with_blank_lines_and_dashes_round_trip() -> None:
    for text in ["\n", "\n\n", "a\n\nb\n", "a\n\n\n", "\u2014 not a signature\n", "\u2014 x AAAA\n\n"]:
        assert open_note(sign_note(text, [log_signer()]), [log_signer().verifier()]).text == text


def test_small_order_and_non_canonical_log_keys_are_refused() -> None:
    """Under a small-order "public key" anyone forges signatures (R = identity, S = 0): never trust one."""
    from client.core.note import Verifier

    identity = (1).to_bytes(32, "little")
    with pytest.raises(FormatError, match="small order"):
        Verifier("log.example/a", identity)
    non_canonical = ((1 << 255) - 19 + 1).to_bytes(32, "little")  # y = p + 1: not reduced
    with pytest.raises(FormatError, match="canonical"):
        Verifier("log.example/a", non_canonical)
