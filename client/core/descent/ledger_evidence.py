"""Descent evidence against the ledger, checked by the client: matches, reveals, attestations. Pure.

Nothing a server says about a match is taken on trust here: a candidate's manifest or published
fingerprint is checked against the digest its *signed* record names before anything is computed
from it, and the shared fractions and the descent test are recomputed locally. A committed
fingerprint is revealed by checking that BLAKE3 of the bytes shown is the digest the record signs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import blake3

from client.core.descent.compare import Comparison, compare
from client.core.descent.fingerprint import Fingerprint, decode
from client.core.manifest.codec import decode as decode_manifest
from client.core.manifest.model import FileEntry, Manifest
from client.core.records import Digest, DigestAlgorithm, ModelCheckpoint, Record
from client.errors import VerificationError


class RevealError(VerificationError):
    """Fingerprint bytes do not match the commitment of the record they are shown against."""


class CandidateError(VerificationError):
    """Content a server handed out for a candidate does not match the digest its signed record names."""


@dataclass(frozen=True, slots=True)
class SuspectDigests:
    """What a match asks about: the distinct digests of the suspect's *informative* tensors (never zero
    biases or LayerNorm ones, which independent models share byte for byte; docs/descent.md §2), its
    distinct chunk digests but the all-zero chunk's, and the byte size (elements, for a fingerprint file)
    of every tensor digest."""

    tensors: list[bytes]
    chunks: list[bytes]
    tensor_bytes: dict[bytes, int]


def _files(m: Manifest) -> list[FileEntry]:
    return [e for e in m.files if isinstance(e, FileEntry)]


def suspect_digests(manifest: Manifest | None, fp: Fingerprint) -> SuspectDigests:
    """The suspect's digests from its manifest (None for a fingerprint file) and fingerprint. The
    fingerprint's tensor digests are the manifest's for unquantized tensors, and the only ones for
    formats the manifest layer does not parse."""
    sizes: dict[bytes, int] = {}
    chunks: dict[bytes, None] = {}
    if manifest is not None:
        zero = blake3.blake3(bytes(manifest.chunk_size)).digest()
        for f in _files(manifest):
            for t in f.tensors:
                sizes.setdefault(t.blake3, t.end - t.start)
            chunks.update(dict.fromkeys(c for c in f.chunks if c != zero))
    for e in fp.entries:
        sizes.setdefault(e.digest, e.numel)
    informative = dict.fromkeys(e.digest for e in fp.entries if e.sketch is not None)
    return SuspectDigests(list(informative), list(chunks), sizes)


def checkpoint_of(record: Record) -> ModelCheckpoint:
    s = record.statement
    if not isinstance(s, ModelCheckpoint):
        raise CandidateError(f"the candidate is a {s.KIND.label} record, not a checkpoint")
    return s


@dataclass(frozen=True, slots=True)
class ExactCheck:
    """Recomputed from the candidate's manifest: shared informative tensors, and the bytes of those as a
    fraction of all tensor bytes of each side."""

    shared_tensors: int
    shared_chunks: int
    suspect_in_candidate: float  # fraction of the suspect's tensor bytes whose digests the candidate holds
    candidate_in_suspect: float  # fraction of the candidate's tensor bytes the suspect holds
    confirms_server: bool  # every digest the server said is shared is in the candidate's manifest


def check_exact(suspect: SuspectDigests, record: Record, manifest_bytes: bytes,
                claimed_tensors: tuple[int, ...], claimed_chunks: tuple[int, ...]) -> ExactCheck:
    """Check the candidate's manifest against its signed record, then recompute what is shared."""
    s = checkpoint_of(record)
    if blake3.blake3(manifest_bytes).digest() != s.manifest:
        raise CandidateError("the manifest served for the candidate is not the one its record names")
    files = _files(decode_manifest(manifest_bytes))
    theirs: dict[bytes, int] = {}
    their_chunks: set[bytes] = set()
    for f in files:
        for t in f.tensors:
            theirs.setdefault(t.blake3, t.end - t.start)
        their_chunks.update(f.chunks)
    shared = set(suspect.tensors) & set(theirs)
    mine_total = sum(suspect.tensor_bytes.values())
    their_total = sum(theirs.values())
    chunk_hits = [c for c in suspect.chunks if c in their_chunks]
    confirms = all(0 <= i < len(suspect.tensors) and suspect.tensors[i] in theirs for i in claimed_tensors) and all(
        0 <= i < len(suspect.chunks) and suspect.chunks[i] in their_chunks for i in claimed_chunks)
    return ExactCheck(
        shared_tensors=len(shared), shared_chunks=len(chunk_hits),
        suspect_in_candidate=sum(suspect.tensor_bytes[d] for d in shared) / mine_total if mine_total else 0.0,
        candidate_in_suspect=sum(theirs[d] for d in shared) / their_total if their_total else 0.0,
        confirms_server=confirms,
    )


