"""The key-status note (client/core/bundle/keystatus.py): canonical text, bounds, signature and binding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.bundle.keystatus import (
    HEADER,
    KeyStatusError,
    KeyStatusNote,
    check_against_log,
    check_identity_records,
    make_key_status,
    open_key_status,
    sign_key_status,
)
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Signer
from client.errors import FormatError, ProvenanceError

ORIGIN = "example.com/keystatus-test"
CP = Checkpoint(ORIGIN, 10, bytes(range(32)))
SIGNER = Signer.generate(ORIGIN)


def _note() -> KeyStatusNote:
    return make_key_status(CP, {"lab-b": [7, 2], "lab-a": [0, 9]})


def test_text_round_trips_and_is_sorted() -> None:
    note = _note()
    assert note.events == (("lab-a", (0, 9)), ("lab-b", (2, 7)))
    text = note.to_text()
    assert text.startswith(HEADER + "\nlog example.com/keystatus-test\nsize 10\nroot ")
    assert text.endswith("identity lab-a 0 9\nidentity lab-b 2 7\n")
    assert KeyStatusNote.from_text(text) == note


@pytest.mark.parametrize("events", [
    (("lab-b", (1,)), ("lab-a", (2,))),  # unsorted names
    (("lab-a", (1,)), ("lab-a", (2,))),  # duplicate name
    (("lab-a", ()),),  # no events
    (("lab-a", (3, 3)),),  # not strictly increasing
    (("lab-a", (10,)),),  # not below the size
    (("lab a", (1,)),),  # not an identity name
])
def test_invalid_statements_are_refused(events: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
    with pytest.raises(FormatError):
        KeyStatusNote(ORIGIN, 10, bytes(32), events)


@settings(max_examples=200)
@given(st.integers(0, 200), st.integers(0, 255))
def test_every_changed_byte_of_the_text_is_refused_or_changes_the_statement(at: int, xor: int) -> None:
    text = _note().to_text().encode()
    i = at % len(text)
    mangled = text[:i] + bytes([text[i] ^ (xor or 1)]) + text[i + 1 :]
    try:
        parsed = KeyStatusNote.from_text(mangled.decode("utf-8"))
    except (FormatError, UnicodeDecodeError):
        return
    assert parsed != _note()


@pytest.mark.parametrize("text", [
    f"{HEADER}\nlog {ORIGIN}\nsize 010\nroot {'A' * 43}=\n",  # non-canonical size
    f"{HEADER}\nlog {ORIGIN}\nsize 10\nroot {'A' * 43}=\nidentity lab-a 01\n",  # non-canonical index
    f"{HEADER}\nlog {ORIGIN}\nsize 10\nroot {'A' * 43}=\nidentity lab-a  1\n",  # two spaces
    f"{HEADER}\nlog {ORIGIN}\nsize 10\nroot {'A' * 43}=\nidentity lab-a\n",  # no index
    f"{HEADER}\nlog {ORIGIN}\nsize 10\nroot {'A' * 43}=",  # no final newline
    f"{ORIGIN}\n10\n{'A' * 43}=\n",  # a checkpoint
])
def test_non_canonical_texts_are_refused(text: str) -> None:
    with pytest.raises(FormatError):
        KeyStatusNote.from_text(text)


def test_open_checks_signature_and_checkpoint() -> None:
    signed = sign_key_status(_note(), SIGNER)
    assert open_key_status(signed, SIGNER.verifier(), CP) == _note()
    with pytest.raises(KeyStatusError, match="not of the bundle's checkpoint"):
        open_key_status(signed, SIGNER.verifier(), Checkpoint(ORIGIN, 11, CP.root))
    with pytest.raises(KeyStatusError):
        open_key_status(sign_key_status(_note(), Signer.generate(ORIGIN)), SIGNER.verifier(), CP)
    with pytest.raises(ProvenanceError):  # never a checkpoint, though the same key signs it
        open_checkpoint(signed, SIGNER.verifier())


def test_bundle_identities_must_match_exactly() -> None:
    note = _note()
    check_identity_records(note, [(1, 0, "lab-a"), (2, 2, "lab-b"), (3, 7, "lab-b"), (4, 9, "lab-a")])
    with pytest.raises(KeyStatusError, match="left out") as info:
        check_identity_records(note, [(1, 0, "lab-a"), (2, 2, "lab-b"), (3, 7, "lab-b")])
    assert info.value.part == "key_status"
    with pytest.raises(KeyStatusError, match="does not list") as info:
        check_identity_records(note, [(1, 0, "lab-a"), (2, 2, "lab-b"), (3, 7, "lab-b"), (4, 9, "lab-a"),
                                      (5, 8, "lab-c")])
    assert info.value.part == "records[5]"
    with pytest.raises(KeyStatusError, match="does not list"):
        check_identity_records(note, [(1, 9, "lab-b")])  # an index listed, but for another name


def test_monitor_check_against_the_log() -> None:
    log = [(0, "lab-a"), (2, "lab-b"), (7, "lab-b"), (9, "lab-a"), (12, "lab-a")]  # 12 is after the size
    check_against_log(_note(), log)
    with pytest.raises(KeyStatusError, match="the log signed"):
        check_against_log(_note(), log + [(5, "lab-a")])
