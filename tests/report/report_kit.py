"""A small registry story for the court report's tests: a lineage bundle, a descent-test attestation
about two of its records with its evidence file, and hostile signer-chosen strings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import blake3
from registry_kit import Env, Lab, make_manifest, open_env

from client.core.bundle import to_bytes
from client.core.records import (
    Attestation,
    Claim,
    Dataset,
    Digest,
    DigestAlgorithm,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    SignedRecord,
    TrainingData,
)
from client.core.records.model import DatasetRole
from ledger.registry.prove import build_bundle
from ledger.registry.registry import Submission

HOSTILE_SOURCE = '<script>alert("src")</script> \u202eevil\u202c & "quotes"'
HOSTILE_MODEL = '<img src=x onerror=alert(1)>-chat'
HOSTILE_SUMMARY = "descent test: related </td><script>alert(2)</script>\nsecond line"


@dataclass
class Story:
    env: Env
    base: SignedRecord
    child: SignedRecord
    grandchild: SignedRecord
    dataset: SignedRecord
    attestation: SignedRecord
    bundle: bytes
    attestation_bundle: bytes
    evidence: bytes

    def write(self, folder: Path) -> dict[str, Path]:
        """The story's files in ``folder``: bundle.json, attestation.json, evidence.json, log.pub."""
        out = {"bundle": folder / "bundle.json", "attestation": folder / "attestation.json",
               "evidence": folder / "evidence.json", "log_key": folder / "log.pub"}
        out["bundle"].write_bytes(self.bundle)
        out["attestation"].write_bytes(self.attestation_bundle)
        out["evidence"].write_bytes(self.evidence)
        out["log_key"].write_text(self.env.log_key + "\n")
        return out


def _register(env: Env, *subs: Submission) -> None:
    got = env.registry.register(list(subs))
    assert all(not isinstance(r, Exception) for r in got), got


def evidence_json(subject: bytes, obj: bytes) -> bytes:
    """An evidence file shaped as ``compare --attest --evidence-out`` writes one."""
    report = {
        "verdict": "related", "basis": "statistical", "alpha": 0.01, "p_value": 3.2e-12, "log10_p": -11.495,
        "shared_fraction": {"a_in_b": 0.75, "b_in_a": 0.75},
        "shared_tensors": {"shared": 3, "informative": 4, "layers_shared": 3, "layers": 4},
        "extent": [{"layer": f"layers.{i}", "index": i, "shared": i < 3, "shared_tensors": int(i < 3), "tensors": 1,
                    "b_tensors": [f"layers.{i}.weight"], "b_layers": [f"layers.{i}"]} for i in range(4)],
        "subject": subject.hex(), "object": obj.hex(),
    }
    return json.dumps(report, sort_keys=True, separators=(",", ":")).encode()


def make_story(hostile: bool = False) -> Story:
    env = open_env()
    a, b, auditor = Lab("lab-a"), Lab("lab-b"), Lab("auditor-c")
    _register(env, a.register(), b.register(), auditor.register())
    encoded, digest = make_manifest("ds")
    sources = (HOSTILE_SOURCE,) if hostile else ("a crawl",)
    ds = a.sign(Dataset("web", "1", digest, 3 * 1024, "CC-BY-4.0", sources))
    _register(env, Submission(ds.entry, encoded))
    subs, recs = [], []
    parent: bytes | None = None
    for name, lab, rel in (("base", a, None), (HOSTILE_MODEL if hostile else "chat", b, "fine-tune"),
                           ("chat-int8", b, "quantization")):
        encoded, digest = make_manifest(f"{name}/{len(recs)}")
        parents = () if parent is None else (ModelParent(parent, ModelRelation.parse(rel or "")),)
        datasets = (TrainingData(ds.id, DatasetRole.PRETRAINING),) if parent is None else ()
        signed = lab.sign(ModelCheckpoint(name, "", 10 * (len(recs) + 1), digest, "safetensors", datasets, parents))
        subs.append(Submission(signed.entry, encoded))
        recs.append(signed)
        parent = signed.id
    _register(env, *subs)
    base, child, grandchild = recs
    evidence = evidence_json(child.id, base.id)
    summary = HOSTILE_SUMMARY if hostile else "descent test: related (statistical), p-value 3.2e-12, alpha 0.01"
    att = auditor.sign(Attestation(Claim.DESCENT_TEST, child.id, base.id,
                                   Digest(DigestAlgorithm.BLAKE3, blake3.blake3(evidence).digest()), summary))
    _register(env, Submission(att.entry))
    reader = env.registry.reader
    bundle = to_bytes(build_bundle(reader, env.log, env.log_key, grandchild.id, ds.id))
    att_bundle = to_bytes(build_bundle(reader, env.log, env.log_key, att.id))
    return Story(env, base, child, grandchild, ds, att, bundle, att_bundle, evidence)


def tamper_leaf(bundle: bytes, position: int) -> bytes:
    """``bundle`` with one byte of ``records[position]``'s entry changed (re-serialised canonically)."""
    import base64

    from client.core.bundle.format import canonical

    obj = json.loads(bundle)
    leaf = bytearray(base64.b64decode(obj["records"][position]["leaf"]))
    leaf[len(leaf) // 2] ^= 1
    obj["records"][position]["leaf"] = base64.b64encode(bytes(leaf)).decode()
    return canonical(obj)


def cosign(bundle: bytes, name: str, seed: bytes, timestamp: int = 1_765_000_000) -> tuple[bytes, str]:
    """``bundle`` with a witness's cosignature line added to its checkpoint note, and the witness's vkey."""
    from client.core.bundle.format import canonical
    from client.core.cosignature import WitnessSigner
    from client.core.note import split_signatures

    obj = json.loads(bundle)
    note = obj["checkpoint"].encode()
    body, _ = split_signatures(note)
    signer = WitnessSigner(name, seed)
    line = signer.cosign(body, timestamp)
    obj["checkpoint"] = (note + line.encode() + (b"" if line.endswith("\n") else b"\n")).decode()
    return canonical(obj), signer.key().text()