def published_fingerprint(record: Record, data: bytes) -> Fingerprint:
    """The candidate's published fingerprint, after checking its bytes against the record's signed digest."""
    s = checkpoint_of(record)
    if s.fingerprint is None or not s.fingerprint.published:
        raise CandidateError("the candidate's record publishes no fingerprint")
    if blake3.blake3(data).digest() != s.fingerprint.digest:
        raise CandidateError("the fingerprint served for the candidate is not the one its record names")
    return decode(data, source="candidate fingerprint")


def recheck_related(suspect: Fingerprint, candidate: Fingerprint, alpha: float, searched: int
                    ) -> tuple[Comparison, float]:
    """The descent test rerun locally, and its statistical log10 p-value times ``searched`` (as the server's)."""
    result = compare(suspect, candidate, alpha=alpha)
    adjusted = min(0.0, result.statistical_log10_p + math.log10(max(1, searched)))
    return result, adjusted


def check_reveal(record: Record, data: bytes) -> ModelCheckpoint:
    """Check that ``data`` is the fingerprint ``record`` publishes or commits to. Raises :class:`RevealError`."""
    s = record.statement
    if not isinstance(s, ModelCheckpoint):
        raise RevealError(f"the record is a {s.KIND.label} record; only a checkpoint carries a fingerprint")
    if s.fingerprint is None:
        raise RevealError(f"checkpoint {s.model!r} {s.version} carries no fingerprint commitment")
    got = blake3.blake3(data).digest()
    if got != s.fingerprint.digest:
        raise RevealError(f"the fingerprint shown has digest blake3:{got.hex()}, but checkpoint {s.model!r} "
                          f"{s.version} commits to blake3:{s.fingerprint.digest.hex()}")
    return s


def finite_json(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (canonical JSON cannot hold them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def canonical_report(result: Comparison, subject: bytes, obj: bytes) -> bytes:
    """The evidence of a ``compare --attest``: the comparison's JSON with the two record ids, canonical
    (sorted keys, no spaces, UTF-8). Its BLAKE3 is the attestation's evidence digest."""
    report = finite_json(result.to_json())
    report["subject"], report["object"] = subject.hex(), obj.hex()
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def evidence_digest(report: bytes) -> Digest:
    return Digest(DigestAlgorithm.BLAKE3, blake3.blake3(report).digest())


def summary(result: Comparison) -> str:
    """One line for the attestation: verdict, p-value and shared fractions (what docs/descent.md reports)."""
    p = "0 (exact)" if result.basis == "exact" else (
        f"{result.p_value:.3g}" if result.log10_p > -300 else f"1e{result.log10_p:.0f}")
    return (f"descent test: {result.verdict} ({result.basis}), p-value {p}, alpha {result.alpha}; "
            f"shared fraction a_in_b {result.shared_a_in_b:.4f}, b_in_a {result.shared_b_in_a:.4f}")

