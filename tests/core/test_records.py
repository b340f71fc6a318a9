"""Records: canonical encoding, strict parsing, signatures, ids."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.records import (
    Attestation,
    Claim,
    Dataset,
    DatasetParent,
    DatasetRelation,
    DatasetRole,
    Digest,
    DigestAlgorithm,
    Dispute,
    FingerprintCommitment,
    Identity,
    IdentityEvent,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    OmsAttachment,
    Record,
    RecordSigner,
    TrainingData,
    decode_body,
    encode_body,
    endorse_rotation,
    key_text,
    parse_entry,
    parse_id,
    parse_key,
    sign_record,
)
from client.core.records.encoding import VERSION
from client.errors import FormatError, InvalidInputError, SignatureError

SIGNER = RecordSigner.generate()
NEW = RecordSigner.generate()
D1 = bytes(range(32))
D2 = bytes(range(1, 33))


def _statements() -> list[object]:
    return [
        Identity(IdentityEvent.REGISTER, "lab-a", SIGNER.public_key),
        Identity(IdentityEvent.ROTATE, "lab-a", NEW.public_key, endorse_rotation(NEW, "lab-a", SIGNER.public_key)),
        Identity(IdentityEvent.REVOKE, "lab.b@x/y+z", D1),
        Dataset("web", "1", D1, 10),
        Dataset("web-filtered", "2024-01", D2, 2**40, "CC-BY-4.0", ("crawl 2024", "ünïcode"),
                (DatasetParent(D1, DatasetRelation.FILTERED), DatasetParent(D2, DatasetRelation.MIXED))),
        ModelCheckpoint("m", "", 0, D1),
        ModelCheckpoint("llama-x", "run-7", 1000, D2, "safetensors",
                   (TrainingData(D1, DatasetRole.PRETRAINING),),
                   (ModelParent(D2, ModelRelation.QUANTIZATION),),
                   Digest(DigestAlgorithm.SHA256, D1),
                   ModelCheckpoint.sorted_metadata({"z": "1", "a": "multi\nline"})),
        ModelCheckpoint("m", "", 1, D1, fingerprint=FingerprintCommitment(D2, published=True)),
        ModelCheckpoint("m", "r", 2, D1, "gguf", fingerprint=FingerprintCommitment(D1, published=False)),
        Attestation(Claim.DESCENDS_FROM, D1, D2, Digest(DigestAlgorithm.BLAKE3, D2), "because"),
        Attestation(Claim.WEIGHTS_MATCH_MANIFEST, D1, D1),
        Attestation(Claim.OMS_SIGNATURE, D1, D2, Digest(DigestAlgorithm.SHA256, D1), "oms",
                    OmsAttachment(b'{"x": 1}', b"PEM")),
        Dispute(D1, "not ours", None),
    ]


@pytest.mark.parametrize("statement", _statements(), ids=lambda s: type(s).__name__)
def test_round_trip_and_signature(statement: object) -> None:
    rec = Record(statement, SIGNER.public_key, 1_700_000_000)  # type: ignore[arg-type]
    signed = sign_record(rec, SIGNER)
    again = parse_entry(signed.entry)
    assert again == signed
    assert again.record == rec
    assert encode_body(again.record) == signed.body
    assert signed.id == hashlib.sha256(b"\x00" + signed.entry).digest()
    again.verify()


def test_encoding_is_deterministic_and_golden() -> None:
    rec = Record(Dataset("web", "1", D1, 10), D2, 5)
    body = encode_body(rec)
    # Golden: magic, version, kind, signer, timestamp, name, version, manifest, size, license, 0 sources, 0 parents.
    want = b"PLR\x01\x02" + D2 + b"\x05" + b"\x03web" + b"\x011" + D1 + b"\x0a" + b"\x00" + b"\x00" + b"\x00"
    assert body == want
    assert encode_body(rec) == body


def _signed_bodies() -> list[bytes]:
    return [encode_body(Record(s, SIGNER.public_key, 3)) for s in _statements()]  # type: ignore[arg-type]


@pytest.mark.parametrize("body", _signed_bodies())
def test_every_truncation_is_refused(body: bytes) -> None:
    for n in range(len(body)):
        with pytest.raises(FormatError):
            decode_body(body[:n])


@pytest.mark.parametrize("body", _signed_bodies())
def test_trailing_bytes_refused(body: bytes) -> None:
    with pytest.raises(FormatError, match="unexpected bytes"):
        decode_body(body + b"\x00")


@pytest.mark.parametrize("body", _signed_bodies())
def test_every_byte_flip_is_refused_or_changes_the_record(body: bytes) -> None:
    original = decode_body(body)
    for i in range(len(body)):
        mangled = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        try:
            got = decode_body(mangled)
        except FormatError:
            continue
        # Accepted mangles are different records that re-encode to exactly the mangled bytes.
        assert got != original
        assert encode_body(got) == mangled


def test_unknown_version_and_kind_refused() -> None:
    body = encode_body(Record(Dataset("web", "1", D1, 10), D2, 5))
    with pytest.raises(FormatError, match="unsupported record format version 2"):
        decode_body(body[:3] + bytes([VERSION + 1]) + body[4:])
    with pytest.raises(FormatError, match="unknown record kind 9"):
        decode_body(body[:4] + b"\x09" + body[5:])
    with pytest.raises(FormatError, match="bad magic"):
        decode_body(b"XYZ" + body[3:])


def test_non_minimal_varint_refused() -> None:
    body = encode_body(Record(Dataset("web", "1", D1, 10), D2, 5))
    i = 5 + 32
    assert body[i] == 5
    with pytest.raises(FormatError, match="not minimally encoded"):
        decode_body(body[:i] + b"\x85\x00" + body[i + 1 :])


def test_unknown_enum_code_refused() -> None:
    body = encode_body(Record(Identity(IdentityEvent.REGISTER, "lab", D1), D2, 5))
    i = 5 + 32 + 1
    with pytest.raises(FormatError, match="identity event has unknown code 4"):
        decode_body(body[:i] + b"\x04" + body[i + 1 :])


def test_unknown_fingerprint_mode_refused() -> None:
    body = encode_body(Record(ModelCheckpoint("m", "", 1, D1, fingerprint=FingerprintCommitment(D2, True)), D2, 5))
    i = len(body) - 33  # the mode byte, before the 32-byte digest
    assert body[i] == 1
    decoded = decode_body(body[:i] + b"\x02" + body[i + 1 :]).statement
    assert isinstance(decoded, ModelCheckpoint) and decoded.fingerprint == FingerprintCommitment(D2, False)
    with pytest.raises(FormatError, match="fingerprint mode has unknown code 3"):
        decode_body(body[:i] + b"\x03" + body[i + 1 :])
    with pytest.raises(InvalidInputError, match="fingerprint digest must be 32 bytes"):
        FingerprintCommitment(b"x", True)


def test_unsorted_metadata_refused_on_parse() -> None:
    cp = ModelCheckpoint("m", "", 1, D1, metadata=(("a", "1"), ("b", "2")))
    body = encode_body(Record(cp, D2, 0))
    swapped = body.replace(b"\x01a\x011\x01b\x012", b"\x01b\x012\x01a\x011")
    with pytest.raises(FormatError, match="sorted"):
        decode_body(swapped)


def test_invalid_utf8_and_control_refused() -> None:
    body = encode_body(Record(Dataset("web", "1", D1, 10), D2, 5))
    with pytest.raises(FormatError, match="UTF-8"):
        decode_body(body.replace(b"\x03web", b"\x03w\xffb"))
    with pytest.raises(FormatError, match="control"):
        decode_body(body.replace(b"\x03web", b"\x03w\nb"))


def test_constructors_validate() -> None:
    with pytest.raises(InvalidInputError):
        Identity(IdentityEvent.REGISTER, "-bad", D1)
    with pytest.raises(InvalidInputError):
        Dataset("", "1", D1, 1)
    with pytest.raises(InvalidInputError):
        Dataset("x", "1", D1[:31], 1)
    with pytest.raises(InvalidInputError):
        Dataset("x", "1", D1, -1)
    with pytest.raises(InvalidInputError, match="same record twice"):
        twice = (ModelParent(D2, ModelRelation.MERGE), ModelParent(D2, ModelRelation.MERGE))
        ModelCheckpoint("m", "", 0, D1, parents=twice)
    with pytest.raises(InvalidInputError, match="itself"):
        Attestation(Claim.DESCENDS_FROM, D1, D1)
    with pytest.raises(InvalidInputError, match="one of"):
        ModelRelation.parse("bogus")


def test_bad_signature_refused() -> None:
    signed = sign_record(Record(Dataset("web", "1", D1, 10), SIGNER.public_key, 5), SIGNER)
    bad = signed.entry[:-1] + bytes([signed.entry[-1] ^ 1])
    with pytest.raises(SignatureError):
        parse_entry(bad).verify()
    other = RecordSigner.generate()
    with pytest.raises(InvalidInputError):
        sign_record(Record(Dataset("web", "1", D1, 10), other.public_key, 5), SIGNER)


def test_signature_is_domain_separated() -> None:
    rec = Record(Dataset("web", "1", D1, 10), SIGNER.public_key, 5)
    signed = sign_record(rec, SIGNER)
    raw = SIGNER._key.sign(signed.body)  # a signature over the bare body, no context
    with pytest.raises(SignatureError):
        parse_entry(signed.body + raw).verify()


def test_key_and_id_text() -> None:
    assert parse_key(key_text(D1)) == D1
    for bad in ["ed25519:", "ed25519:AAAA", "x" + key_text(D1), key_text(D1) + "="]:
        with pytest.raises(InvalidInputError):
            parse_key(bad)
    assert parse_id(D1.hex()) == D1
    with pytest.raises(InvalidInputError):
        parse_id("00")


def test_pem_round_trip() -> None:
    again = RecordSigner.from_pem(SIGNER.to_pem())
    assert again.public_key == SIGNER.public_key
    with pytest.raises(FormatError):
        RecordSigner.from_pem(b"garbage")
    assert "PRIVATE" not in repr(SIGNER)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_entry(data)


@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: not any(ord(c) < 32 or ord(c) == 127 for c in s)),
    step=st.integers(0, 2**63 - 1),
    meta=st.dictionaries(st.text("abc", min_size=1, max_size=5), st.text(max_size=10), max_size=5),
)
def test_checkpoint_round_trip_property(name: str, step: int, meta: dict[str, str]) -> None:
    try:
        cp = ModelCheckpoint(name, "r", step, D1, metadata=ModelCheckpoint.sorted_metadata(meta))
    except InvalidInputError:
        return  # e.g. lone surrogates
    body = encode_body(Record(cp, D2, step))
    assert decode_body(body) == Record(cp, D2, step)


def test_golden_v1_records_still_parse_and_verify() -> None:
    """Records signed by format version 1 keep parsing, verifying and re-encoding byte for byte."""
    import json
    from pathlib import Path

    golden = json.loads((Path(__file__).parents[1] / "golden/records/v1.json").read_text())
    assert set(golden) == {"identity", "dataset", "checkpoint", "attestation", "dispute"}
    for name, hexa in golden.items():
        signed = parse_entry(bytes.fromhex(hexa))
        signed.verify()
        assert encode_body(signed.record) == signed.body, name
        assert signed.record.kind.label == name


def test_rotation_needs_the_new_keys_endorsement() -> None:
    good = endorse_rotation(NEW, "lab-a", SIGNER.public_key)
    other = RecordSigner.generate()
    with pytest.raises(InvalidInputError, match="endorsement"):
        Identity(IdentityEvent.ROTATE, "lab-a", NEW.public_key)
    with pytest.raises(InvalidInputError, match="only a rotation"):
        Identity(IdentityEvent.REGISTER, "lab-a", NEW.public_key, good)
    for bad, _why in [
        (Identity(IdentityEvent.ROTATE, "lab-a", other.public_key, good), "endorsed by another key"),
        (Identity(IdentityEvent.ROTATE, "lab-b", NEW.public_key, good), "endorsed for another name"),
    ]:
        signed = sign_record(Record(bad, SIGNER.public_key, 1), SIGNER)
        with pytest.raises(SignatureError, match="endorsement does not verify"):
            parse_entry(signed.entry).verify()
    ok = sign_record(Record(Identity(IdentityEvent.ROTATE, "lab-a", NEW.public_key, good), SIGNER.public_key, 1),
                     SIGNER)
    parse_entry(ok.entry).verify()
