"""Process exit codes of ``provenance`` commands, and the one table mapping errors to them (README.md).

Pure. The CLI (:mod:`client.cli`) and the server's entry point (:mod:`ledger.app.serve`) both exit through
:func:`exit_code_for`, so a refusal means the same number wherever it is raised. Order matters: the
first class that matches wins, so subclasses come before their bases.
"""

from __future__ import annotations

from client.errors import (
    DataLossError,
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProvenanceError,
    ResourceExhaustedError,
    UnavailableError,
    VerificationError,
)

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and failed: verification, differences, inconsistency
EXIT_USAGE = 2  # bad flags or bad input
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4  # server unreachable, overloaded or draining
EXIT_ERROR = 5  # anything else

_EXIT_FOR_ERROR: tuple[tuple[type[ProvenanceError], int], ...] = (
    (VerificationError, EXIT_FAILED),
    (DataLossError, EXIT_FAILED),  # a damaged store: a check (at start, fsck) ran and failed
    (InvalidInputError, EXIT_USAGE),
    (OutOfRangeError, EXIT_USAGE),
    (NotFoundError, EXIT_NOT_FOUND),
    (ResourceExhaustedError, EXIT_UNAVAILABLE),
    (UnavailableError, EXIT_UNAVAILABLE),
)


def exit_code_for(err: ProvenanceError) -> int:
    """The exit code of a command that stopped on ``err``."""
    for cls, code in _EXIT_FOR_ERROR:
        if isinstance(err, cls):
            return code
    return EXIT_ERROR
