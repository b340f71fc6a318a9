"""Proof bundles: build from the registry, verify offline, refuse every tampering naming the part."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from registry_kit import Env, open_env, story

from client.core.bundle import (
    BundleVerificationError,
    format_tlog_proof,
    parse,
    report_json,
    report_text,
    to_bytes,
    verify_bundle,
    verify_tlog_proof,
)
from client.core.bundle.tlog_proof import TlogProof
from client.core.note import Signer
from ledger.registry.prove import build_bundle


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = open_env()
    yield e
    e.close()


@pytest.fixture(scope="module")
def recs(env: Env) -> dict[str, object]:
    return story(env)  # type: ignore[return-value]


def lineage_bundle(env: Env, recs: dict[str, object]) -> bytes:
    q, base = recs["grandchild"], recs["base"]
    return to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, q.id, base.id))  # type: ignore[attr-defined]


def test_lineage_bundle_verifies_and_reports(env: Env, recs: dict[str, object]) -> None:
    data = lineage_bundle(env, recs)
    obj = json.loads(data)
    assert {"format", "log_key", "checkpoint", "records", "origin"} <= set(obj)
    assert obj["origin"] == "example.com/registry-test"
    assert {"id", "index", "leaf", "inclusion_proof"} == set(obj["records"][0])
    report = verify_bundle(data, env.log_key)
    assert [r.role for r in report.records] == ["subject", "lineage", "lineage", "identity", "identity"]
    assert [link.relation for link in report.path] == ["quantization", "fine-tune"]
    text = report_text(report)
    assert "VERIFIED" in text and "'lab-b'" in text and "--quantization-->" in text
    js = report_json(report)
    assert js["verified"] is True and js["subject"] == recs["grandchild"].id.hex()  # type: ignore[attr-defined]
    assert parse(data).records[0].id == recs["grandchild"].id  # type: ignore[attr-defined]


def test_to_dataset_through_training_edge(env: Env, recs: dict[str, object]) -> None:
    q, ds = recs["grandchild"], recs["dataset"]
    data = to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, q.id, ds.id))  # type: ignore[attr-defined]
    report = verify_bundle(data, env.log_key)
    assert report.path[-1].relation == "trained-on:pretraining"


def test_every_byte_flip_fails_naming_a_part(env: Env, recs: dict[str, object]) -> None:
    data = lineage_bundle(env, recs)
    parts: set[str] = set()
    for i in range(len(data)):
        mangled = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(BundleVerificationError) as info:
            verify_bundle(mangled, env.log_key)
        parts.add(info.value.part.split(".")[0].split("[")[0])
    assert {"bundle", "checkpoint", "records", "log_key", "origin"} <= parts


def test_specific_parts_named(env: Env, recs: dict[str, object]) -> None:
    data = lineage_bundle(env, recs)
    obj = json.loads(data)

    def check(mutate: object, part: str) -> None:
        o = json.loads(data)
        mutate(o)  # type: ignore[operator]
        with pytest.raises(BundleVerificationError) as info:
            verify_bundle((json.dumps(o, indent=2, sort_keys=True) + "\n").encode(), env.log_key)
        assert info.value.part == part, str(info.value)

    check(lambda o: o["records"][1]["inclusion_proof"].reverse(), "records[1].inclusion_proof")
    check(lambda o: o["records"].pop(1), "records[1]")  # the link from grandchild to child is broken
    check(lambda o: o["records"].pop(2), "lineage_to")  # the ancestor is gone
    check(lambda o: o.__setitem__("lineage_to", obj["records"][4]["id"]), "records[3]")
    check(lambda o: o["records"].pop(), "records[1]")  # lab-b's identity record is gone
    other = Signer.generate("example.com/registry-test").verifier().text()
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(data, other)
    assert info.value.part == "log_key"


def test_tlog_proof_form(env: Env, recs: dict[str, object]) -> None:
    q = recs["grandchild"]
    b = build_bundle(env.registry.reader, env.log, env.log_key, q.id)  # type: ignore[attr-defined]
    r = b.records[0]
    text = format_tlog_proof(TlogProof(r.leaf, r.index, r.inclusion_proof, b.checkpoint))
    assert text.startswith(b"c2sp.org/tlog-proof@v1\nextra ")
    assert f"\nindex {r.index}\n".encode() in text
    report = verify_tlog_proof(text, env.log_key)
    assert report.records[0].signed.id == q.id  # type: ignore[attr-defined]
    for i in range(len(text)):
        mangled = text[:i] + bytes([text[i] ^ 0x01]) + text[i + 1 :]
        with pytest.raises(BundleVerificationError):
            verify_tlog_proof(mangled, env.log_key)
