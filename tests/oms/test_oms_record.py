"""The oms-signature attestation as a record: its invariants, bounds, encoding, and escaped summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from oms_kit import make_model, sign_statement, write_ec_key

from client.core.manifest import oms
from client.core.manifest.oms_verify import load_public_key
from client.core.records import (
    Attestation,
    Claim,
    OmsAttachment,
    Record,
    RecordSigner,
    decode_body,
    encode_body,
)
from client.core.records.attachment import MAX_OMS_DOCUMENT
from client.core.records.jsonform import describe, statement_json
from client.core.records.oms_claim import check_oms_attestation
from client.errors import FormatError, InvalidInputError
from client.hashing import HashConfig, hash_path

D1, D2 = b"\x01" * 32, b"\x02" * 32


def test_the_document_comes_with_the_claim_and_only_with_it() -> None:
    with pytest.raises(InvalidInputError, match="only one"):
        Attestation(Claim.OMS_SIGNATURE, D1, D2)
    with pytest.raises(InvalidInputError, match="only one"):
        Attestation(Claim.DESCENDS_FROM, D1, D2, oms=OmsAttachment(b"{}"))
    with pytest.raises(InvalidInputError, match="only one"):
        Attestation(Claim.OMS_SIGNATURE, D1, D2, oms=b"{}")  # type: ignore[arg-type]


def test_document_and_key_bounds() -> None:
    with pytest.raises(InvalidInputError):
        OmsAttachment(b"")
    with pytest.raises(InvalidInputError):
        OmsAttachment(b"x" * (MAX_OMS_DOCUMENT + 1))
    with pytest.raises(InvalidInputError):
        OmsAttachment(b"{}", b"k" * 5000)
    signer = RecordSigner.generate()
    body = encode_body(Record(Attestation(Claim.OMS_SIGNATURE, D1, D2, oms=OmsAttachment(b"x" * MAX_OMS_DOCUMENT)),
                              signer.public_key, 1))
    assert decode_body(body).statement.oms.document == b"x" * MAX_OMS_DOCUMENT  # type: ignore[union-attr]
    # a length beyond the bound is refused by the parser before it reads the bytes
    at = body.index(b"x" * 16) - 3
    with pytest.raises(FormatError, match="OMS document"):
        decode_body(body[:at] + b"\x81\x80\x0d" + body[at + 3:])


def test_other_claims_encode_exactly_as_before() -> None:
    signer = RecordSigner.generate()
    body = encode_body(Record(Attestation(Claim.DESCENDS_FROM, D1, D2, summary="s"), signer.public_key, 1))
    assert body.endswith(b"\x00\x01s")  # no evidence, summary "s", nothing after it


def test_summary_escapes_signer_chosen_text(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    _, pub, key = write_ec_key(tmp_path)
    st = oms.statement(hash_path(str(model), HashConfig(threads=1, processes=0)), "evil\u202enoisrev\x1b[2J")
    data = sign_statement(st, key)
    att = Attestation(Claim.OMS_SIGNATURE, D1, bytes.fromhex(st["subject"][0]["digest"]["sha256"]),  # type: ignore[index]
                      oms=OmsAttachment(data, load_public_key(pub.read_bytes())[1]))
    summary = check_oms_attestation(att).summary()
    assert "\u202e" not in summary and "\x1b" not in summary and "evil" in summary
    assert "OMS model sha256:" in describe(att)
    assert statement_json(att)["oms"]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
