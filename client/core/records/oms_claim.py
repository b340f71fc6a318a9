"""The rule for ``oms-signature`` attestations (docs/records.md section 1): one check, used everywhere. Pure.

Such an attestation says: "the OpenSSF Model Signing document I carry signs the weights of checkpoint
``subject``". :func:`check_oms_attestation` checks what the record alone can prove, offline: the
document parses as a signed OMS v1.0 statement, its DSSE signature verifies with the key carried (or
the document's certificate; see :mod:`client.core.manifest.oms_verify` for what is not checked), the
attestation's ``object`` is the statement's model digest, and ``evidence``, when set, is the SHA-256
of the document. Whether the statement's files are the checkpoint's needs its manifest: the registry
checks that at admission (``ledger/registry/oms.py``), ``provenance register oms`` before signing.
Both call this check too, and so does the offline bundle verifier (``client/core/bundle/verify.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from client.core.manifest.oms_in import OmsDocument, parse_document
from client.core.manifest.oms_verify import OmsSigner, verify_signature
from client.core.records.display import safe_text
from client.core.records.model import Attestation, Claim, DigestAlgorithm
from client.errors import InvalidInputError


class OmsClaimError(InvalidInputError):
    """An oms-signature attestation whose fields disagree with the document it carries."""


@dataclass(frozen=True, slots=True)
class OmsCheck:
    """The outcome of a successful check: the document as read and who signed it."""

    document: OmsDocument
    signer: OmsSigner

    def summary(self) -> str:
        """One line; the signer-chosen texts in it (model name, certificate subject) are escaped."""
        st = self.document.statement
        return safe_text(f"OMS v1.0 signature of model '{st.model_name}' (sha256:{st.root.hex()}, "
                         f"{len(st.resources)} files, {st.hash_type}) by {self.signer.describe()}")


def check_oms_attestation(att: Attestation) -> OmsCheck:
    """Check ``att`` (an oms-signature attestation) as the module docstring says. Raises
    :class:`OmsClaimError`, or the document's OmsFormatError / OmsSignatureError naming the part."""
    if att.claim is not Claim.OMS_SIGNATURE or att.oms is None:
        raise OmsClaimError(f"a {att.claim.value} attestation carries no OMS document")
    doc = parse_document(att.oms.document)
    signer = verify_signature(doc, att.oms.public_key or None)
    if att.object != doc.statement.root:
        raise OmsClaimError(f"attestation object {att.object.hex()} is not the OMS statement's model digest "
                            f"sha256:{doc.statement.root.hex()}")
    if att.evidence is not None and (att.evidence.algorithm is not DigestAlgorithm.SHA256
                                     or att.evidence.value != hashlib.sha256(att.oms.document).digest()):
        raise OmsClaimError("attestation evidence is not the SHA-256 of the OMS document it carries")
    return OmsCheck(doc, signer)
