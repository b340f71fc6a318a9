"""Registry records: statements, their canonical encoding, signatures and ids. Pure.

See docs/records.md for the format. Typical use::

    signer = RecordSigner.generate()
    rec = Record(Dataset("web-text", "1", manifest_digest, size=10), signer.public_key, timestamp=0)
    signed = sign_record(rec, signer)      # signed.entry is what the log stores; signed.id its id
    again = parse_entry(signed.entry)      # strict parse
    again.verify()                         # raises SignatureError on a bad signature
"""

from client.core.records.attachment import OmsAttachment
from client.core.records.encoding import MAX_BODY, VERSION, decode_body, encode_body
from client.core.records.model import (
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
    Kind,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    Record,
    Statement,
    TrainingData,
    check_identity_name,
)
from client.core.records.signing import (
    SIGNING_CONTEXT,
    RecordSigner,
    SignedRecord,
    endorse_rotation,
    id_text,
    key_text,
    parse_entry,
    parse_id,
    parse_key,
    record_id,
    sign_record,
    verify_signature,
)

__all__ = [
    "MAX_BODY",
    "SIGNING_CONTEXT",
    "VERSION",
    "Attestation",
    "ModelCheckpoint",
    "Claim",
    "Dataset",
    "DatasetParent",
    "DatasetRelation",
    "DatasetRole",
    "Digest",
    "DigestAlgorithm",
    "Dispute",
    "FingerprintCommitment",
    "Identity",
    "IdentityEvent",
    "Kind",
    "ModelParent",
    "ModelRelation",
    "OmsAttachment",
    "Record",
    "RecordSigner",
    "SignedRecord",
    "Statement",
    "TrainingData",
    "check_identity_name",
    "decode_body",
    "encode_body",
    "endorse_rotation",
    "id_text",
    "key_text",
    "parse_entry",
    "parse_id",
    "parse_key",
    "record_id",
    "sign_record",
    "verify_signature",
]
