"""OMS in: documents model_signing writes, read and checked by ours; ours checked by model_signing; tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from oms_kit import make_model, ms_sign, ms_verify, sign_statement, write_certificates, write_ec_key

from client.core.manifest import oms
from client.core.manifest.oms_in import OmsFormatError, looks_like_oms, parse_document
from client.core.manifest.oms_verify import OmsSignatureError, check_paths, compare_digests, verify_signature
from client.hashing import HashConfig, hash_path
from client.hashing.oms_files import file_digests
from tests.cli_kit import cli

pytestmark = pytest.mark.interop


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path, bytes]:
    """(model folder, its model_signing sha256 signature, the public key, the signature bytes)."""
    model = make_model(tmp_path / "model")
    priv, pub, _ = write_ec_key(tmp_path)
    sig = ms_sign(model, priv, tmp_path / "model.sig")
    return model, sig, pub, sig.read_bytes()


def _rebundle(data: bytes, mutate: object) -> bytes:
    obj = json.loads(data)
    mutate(obj)  # type: ignore[operator]
    return json.dumps(obj).encode()


def test_reference_signature_reads_verifies_and_matches_the_files(signed: tuple[Path, Path, Path, bytes]) -> None:
    model, _, pub, data = signed
    doc = parse_document(data)
    assert doc.signed and doc.statement.hash_type == "sha256" and doc.key_hint
    assert {r.name for r in doc.statement.resources} == {"config.json", "sub/weights.bin"}
    signer = verify_signature(doc, pub.read_bytes())
    assert signer.source == "public-key" and signer.key_sha256 == doc.key_hint
    assert compare_digests(doc.statement, file_digests(str(model), "sha256")) == []


def test_changed_missing_and_extra_files_are_named(signed: tuple[Path, Path, Path, bytes]) -> None:
    model, _, _, data = signed
    (model / "config.json").write_text('{"layers": 3}')
    (model / "sub" / "weights.bin").unlink()
    (model / "extra.txt").write_text("x")
    diffs = compare_digests(parse_document(data).statement, file_digests(str(model), "sha256"))
    assert [(d.status, d.path) for d in diffs] == [
        ("changed", "config.json"), ("extra", "extra.txt"), ("missing", "sub/weights.bin")]


def test_payload_tampered_after_signing_is_refused_naming_the_signature(
        signed: tuple[Path, Path, Path, bytes]) -> None:
    _, _, pub, data = signed

    def swap_digest(o: dict) -> None:  # type: ignore[type-arg]
        st = json.loads(base64.b64decode(o["dsseEnvelope"]["payload"]))
        st["predicate"]["resources"][0]["digest"] = "00" * 32
        st["subject"][0]["digest"]["sha256"] = hashlib.sha256(
            b"".join(bytes.fromhex(r["digest"]) for r in st["predicate"]["resources"])).hexdigest()
        o["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()

    doc = parse_document(_rebundle(data, swap_digest))  # consistent statement, but not the one signed
    with pytest.raises(OmsSignatureError) as err:
        verify_signature(doc, pub.read_bytes())
    assert err.value.part == "dsseEnvelope.signatures[0].sig"


def test_inconsistent_root_is_refused_naming_the_subject_digest(signed: tuple[Path, Path, Path, bytes]) -> None:
    _, _, _, data = signed

    def change_resource(o: dict) -> None:  # type: ignore[type-arg]
        st = json.loads(base64.b64decode(o["dsseEnvelope"]["payload"]))
        st["predicate"]["resources"][0]["digest"] = "00" * 32
        o["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()

    with pytest.raises(OmsFormatError) as err:
        parse_document(_rebundle(data, change_resource))
    assert err.value.part == "dsseEnvelope.payload.subject[0].digest.sha256"


@pytest.mark.parametrize(("mutate", "part"), [
    (lambda o: o["dsseEnvelope"]["signatures"][0].update(sig=base64.b64encode(b"\x30" * 70).decode()),
     "dsseEnvelope.signatures[0].sig"),
    (lambda o: o["verificationMaterial"]["publicKey"].update(hint="ab" * 32), "verificationMaterial.publicKey.hint"),
])
def test_tampered_signature_or_key_hint_is_refused_naming_the_part(
        signed: tuple[Path, Path, Path, bytes], mutate: object, part: str) -> None:
    _, _, pub, data = signed
    with pytest.raises(OmsSignatureError) as err:
        verify_signature(parse_document(_rebundle(data, mutate)), pub.read_bytes())
    assert err.value.part == part


def test_another_key_and_no_key_are_refused(signed: tuple[Path, Path, Path, bytes], tmp_path: Path) -> None:
    _, _, _, data = signed
    _, other, _ = write_ec_key(tmp_path, "other")
    with pytest.raises(OmsSignatureError, match="names another key"):
        verify_signature(parse_document(data), other.read_bytes())
    with pytest.raises(OmsSignatureError) as err:
        verify_signature(parse_document(data))
    assert err.value.part == "document"


@pytest.mark.parametrize(("mutate", "part"), [
    (lambda o: o["dsseEnvelope"].update(payloadType="text/plain"), "dsseEnvelope.payloadType"),
    (lambda o: o["dsseEnvelope"].update(payload="not base64!"), "dsseEnvelope.payload"),
    (lambda o: o["dsseEnvelope"]["signatures"].append({"sig": "AA=="}), "dsseEnvelope.signatures"),
    (lambda o: o.update(mediaType="application/json"), "mediaType"),
])
def test_malformed_bundles_are_refused_naming_the_part(
        signed: tuple[Path, Path, Path, bytes], mutate: object, part: str) -> None:
    with pytest.raises(OmsFormatError) as err:
        parse_document(_rebundle(signed[3], mutate))
    assert err.value.part == part


def test_shards_and_unknown_hashes_are_refused_by_name(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    st = oms.statement(hash_path(str(model), HashConfig(threads=1, processes=0)), "m")
    st["predicate"]["serialization"]["method"] = "shards"  # type: ignore[index]
    with pytest.raises(OmsFormatError, match="only the 'files' serialization"):
        parse_document(json.dumps(st).encode())
    st["predicate"]["serialization"].update(method="files", hash_type="blake2")  # type: ignore[index]
    with pytest.raises(OmsFormatError, match="blake2"):
        parse_document(json.dumps(st).encode())


def test_deeply_nested_document_is_refused_before_parsing() -> None:
    with pytest.raises(OmsFormatError.__mro__[1], match="levels deep"):
        parse_document(b'{"_type": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_certificate_signed_bundle_verifies_with_the_leaf_key(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    priv, _, key = write_ec_key(tmp_path)
    ca, leaf = write_certificates(tmp_path, key)
    data = ms_sign(model, priv, tmp_path / "m.sig", certificate=leaf, chain=(ca,)).read_bytes()
    doc = parse_document(data)
    assert len(doc.certificates) == 2 and not doc.key_hint
    signer = verify_signature(doc)
    assert signer.source == "certificate" and "model signer" in signer.subject
    assert "not checked against any trust root" in signer.describe()


def test_blake3_signature_by_the_reference_matches_our_manifest(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    priv, pub, _ = write_ec_key(tmp_path)
    doc = parse_document(ms_sign(model, priv, tmp_path / "m.sig", algorithm="blake3").read_bytes())
    verify_signature(doc, pub.read_bytes())
    manifest = hash_path(str(model), HashConfig(threads=1, processes=0))
    assert compare_digests(doc.statement, {f.path: f.blake3 for f in manifest.files}) == []
    assert check_paths(doc.statement, manifest) == []


def test_our_statement_signed_verifies_with_model_signing(tmp_path: Path) -> None:
    """Ours -> reference: the statement of `hash --format oms`, DSSE-signed, passes `model_signing verify key`."""
    model = make_model(tmp_path / "m")
    _, pub, key = write_ec_key(tmp_path)
    st = oms.statement(hash_path(str(model), HashConfig(threads=1, processes=0)), "m")
    sig = tmp_path / "ours.sig"
    sig.write_bytes(sign_statement(st, key))
    ms_verify(model, sig, pub)
    (model / "config.json").write_text("changed")
    with pytest.raises(ValueError, match="mismatch"):
        ms_verify(model, sig, pub)


def test_hash_verify_ignores_a_signature_kept_in_the_model_folder(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(tmp_path / "m")
    priv, pub, _ = write_ec_key(tmp_path)
    sig = ms_sign(model, priv, model / "model.sig")
    out = cli(capsys, "hash", "--verify", str(sig), str(model), "--oms-key", str(pub), "--no-progress")
    assert "OK: 2 files match" in out and "signature verified" in out
    (model / "sub" / "weights.bin").write_bytes(b"tampered")
    out = cli(capsys, "hash", "--verify", str(sig), str(model), "--no-progress", "--json", code=1)
    got = json.loads(out.splitlines()[0])
    assert [(d["status"], d["path"]) for d in got["differences"]] == [("changed", "sub/weights.bin")]


def test_single_file_model(tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(b"\x07" * 3000)
    priv, _, _ = write_ec_key(tmp_path)
    doc = parse_document(ms_sign(f, priv, tmp_path / "one.sig").read_bytes())
    assert [r.name for r in doc.statement.resources] == ["."]
    assert compare_digests(doc.statement, file_digests(str(f), "sha256")) == []
    shutil.copy(f, tmp_path / "two.bin")
    (tmp_path / "one.bin").write_bytes(b"\x08" * 3000)
    assert [d.status for d in compare_digests(doc.statement, file_digests(str(f), "sha256"))] == ["changed"]


def test_looks_like_oms_tells_statements_from_manifest_json() -> None:
    assert looks_like_oms(b'{\n  "_type": "https://in-toto.io/Statement/v1"')
    assert looks_like_oms(b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"')
    assert not looks_like_oms(b'{"format": "provenance-manifest", "files": [{"path": "_type"}]}')
