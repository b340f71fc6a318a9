"""The OMS document an ``oms-signature`` attestation carries (docs/records.md section 1). Pure.

Kept apart from :mod:`client.core.records.model` only for size; :class:`OmsAttachment` is a field of
:class:`~client.core.records.model.Attestation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.errors import InvalidInputError

MAX_OMS_DOCUMENT = 192 * 1024
"""Largest OMS document an attestation carries (bytes; the whole record body is at most 256 KiB)."""
MAX_OMS_KEY = 4096
"""Largest OMS public key (bytes of PEM)."""


@dataclass(frozen=True, slots=True)
class OmsAttachment:
    """The OpenSSF Model Signing document an ``oms-signature`` attestation carries (docs/records.md).

    ``document``: the OMS bundle (or DSSE envelope) bytes exactly as signed and given; ``public_key``:
    the OMS signer's public key as canonical PEM, or empty when the document's certificate holds it.
    Bounds only here; :mod:`client.core.records.oms_claim` checks the content and the signature.
    """

    document: bytes
    public_key: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.document, bytes) or not 0 < len(self.document) <= MAX_OMS_DOCUMENT:
            raise InvalidInputError(f"an OMS document is 1 to {MAX_OMS_DOCUMENT} bytes")
        if not isinstance(self.public_key, bytes) or len(self.public_key) > MAX_OMS_KEY:
            raise InvalidInputError(f"an OMS public key is at most {MAX_OMS_KEY} bytes")
