"""``provenance report BUNDLE -o report.html [--pdf report.pdf]``: the court report (docs/report.md). Thin.

Verifies the bundle exactly as ``provenance verify`` does (same key, same flags, same exit code:
0 verified, 1 not verified) and writes the report either way: a bundle that fails says so in the
report's title and first paragraph, naming the broken part. ``--attestation`` attaches a
``descent-test`` attestation's own bundle (``provenance prove ATTESTATION``), verified with the same
log key; ``--evidence`` the evidence file its digest names (``compare --attest --evidence-out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from client.cli._registry_common import add_policy_arg, read_policy
from client.cli.registry_query_cmds import _supplied_entry, _verify_key
from client.errors import InvalidInputError, VerificationError


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write a court report of a proof bundle (HTML, PDF), verified offline",
                       description="Verify a proof bundle offline, as `provenance verify` does, and write it up in "
                                   "plain language for a court: HTML (-o) and/or a text-searchable PDF (--pdf).")
    p.add_argument("bundle", type=Path)
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="the HTML report")
    p.add_argument("--pdf", type=Path, default=None, metavar="FILE", help="the PDF report")
    p.add_argument("--log-key", default=None, metavar="KEY|FILE",
                   help="the log's verifier key (required unless --policy lists the log)")
    add_policy_arg(p)
    p.add_argument("--accept-unproven-key-status", action="store_true",
                   help="as verify: accept a bundle without the log's key-status note (the report warns)")
    p.add_argument("--entry", type=Path, default=None, metavar="FILE",
                   help="as verify: a hash-only tlog-proof's entry bytes")
    p.add_argument("--attestation", type=Path, action="append", default=[], metavar="BUNDLE",
                   help="attach an attestation's proof bundle (e.g. a descent-test about a record of BUNDLE)")
    p.add_argument("--evidence", type=Path, action="append", default=[], metavar="FILE",
                   help="an attached attestation's evidence file (matched by its BLAKE3 digest)")
    p.set_defaults(func=_report)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {what} {path}: {err}") from err


class _AttachmentError(VerificationError):
    """An attached attestation bundle failed; ``part`` is its part under ``attestations[i]``."""

    def __init__(self, i: int, err: VerificationError) -> None:
        inner = getattr(err, "part", "bundle")
        self.part = f"attestations[{i}].{inner}"
        super().__init__(f"{self.part}: {str(err).removeprefix(f'{inner}: ')}")


def _report(args: argparse.Namespace) -> int:
    from client.core.bundle import verify_bundle, verify_tlog_proof
    from client.core.bundle.tlog_proof import HEADER
    from client.report.build import failed_report, verified_report
    from client.report.evidence import comparison_view, match_evidence
    from client.report.recheck import Sources

    if args.output is None and args.pdf is None:
        raise InvalidInputError("say where to write the report: -o report.html and/or --pdf report.pdf")
    policy = read_policy(args.policy)
    data = _read(args.bundle, "bundle")
    key = _verify_key(args.log_key, policy, data)  # as verify: --log-key, else the key the policy lists
    attached = [_read(p, "attestation bundle") for p in args.attestation]
    evidence = [_read(p, "evidence file") for p in args.evidence]
    is_tlog_proof = data.startswith(HEADER.encode() + b"\n")
    entry = _supplied_entry(args.entry, data) if is_tlog_proof else None  # as verify: a usage error without one
    # The commands the report prints name the files as whoever receives them will: by name, in one folder.
    key_arg = args.log_key
    if key_arg is not None and Path(key_arg).is_file():
        key_arg = Path(key_arg).name
    src = Sources(args.bundle.name, key_arg, key, args.accept_unproven_key_status,
                  tuple((p.name, None) for p in args.attestation), None if args.entry is None else args.entry.name,
                  None if args.policy is None else args.policy.name)
    try:
        if is_tlog_proof:
            report = verify_tlog_proof(data, key, entry, policy=policy)
        else:
            report = verify_bundle(data, key, accept_unproven_key_status=args.accept_unproven_key_status,
                                   policy=policy)
        atts = []
        for i, raw in enumerate(attached):
            try:
                atts.append(verify_bundle(raw, key, accept_unproven_key_status=args.accept_unproven_key_status,
                                          policy=policy))
            except VerificationError as err:
                raise _AttachmentError(i, err) from err
        found = match_evidence(atts, evidence)
        src = dataclasses.replace(src, attachments=tuple((p.name, None if j is None else args.evidence[j].name)
                                                         for p, j in zip(args.attestation, found, strict=True)))
        views = tuple(comparison_view(att, None if j is None else evidence[j], report, f"attestations[{i}]")
                      for i, (att, j) in enumerate(zip(atts, found, strict=True)))
        court = verified_report(data, report, src, comparisons=views)
        code = 0
    except VerificationError as err:
        court = failed_report(data, err, src)
        code = 1
    _write(args, court)
    if code:
        print(f"NOT VERIFIED: {court.lead.removeprefix('NOT VERIFIED. ')}", file=sys.stderr)
    return code


def _write(args: argparse.Namespace, court: Any) -> None:
    from client.report.html import render_html
    from client.report.pdf import render_pdf

    written = []
    try:
        if args.output is not None:
            args.output.write_text(render_html(court), encoding="utf-8")
            written.append(str(args.output))
        if args.pdf is not None:
            args.pdf.write_bytes(render_pdf(court))
            written.append(str(args.pdf))
    except OSError as err:
        raise InvalidInputError(f"cannot write the report: {err}") from err
    print(f"wrote {', '.join(written)}: {court.title}")
