"""What the verifier checked, in words, and the commands that let anyone check it again. Pure.

Each :class:`~client.report.model.Check` follows a step of docs/bundle.md section 3 and says how to
redo it by hand from the bundle's bytes and the log's public key, with no trust in this program.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from client.core.bundle.verify import BundleReport
from client.core.records.display import safe_text
from client.report.model import Check, ComparisonView


@dataclass(frozen=True, slots=True)
class Sources:
    """The inputs as the user named them, for the commands the report prints."""

    bundle: str
    log_key_arg: str | None  # the --log-key argument: a file name or the key text (None: --policy gave it)
    log_key_text: str
    accept_unproven_key_status: bool = False
    attachments: tuple[tuple[str, str | None], ...] = ()  # (attestation bundle, its evidence file or None)
    entry: str | None = None  # verify --entry, for a hash-only tlog-proof
    policy: str | None = None  # --policy FILE, the witness policy


def _q(text: str) -> str:
    return shlex.quote(safe_text(text))


def commands(src: Sources) -> tuple[str, ...]:
    """The commands that verify the same inputs again (``provenance`` is this project's client)."""
    key = " ".join(([f"--log-key {_q(src.log_key_arg)}"] if src.log_key_arg is not None else [])
                   + ([f"--policy {_q(src.policy)}"] if src.policy is not None else []))
    verify = f"provenance verify {_q(src.bundle)} {key}"
    if src.accept_unproven_key_status:
        verify += " --accept-unproven-key-status"
    if src.entry is not None:
        verify += f" --entry {_q(src.entry)}"
    out = [verify]
    report = f"provenance report {_q(src.bundle)} {key} -o report.html --pdf report.pdf"
    for bundle, evidence in src.attachments:
        out.append(f"provenance verify {_q(bundle)} {key}")
        report += f" --attestation {_q(bundle)}"
        if evidence is not None:
            out.append(f"b3sum {_q(evidence)}   # must print the attestation's evidence digest")
            report += f" --evidence {_q(evidence)}"
    if src.accept_unproven_key_status:
        report += " --accept-unproven-key-status"
    return (*out, report)


def checks(report: BundleReport, comparisons: tuple[ComparisonView, ...]) -> tuple[Check, ...]:
    """The checks a verified bundle passed (docs/bundle.md section 3), each with how to redo it."""
    n = len(report.records)
    out = [
        Check("The bundle is in its one canonical form, so every byte of it is covered by a check below.",
              "Re-serialise the JSON with sorted keys, two-space indent and ASCII escapes: the bytes must not change."),
        Check(f"The checkpoint note is signed by the log's key {report.log_key} and states that the log "
              f"{report.origin} held {report.tree_size} entries with the root hash {_b64(report)}.",
              "Check the Ed25519 signature line '\u2014 <log name> ...' over the note's text with that public key "
              "(C2SP signed-note; e.g. Go's golang.org/x/mod/sumdb/note or provenance verify)."),
        Check(f"Each of the {n} records is in that tree: its id is SHA-256(0x00 || its exact bytes), and its "
              "inclusion proof leads from that leaf at its index to the checkpoint's root.",
              "Hash the base64-decoded 'leaf' with a 0x00 prefix; fold in the 'inclusion_proof' hashes as RFC 9162 "
              "section 2.1.3.2 describes (0x01 || left || right); compare with the checkpoint's root."),
        Check("Each record's Ed25519 signature verifies with the key the record names as its signer.",
              "The last 64 bytes of a record are the signature over 'provenance-ledger/record/v1\\n' followed by "
              "the rest of the record (docs/records.md, sections 2 and 3)."),
    ]
    if report.path:
        out.append(Check(f"The lineage path has {len(report.path)} links, each named inside the child record by the "
                         "parent's id: a hash of the parent's exact bytes, so no other parent can be substituted.",
                         "Decode each child record and find its parent's id among its parents or datasets."))
    if report.key_status_proved or report.key_status_warning is not None:
        out.append(Check("Every signer key was registered by an identity record logged before the records it signs "
                         "and was not revoked or rotated out before them (the identity events replayed in log order).",
                         "Sort the identity records by index and apply register / rotate / revoke (docs/records.md "
                         "section 5)."))
    if report.key_status_proved:
        out.append(Check("The log's key-status note, signed by the same log key for this checkpoint, lists every "
                         "identity event of these identities, and the bundle carries exactly those: none left out.",
                         "Verify the 'key_status' note's signature like the checkpoint's; compare its list of "
                         "(index, record id) with the bundle's identity records (docs/bundle.md section 4)."))
    for note in report.oms_notes:
        out.append(Check("An OpenSSF Model Signing signature carried in a signed attestation verifies: "
                         f"{safe_text(note)}.",
                         "Check the DSSE envelope's signature over its in-toto statement with the key it names "
                         "(model_signing verify); certificate chains and transparency-log entries are not checked "
                         "offline (docs/manifest.md, 'OMS in')."))
    sig = report.signatures
    if sig is not None and sig.quorum is not None:
        names = ", ".join(safe_text(w.name) for w in sig.witnesses if w.status == "verified") or "none needed"
        out.append(Check(f"The checkpoint meets the witness policy's quorum {safe_text(sig.quorum)!r}, cosigned by: "
                         f"{names}; every signature line is under a key of the log or the policy.",
                         "Check each witness line as a C2SP tlog-cosignature: Ed25519, by the key the policy lists, "
                         "over 'cosignature/v1\\ntime <its timestamp>\\n' followed by the checkpoint's text."))
    for i, c in enumerate(comparisons):
        how = ("Verify the attestation's own bundle the same way"
               + ("; the evidence file's BLAKE3 must be the evidence digest it signs" if c.evidence_checked else ""))
        out.append(Check(f"Attachment {i + 1}: the {c.claim} attestation at index {c.index} is proved in the same "
                         f"log (its own checkpoint, of {c.tree_size} entries, signed by the same log key; that the "
                         f"two checkpoints are consistent is what provenance audit checks), signed by {c.attester}"
                         + (", and its evidence file is the one it signs." if c.evidence_checked else "."), how + "."))
    return tuple(out)


def _b64(report: BundleReport) -> str:
    return base64.b64encode(report.root).decode()


def failed_checks(part: str, message: str) -> tuple[Check, ...]:
    """What to do with a bundle that failed: the failing check, and how to see the failure again."""
    return (Check(f"FAILED at {safe_text(part)}: {message}",
                  "Run the verify command below: it stops at the same part with the same message. Ask whoever "
                  "supplied the bundle for an intact copy, or for the log key it was made under."),)
