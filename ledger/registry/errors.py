"""Why the registry refuses a record. Each is a :mod:`client.errors` class, so the gRPC edge maps it by family:

- malformed record / manifest: ``FormatError`` -> INVALID_ARGUMENT
- a reference to a record not held: :class:`UnknownReferenceError` -> NOT_FOUND
- bad signature, unknown / retired / revoked / not-allowed signer: ``SignatureError`` subclasses -> PERMISSION_DENIED
- a name or name/version already taken: :class:`ConflictError` -> INVALID_ARGUMENT

The identity refusals (unknown, revoked, not-allowed signer; a taken name or key) are defined with the
identity rule itself, in :mod:`client.core.records.identity`, which the offline verifier runs too.
"""

from __future__ import annotations

from client.core.records.identity import ConflictError, NotAllowedError, RevokedKeyError, UnknownSignerError
from client.errors import InvalidInputError, NotFoundError

__all__ = [
    "ConflictError",
    "ManifestMissingError",
    "NotAllowedError",
    "RevokedKeyError",
    "UnknownReferenceError",
    "UnknownSignerError",
    "WrongReferenceKindError",
]


class UnknownReferenceError(NotFoundError):
    """A record refers (as parent, dataset, subject, target...) to a record id the registry does not hold."""


class WrongReferenceKindError(InvalidInputError):
    """A reference names a record of the wrong kind (e.g. a checkpoint's parent that is a dataset)."""


class ManifestMissingError(InvalidInputError):
    """A dataset or checkpoint record came without its manifest, and the registry does not hold it."""
