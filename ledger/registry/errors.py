"""Why the registry refuses a record. Each is a :mod:`client.errors` class, so the gRPC edge maps it by family:

- malformed record / manifest: ``FormatError`` -> INVALID_ARGUMENT
- a reference to a record not held: :class:`UnknownReferenceError` -> NOT_FOUND
- bad signature, unknown / retired / revoked / not-allowed signer: ``SignatureError`` subclasses -> PERMISSION_DENIED
- a name or name/version already taken: :class:`ConflictError` -> INVALID_ARGUMENT
"""

from __future__ import annotations

from client.errors import InvalidInputError, NotFoundError, SignatureError


class UnknownReferenceError(NotFoundError):
    """A record refers (as parent, dataset, subject, target...) to a record id the registry does not hold."""


class WrongReferenceKindError(InvalidInputError):
    """A reference names a record of the wrong kind (e.g. a checkpoint's parent that is a dataset)."""


class UnknownSignerError(SignatureError):
    """The signer key is not registered under any name."""


class RevokedKeyError(SignatureError):
    """The signer key was revoked or rotated out; it signs nothing new."""


class NotAllowedError(SignatureError):
    """The operator's allowlist does not list this name and key."""


class ConflictError(InvalidInputError):
    """A name, key or name/version is already taken."""


class ManifestMissingError(InvalidInputError):
    """A dataset or checkpoint record came without its manifest, and the registry does not hold it."""
