"""The one table mapping :mod:`client.errors` classes to gRPC status codes.

The server maps every :class:`~client.errors.ProvenanceError` through
:func:`code_for` (in ``ledger/grpc/handlers.py``); ``client/remote/base.py`` maps the
codes back with its own inverse table. Order matters: the first class that
matches wins, so subclasses come before their bases.
"""

from __future__ import annotations

import grpc

from client.errors import (
    DataLossError,
    FormatError,
    InconsistencyError,
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProofError,
    ProvenanceError,
    ResourceExhaustedError,
    SignatureError,
    UnavailableError,
    VerificationError,
)

STATUS_FOR_ERROR: tuple[tuple[type[ProvenanceError], grpc.StatusCode], ...] = (
    (FormatError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Before UnavailableError: a damaged store (CorruptStorageError is both) is not worth a retry.
    (DataLossError, grpc.StatusCode.DATA_LOSS),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    # A verification failure inside the server is caller-supplied data that does
    # not check out (a proof, a signature): the request is refused, not retried.
    (InconsistencyError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProofError, grpc.StatusCode.INVALID_ARGUMENT),
    (SignatureError, grpc.StatusCode.PERMISSION_DENIED),
    (VerificationError, grpc.StatusCode.FAILED_PRECONDITION),
)

FALLBACK = grpc.StatusCode.INTERNAL


def code_for(err: ProvenanceError) -> grpc.StatusCode:
    """The status code for ``err``: the first row whose class it is an instance of."""
    for cls, code in STATUS_FOR_ERROR:
        if isinstance(err, cls):
            return code
    return FALLBACK
