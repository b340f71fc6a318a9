"""The client's exception hierarchy. Pure: no grpc here.

Every error the library raises is a :class:`ProvenanceError`. Verification
failures (tampering, forks, bad signatures) are :class:`VerificationError` and
never a bare ``ValueError``, so callers can tell an attack from misuse. The gRPC
edge maps these classes to status codes in one table (``ledger/grpc/status.py``), and
the client maps statuses back (``client/remote/base.py``).
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base of every error raised by Provenance Ledger code."""


class InvalidInputError(ProvenanceError):
    """The caller sent something malformed or out of bounds (INVALID_ARGUMENT)."""


class NotFoundError(ProvenanceError):
    """An index, hash or record that is not held (NOT_FOUND)."""


class OutOfRangeError(ProvenanceError):
    """A tree size or index beyond the current tree (OUT_OF_RANGE)."""


class ResourceExhaustedError(ProvenanceError):
    """Overload or a quota; retry later (RESOURCE_EXHAUSTED)."""


class UnavailableError(ProvenanceError):
    """The service cannot answer now: draining, storage failed (UNAVAILABLE)."""


class DataLossError(ProvenanceError):
    """Data the server holds is damaged or lost (DATA_LOSS): retrying will not help; the operator must repair it."""


class FormatError(InvalidInputError):
    """Bytes that do not parse as the format they claim (note, checkpoint, key, record...)."""


class VerificationError(ProvenanceError):
    """Something failed to verify: a signature, a proof, a digest. Possibly tampering."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify."""


class SignatureError(VerificationError):
    """A signature is missing, unknown or does not verify."""


class InconsistencyError(VerificationError):
    """Two signed checkpoints of the same log cannot both be honest (a fork or a rollback).

    Carries the evidence so it can be shown to a third party: both signed notes
    and the proof that failed (possibly empty).
    """

    def __init__(self, message: str, *, old_note: bytes, new_note: bytes, proof: list[bytes]) -> None:
        super().__init__(message)
        self.old_note = old_note
        self.new_note = new_note
        self.proof = proof
