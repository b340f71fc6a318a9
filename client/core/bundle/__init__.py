"""Proof bundles: self-contained, offline-verifiable evidence of records and their lineage. Pure.

- :mod:`client.core.bundle.format` -- the versioned canonical JSON document (docs/bundle.md).
- :mod:`client.core.bundle.verify` -- :func:`verify_bundle` and the :class:`BundleReport`.
- :mod:`client.core.bundle.report` -- the report in plain language and as JSON.
- :mod:`client.core.bundle.tlog_proof` -- the C2SP ``tlog-proof`` text form for a single record.
- :mod:`client.core.bundle.keystatus` -- the log's key-status note: every identity event of a bundle's
  identities up to its checkpoint, so none can be left out.
"""

from client.core.bundle.format import FORMAT, Bundle, BundleFormatError, BundleRecord, parse, to_bytes
from client.core.bundle.report import report_json, report_text
from client.core.bundle.tlog_proof import TlogProof, format_tlog_proof, parse_tlog_proof
from client.core.bundle.verify import (
    BundleQuorumError,
    BundleReport,
    BundleVerificationError,
    verify_bundle,
    verify_tlog_proof,
)

__all__ = [
    "FORMAT",
    "Bundle",
    "BundleFormatError",
    "BundleQuorumError",
    "BundleRecord",
    "BundleReport",
    "BundleVerificationError",
    "TlogProof",
    "format_tlog_proof",
    "parse",
    "parse_tlog_proof",
    "report_json",
    "report_text",
    "to_bytes",
    "verify_bundle",
    "verify_tlog_proof",
]
