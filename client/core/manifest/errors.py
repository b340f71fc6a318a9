"""Errors of the manifest package, all inside the :mod:`client.errors` tree.

Misuse (a bad path, a symlink not allowed, empty input) is an
:class:`~client.errors.InvalidInputError`; bytes that do not parse are a
:class:`~client.errors.FormatError`; a re-hash that does not match a manifest is
a :class:`~client.errors.VerificationError` carrying the full difference report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.errors import FormatError, InvalidInputError, ProvenanceError, VerificationError

if TYPE_CHECKING:
    from client.core.manifest.diff import Difference


class WalkError(InvalidInputError):
    """The input tree cannot be walked under the policy: empty, symlink refused, bad name, special file."""


class FileChangedError(ProvenanceError):
    """A file vanished or changed (size, mtime, type) while it was being hashed: its digests would be meaningless."""


class UnsupportedVersionError(FormatError):
    """A manifest whose format version this code does not know (refused, never guessed)."""


class TensorFormatError(FormatError):
    """A tensor container (e.g. safetensors) whose header violates its specification."""


class ManifestMismatchError(VerificationError):
    """A re-hash of a tree does not match a manifest; carries every difference found."""

    def __init__(self, message: str, *, differences: tuple[Difference, ...]) -> None:
        super().__init__(message)
        self.differences = differences


class DigestMismatchError(VerificationError):
    """A manifest's stated digest does not match the digest of its own content."""
