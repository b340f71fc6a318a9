"""OpenSSF Model Signing attestations in the registry: checked before submission, indexed at admission.

An ``oms-signature`` attestation (docs/records.md) carries an OMS document about checkpoint
``subject``. :func:`prepare` runs outside the sequencer: the record-level check
(:func:`client.core.records.oms_claim.check_oms_attestation`: the DSSE signature and the object),
then the subject must be a logged checkpoint whose stored manifest the statement agrees with --
every file's BLAKE3 for a BLAKE3 statement; for a SHA-256 one the set of file paths (the registry
holds BLAKE3 only: the registrant's client checked the SHA-256 digests against the files). :func:`admit`
runs in the sequencer and writes one posting per SHA-256 file digest: ``rO digest index -> empty``,
which ``provenance find sha256:<hex>`` reads (docs/registry.md).

An oms-signature attestation that reaches the sequencer unprepared (the plain log API) is refused:
the manifest comparison needs reads the sequencer does not do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from client.core.manifest import codec
from client.core.manifest.oms_verify import check_paths, compare_digests, manifest_files
from client.core.records import Attestation, Claim, ModelCheckpoint
from client.core.records.identity import NotAllowedError
from client.core.records.oms_claim import OmsCheck, OmsClaimError, check_oms_attestation
from client.errors import NotFoundError
from ledger.registry import keys as K
from ledger.registry.errors import UnknownReferenceError, WrongReferenceKindError
from ledger.registry.queries import RegistryReader

MAX_REPORTED = 5


class OmsManifestMismatchError(OmsClaimError):
    """The OMS statement's files are not the subject checkpoint's (per its stored manifest)."""


@dataclass(frozen=True, slots=True)
class OmsSummary:
    """A checked OMS attestation: the SHA-256 file digests to index (empty for a BLAKE3 statement)."""

    check: OmsCheck
    sha256_files: tuple[bytes, ...]


class _Poster(Protocol):
    def post(self, list_key: bytes, index: int, label: bytes = b"") -> None: ...


def prepare(s: Attestation, reader: RegistryReader) -> OmsSummary:
    """Check an oms-signature attestation against its subject checkpoint (module docstring). Raises the refusal."""
    check = check_oms_attestation(s)
    try:
        subject = reader.by_id(s.subject)
    except NotFoundError as err:
        raise UnknownReferenceError(f"attestation subject {s.subject.hex()} is not in the registry "
                                    "(register the checkpoint first)") from err
    cp = subject.signed.record.statement
    if not isinstance(cp, ModelCheckpoint):
        raise WrongReferenceKindError(f"the subject of an oms-signature attestation must be a checkpoint, "
                                      f"not a {cp.KIND.label}")
    manifest = codec.decode(reader.manifest(cp.manifest))
    stmt = check.document.statement
    diffs = (compare_digests(stmt, manifest_files(manifest)) if stmt.hash_type == "blake3"
             else check_paths(stmt, manifest))
    if diffs:
        shown = "; ".join(str(d) for d in diffs[:MAX_REPORTED])
        more = f" (and {len(diffs) - MAX_REPORTED} more)" if len(diffs) > MAX_REPORTED else ""
        raise OmsManifestMismatchError(f"the OMS statement does not match checkpoint {s.subject.hex()}'s "
                                       f"manifest: {shown}{more}")
    files = tuple(r.digest for r in stmt.resources) if stmt.hash_type == "sha256" else ()
    return OmsSummary(check, files)


def admit(w: _Poster, s: Attestation, summary: OmsSummary | None, index: int) -> None:
    """Index a prepared oms-signature attestation (no-op for other claims)."""
    if s.claim is not Claim.OMS_SIGNATURE:
        return
    if summary is None:
        raise NotAllowedError("an oms-signature attestation is admitted only through the registry's Register "
                              "call, which checks it against the checkpoint's manifest")
    for digest in dict.fromkeys(summary.sha256_files):
        w.post(K.OMS_FILE_POSTS + digest, index)
