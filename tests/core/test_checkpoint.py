"""client/core/checkpoint.py: C2SP tlog-checkpoint texts and their signed notes (https://c2sp.org/tlog-checkpoint)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.checkpoint import MAX_TREE_SIZE, Checkpoint, SignedCheckpoint, open_checkpoint, sign_checkpoint
from client.core.merkle import EMPTY_ROOT
from client.core.note import Signer, open_note, sign_note
from client.errors import FormatError, InvalidInputError, SignatureError

ROOT = bytes(range(32))
ROOT_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
LOG_NAME = "example.com/provenance-log"
# Golden: the fixed-seed log key of tests/core/test_note.py signing (LOG_NAME, 5, ROOT); Go signs the same bytes.
GOLDEN_NOTE = (
    b"example.com/provenance-log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n"
    b"\xe2\x80\x94 example.com/provenance-log "
    b"NM37yW4KN2lj6ed0uGpku6C8xjXNoZH9JYQSUj6q25FCS22Rm4vYcDSxyIkqGsvhrBtCzUSQNKOJwUIOES/d4ot0IQk=\n"
)


def log_signer() -> Signer:
    return Signer.from_seed(LOG_NAME, bytes(range(32)))


def test_text_format() -> None:
    assert Checkpoint(LOG_NAME, 5, ROOT).to_text() == f"{LOG_NAME}\n5\n{ROOT_B64}\n"
    assert Checkpoint("o", 0, ROOT, ("a", "b c")).to_text() == f"o\n0\n{ROOT_B64}\na\nb c\n"


def test_spec_example_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.from_text(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert cp.to_text() == text


def test_golden_signed_checkpoint() -> None:
    cp = Checkpoint(LOG_NAME, 5, ROOT)
    assert sign_checkpoint(cp, log_signer()) == GOLDEN_NOTE
    assert open_checkpoint(GOLDEN_NOTE, log_signer().verifier()) == cp
    signed = SignedCheckpoint.open(GOLDEN_NOTE, log_signer().verifier())
    assert signed == SignedCheckpoint(cp, GOLDEN_NOTE)


def test_empty_tree_and_largest_size() -> None:
    for cp in [Checkpoint("o", 0, EMPTY_ROOT), Checkpoint("o", MAX_TREE_SIZE, ROOT)]:
        assert Checkpoint.from_text(cp.to_text()) == cp
    assert MAX_TREE_SIZE == 2**63 - 1


BAD_SIZES = [
    "", "00", "01", "007", "-1", "-0", "+1", " 1", "1 ", "1\t", "0x10", "1_000", "1e3", "1.0",
    "\uff11", "\u0661", "\u00b9", "9223372036854775808", "18446744073709551616", "9" * 40,
]  # fmt: skip


@pytest.mark.parametrize("size", BAD_SIZES)
def test_non_canonical_sizes_refused(size: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(f"o\n{size}\n{ROOT_B64}\n")


BAD_ROOTS = [
    "",
    ROOT_B64.rstrip("="),  # missing padding
    ROOT_B64 + "=",
    ROOT_B64[:-2] + "9=",  # non-canonical: unused low bits set ("8" -> "9")
    base64.b64encode(bytes(31)).decode(),
    base64.b64encode(bytes(33)).decode(),
    base64.b64encode(bytes(64)).decode(),
    base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # URL alphabet
    " " + ROOT_B64,
    ROOT_B64 + " ",
    ROOT_B64[:20] + "\u00e9" + ROOT_B64[21:],
    ROOT.hex(),
]


@pytest.mark.parametrize("root", BAD_ROOTS)
def test_bad_roots_refused(root: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(f"o\n1\n{root}\n")


BAD_TEXTS = [
    "",
    "\n",
    f"o\n1\n{ROOT_B64}",  # no final newline
    "o\n1\n",
    f"\n1\n{ROOT_B64}\n",  # empty origin
    f"o\n1\n{ROOT_B64}\n\n",  # empty extension line
    f"o\n1\n{ROOT_B64}\next\n\n",
    f"o\n1\n{ROOT_B64}\n\next\n",
    f"o\r\n1\r\n{ROOT_B64}\r\n",
    f"o\t\n1\n{ROOT_B64}\n",
    f"o\n1\n{ROOT_B64}\nbad\x00ext\n",
    f"\ud800\n1\n{ROOT_B64}\n",
    b"o\n1\n".decode() + ROOT_B64,
    "o\n" * 4,
]


@pytest.mark.parametrize("text", BAD_TEXTS)
def test_bad_texts_refused(text: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(text)


def test_oversized_text_refused() -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(f"o\n1\n{ROOT_B64}\n" + "x" * (1 << 20) + "\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"origin": "a\rb"},
        {"origin": 5},
        {"size": -1},
        {"size": MAX_TREE_SIZE + 1},
        {"size": True},
        {"size": "5"},
        {"size": 5.0},
        {"root": bytes(31)},
        {"root": bytes(33)},
        {"root": bytearray(32)},
        {"root": ROOT_B64},
        {"extensions": ["a"]},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
        {"extensions": (b"a",)},
    ],
)
def test_constructor_validates(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"origin": "o", "size": 1, "root": ROOT, "extensions": ()}
    fields.update(kwargs)
    with pytest.raises(InvalidInputError):
        Checkpoint(**fields)  # type: ignore[arg-type]


def test_checkpoint_is_frozen() -> None:
    cp = Checkpoint("o", 1, ROOT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.size = 2  # type: ignore[misc]


origins = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters=[chr(c) for c in range(32)]), min_size=1
)
checkpoints = st.builds(
    Checkpoint,
    origin=origins,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(origins, max_size=4).map(tuple),
)


@given(checkpoints)
def test_text_round_trip(cp: Checkpoint) -> None:
    text = cp.to_text()
    assert Checkpoint.from_text(text) == cp
    assert Checkpoint.from_text(text).to_text() == text


@given(checkpoints)
def test_signed_round_trip(cp: Checkpoint) -> None:
    signer = Signer.from_seed("log.example", bytes(32))
    note = sign_checkpoint(cp, signer)
    assert open_checkpoint(note, signer.verifier(), origin=cp.origin) == cp


@given(st.text(max_size=200))
def test_from_text_raises_only_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        Checkpoint.from_text(text)


@given(st.binary(max_size=300))
def test_open_raises_only_our_errors(data: bytes) -> None:
    for note in (data, GOLDEN_NOTE[: len(data) % len(GOLDEN_NOTE)] + data):
        with contextlib.suppress(FormatError, SignatureError):
            open_checkpoint(note, log_signer().verifier())


def test_origin_must_match_the_log() -> None:
    log = log_signer()
    foreign = sign_checkpoint(Checkpoint("example.com/other-log", 5, ROOT), log)
    with pytest.raises(SignatureError):
        open_checkpoint(foreign, log.verifier())
    with pytest.raises(SignatureError):
        open_checkpoint(GOLDEN_NOTE, log.verifier(), origin="example.com/other-log")
    assert open_checkpoint(foreign, log.verifier(), origin="example.com/other-log").origin == "example.com/other-log"


def test_wrong_key_refused() -> None:
    impostor = Signer.generate(LOG_NAME)  # same name, another key
    with pytest.raises(SignatureError):
        open_checkpoint(sign_checkpoint(Checkpoint(LOG_NAME, 5, ROOT), impostor), log_signer().verifier())
    with pytest.raises(SignatureError):
        open_checkpoint(GOLDEN_NOTE, impostor.verifier())


def test_witness_cosignatures_are_ignored() -> None:
    cp = Checkpoint(LOG_NAME, 5, ROOT)
    witness = Signer.generate("witness.example/w1")
    note = sign_note(cp.to_text(), [witness, log_signer()])
    assert open_checkpoint(note, log_signer().verifier()) == cp
    with pytest.raises(SignatureError):
        open_checkpoint(sign_note(cp.to_text(), [witness]), log_signer().verifier())


def test_signed_note_that_is_not_a_checkpoint() -> None:
    for text in ["hello\n", f"{LOG_NAME}\n05\n{ROOT_B64}\n", f"{LOG_NAME}\n5\n{ROOT_B64}\n\n"]:
        with pytest.raises(FormatError):
            open_checkpoint(sign_note(text, [log_signer()]), log_signer().verifier())


def test_every_mangled_byte_is_refused_or_harmless() -> None:
    verifier = log_signer().verifier()
    want = Checkpoint(LOG_NAME, 5, ROOT)
    refused = 0
    for i in range(len(GOLDEN_NOTE)):
        for mangled in {
            GOLDEN_NOTE[:i] + bytes([GOLDEN_NOTE[i] ^ 0x01]) + GOLDEN_NOTE[i + 1 :],
            GOLDEN_NOTE[:i] + GOLDEN_NOTE[i + 1 :],
            GOLDEN_NOTE[:i] + GOLDEN_NOTE[i : i + 1] * 2 + GOLDEN_NOTE[i + 1 :],
        } - {GOLDEN_NOTE}:
            try:
                got = open_checkpoint(mangled, verifier)
            except (FormatError, SignatureError):
                refused += 1
                continue
            assert got == want, mangled
    assert refused >= 3 * len(GOLDEN_NOTE) - 3


def test_signed_checkpoint_open_keeps_the_exact_note() -> None:
    witness = Signer.generate("witness.example/w1")
    note = sign_note(Checkpoint(LOG_NAME, 9, ROOT).to_text(), [log_signer(), witness])
    signed = SignedCheckpoint.open(note, log_signer().verifier())
    assert signed.note == note and signed.checkpoint.size == 9
    assert open_note(signed.note, [witness.verifier()]).text == signed.checkpoint.to_text()
