"""Regenerate the golden record files: ``python tests/golden/records/regen.py``.

Only when the format version changes on purpose: files of older versions must be kept
(renamed, not overwritten) so that old records keep parsing and verifying.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    Record,
    RecordSigner,
    TrainingData,
    sign_record,
)

HERE = Path(__file__).resolve().parent
SEED = bytes(range(32))  # a fixed test key: never use a published seed for anything real


def golden() -> dict[str, bytes]:
    signer = RecordSigner(Ed25519PrivateKey.from_private_bytes(SEED))
    pk = signer.public_key
    a, b = bytes([0xAA] * 32), bytes([0xBB] * 32)
    statements = {
        "identity": Identity(IdentityEvent.REGISTER, "lab-a", pk),
        "dataset": Dataset("web", "2024-06", a, 1 << 30, "CC-BY-4.0", ("crawl",),
                           (DatasetParent(b, DatasetRelation.FILTERED),)),
        "checkpoint": ModelCheckpoint("m", "run-1", 1000, a, "safetensors", (TrainingData(b, DatasetRole.PRETRAINING),),
                                 (ModelParent(a, ModelRelation.FINE_TUNE),), Digest(DigestAlgorithm.SHA256, b),
                                 (("lr", "3e-4"),), FingerprintCommitment(bytes([0xCC] * 32), published=True)),
        "attestation": Attestation(Claim.DESCENDS_FROM, a, b, Digest(DigestAlgorithm.BLAKE3, a), "tested"),
        "dispute": Dispute(a, "not ours"),
    }
    return {name: sign_record(Record(s, pk, 1_700_000_000), signer).entry for name, s in statements.items()}


def main() -> None:
    out = {name: entry.hex() for name, entry in golden().items()}
    (HERE / "v1.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
