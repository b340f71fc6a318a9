"""oms-signature attestations in the registry: admission checks, the SHA-256 file index, bundles rechecked offline."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from oms_kit import make_model, ms_sign, write_ec_key
from registry_kit import Env, Lab, open_env

from client.core.bundle import verify_bundle
from client.core.bundle.format import to_bytes
from client.core.bundle.report import report_text
from client.core.bundle.verify import BundleVerificationError
from client.core.manifest import codec
from client.core.manifest.oms_in import parse_document
from client.core.manifest.oms_verify import load_public_key
from client.core.records import (
    Attestation,
    Claim,
    Digest,
    DigestAlgorithm,
    ModelCheckpoint,
    OmsAttachment,
    SignedRecord,
)
from client.core.records.identity import NotAllowedError
from client.core.records.oms_claim import OmsClaimError, check_oms_attestation
from client.errors import ProvenanceError
from client.hashing import HashConfig, hash_path
from client.hashing.oms_files import file_digests
from ledger.registry.hook import Prepared
from ledger.registry.oms import OmsManifestMismatchError, OmsSummary
from ledger.registry.prove import build_bundle
from ledger.registry.registry import Submission

pytestmark = pytest.mark.interop


@pytest.fixture
def env() -> Iterator[Env]:
    e = open_env()
    yield e
    e.close()


def _ok(out: list[object]) -> None:
    assert all(not isinstance(r, Exception) for r in out), out


def _checkpoint(env: Env, lab: Lab, model: Path, step: int) -> SignedRecord:
    manifest = hash_path(str(model), HashConfig(threads=1, processes=0))
    signed = lab.sign(ModelCheckpoint("m", "", step, codec.manifest_digest(manifest)))
    _ok(env.registry.register([Submission(signed.entry, codec.encode(manifest))]))
    return signed


def _attestation(subject: bytes, data: bytes, pub: Path | None, **change: object) -> Attestation:
    doc = parse_document(data)
    key = load_public_key(pub.read_bytes())[1] if pub is not None else b""
    fields: dict[str, object] = dict(claim=Claim.OMS_SIGNATURE, subject=subject, object=doc.statement.root,
                                     evidence=Digest(DigestAlgorithm.SHA256, hashlib.sha256(data).digest()),
                                     summary="oms", oms=OmsAttachment(data, key))
    fields.update(change)
    return Attestation(**fields)  # type: ignore[arg-type]


@pytest.fixture
def world(env: Env, tmp_path: Path) -> dict[str, object]:
    lab, auditor = Lab("lab"), Lab("auditor")
    _ok(env.registry.register([lab.register(), auditor.register()]))
    model = make_model(tmp_path / "model")
    cp = _checkpoint(env, lab, model, 1)
    priv, pub, _ = write_ec_key(tmp_path)
    return {"lab": lab, "auditor": auditor, "model": model, "cp": cp, "priv": priv, "pub": pub, "tmp": tmp_path}


def test_sha256_signature_is_admitted_indexed_and_proved(env: Env, world: dict[str, object]) -> None:
    model, cp, auditor = world["model"], world["cp"], world["auditor"]
    data = ms_sign(model, world["priv"], world["tmp"] / "m.sig").read_bytes()  # type: ignore[operator]
    att = auditor.sign(_attestation(cp.id, data, world["pub"]))  # type: ignore[attr-defined]
    _ok(env.registry.register([Submission(att.entry)]))
    weights = file_digests(str(model), "sha256")["sub/weights.bin"]
    found = env.registry.reader.find(weights, ["oms-file"])
    assert [(m.kind, m.record.id) for m in found] == [("oms-file", cp.id), ("oms-attestation", att.id)]  # type: ignore[attr-defined]
    assert env.registry.reader.find(weights) == []  # not a BLAKE3 digest: the default kinds do not hold it
    report = verify_bundle(to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, att.id)), env.log_key)
    assert len(report.oms_notes) == 1 and "ecdsa-secp256r1" in report.oms_notes[0]
    assert "OpenSSF Model Signing signatures, rechecked offline" in report_text(report)


def test_blake3_signature_is_checked_against_the_stored_manifest(env: Env, world: dict[str, object]) -> None:
    tmp, auditor = world["tmp"], world["auditor"]
    data = ms_sign(world["model"], world["priv"], tmp / "b3.sig", algorithm="blake3").read_bytes()  # type: ignore[operator]
    _ok(env.registry.register([Submission(auditor.sign(_attestation(world["cp"].id, data, world["pub"])).entry)]))  # type: ignore[attr-defined]
    other = make_model(tmp / "other", seed=b"other")  # type: ignore[operator]
    data = ms_sign(other, world["priv"], tmp / "other.sig", algorithm="blake3").read_bytes()  # type: ignore[operator]
    (got,) = env.registry.register([Submission(auditor.sign(_attestation(world["cp"].id, data, world["pub"])).entry)])  # type: ignore[attr-defined]
    assert isinstance(got, OmsManifestMismatchError) and "changed" in str(got) and "sub/weights.bin" in str(got)


def test_sha256_signature_of_other_files_is_refused_by_path(env: Env, world: dict[str, object]) -> None:
    tmp = world["tmp"]
    other = make_model(tmp / "other")  # type: ignore[operator]
    (other / "tokenizer.json").write_text("{}")
    data = ms_sign(other, world["priv"], tmp / "o.sig").read_bytes()  # type: ignore[operator]
    (got,) = env.registry.register([Submission(world["auditor"].sign(  # type: ignore[attr-defined]
        _attestation(world["cp"].id, data, world["pub"])).entry)])  # type: ignore[attr-defined]
    assert isinstance(got, OmsManifestMismatchError) and "tokenizer.json" in str(got)


@pytest.mark.parametrize("change", ["object", "evidence", "key"])
def test_attestation_fields_must_agree_with_the_document(env: Env, world: dict[str, object], change: str) -> None:
    data = ms_sign(world["model"], world["priv"], world["tmp"] / "m.sig").read_bytes()  # type: ignore[operator]
    _, other, _ = write_ec_key(world["tmp"], "other")  # type: ignore[arg-type]
    kw: dict[str, object] = {
        "object": {"object": b"\x01" * 32},
        "evidence": {"evidence": Digest(DigestAlgorithm.SHA256, b"\x02" * 32)},
        "key": {"oms": OmsAttachment(data, load_public_key(other.read_bytes())[1])},
    }[change]
    att = _attestation(world["cp"].id, data, world["pub"], **kw)  # type: ignore[attr-defined]
    (got,) = env.registry.register([Submission(world["auditor"].sign(att).entry)])  # type: ignore[attr-defined]
    assert isinstance(got, ProvenanceError)
    if change != "key":
        assert isinstance(got, OmsClaimError)
    else:
        assert getattr(got, "part", "") == "verificationMaterial.publicKey.hint"


def test_subject_must_be_a_registered_checkpoint(env: Env, world: dict[str, object]) -> None:
    data = ms_sign(world["model"], world["priv"], world["tmp"] / "m.sig").read_bytes()  # type: ignore[operator]
    (got,) = env.registry.register([Submission(world["auditor"].sign(  # type: ignore[attr-defined]
        _attestation(b"\x05" * 32, data, world["pub"])).entry)])
    assert "register the checkpoint first" in str(got)


def test_unprepared_oms_attestation_is_refused_by_the_sequencer(env: Env, world: dict[str, object]) -> None:
    data = ms_sign(world["model"], world["priv"], world["tmp"] / "m.sig").read_bytes()  # type: ignore[operator]
    att = world["auditor"].sign(_attestation(world["cp"].id, data, world["pub"]))  # type: ignore[attr-defined]
    (got,) = env.log.submit([att.entry]).result(10)
    assert isinstance(got, NotAllowedError), got


def test_bundle_with_a_tampered_dsse_signature_fails_offline_naming_the_part(
        env: Env, world: dict[str, object]) -> None:
    """A registry that skipped its check (forced here) cannot make the offline verifier accept a bad signature."""
    data = ms_sign(world["model"], world["priv"], world["tmp"] / "m.sig").read_bytes()  # type: ignore[operator]
    good = _attestation(world["cp"].id, data, world["pub"])  # type: ignore[attr-defined]
    check = check_oms_attestation(good)
    obj = json.loads(data)
    sig = bytearray(base64.b64decode(obj["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    obj["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad_doc = json.dumps(obj).encode()
    bad = world["auditor"].sign(_attestation(world["cp"].id, bad_doc, world["pub"]))  # type: ignore[attr-defined]
    (got,) = env.registry.submit_prepared([Prepared(bad, None, None, OmsSummary(check, ()))]).result(10)
    assert not isinstance(got, Exception), got
    data = to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, bad.id))
    with pytest.raises(BundleVerificationError) as err:
        verify_bundle(data, env.log_key)
    assert err.value.part == "records[0].leaf oms" and "dsseEnvelope.signatures[0].sig" in str(err.value)
