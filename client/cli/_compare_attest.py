"""``compare A B --attest``: log the comparison as a signed ``descent-test`` attestation. Thin.

Subject and object are the registered records of A and B: given as REFs, or found by the
manifest digest of each model (the earliest checkpoint registered with exactly those files). The
evidence digest is BLAKE3 of the canonical JSON report (:func:`client.core.descent.ledger_evidence.canonical_report`),
written to ``--evidence-out`` so it can be shown later; the summary states the verdict, p-value and
shared fractions. The two records' log indexes and times become the comparison's ledger order
(:func:`client.core.descent.direction.ledger_order`), in the report too: the strong direction
evidence, as the server reports the indexes (signatures checked, inclusion not proved here).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.cli._connect import add_tls_args, registry_client
from client.cli._registry_common import load_signer, resolve_ref
from client.core.records import Claim, Kind
from client.errors import InvalidInputError, NotFoundError
from client.remote.registry import RegistryClient

if TYPE_CHECKING:  # numpy and the descent core load only when a comparison runs
    from client.core.descent.compare import Comparison
from client.core.descent.direction import Registration, ledger_order


def add_flags(p: argparse.ArgumentParser) -> None:
    from client.remote import DEFAULT_SERVER

    g = p.add_argument_group("attest", "log the result as a signed attestation about the two registered records")
    g.add_argument("--attest", action="store_true", help="register a descent-test attestation (needs --key)")
    g.add_argument("--key", type=Path, default=None, metavar="FILE", help="the attesting key (provenance keygen)")
    g.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"default {DEFAULT_SERVER}")
    g.add_argument("--subject", default=None, metavar="REF", help="A's record (default: found by A's manifest)")
    g.add_argument("--object", default=None, metavar="REF", help="B's record (default: found by B's manifest)")
    g.add_argument("--evidence-out", type=Path, default=None, metavar="FILE",
                   help="write the canonical JSON report (its BLAKE3 is the evidence digest)")
    add_tls_args(p)  # for --server


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(4)
    except OSError as err:
        raise InvalidInputError(f"cannot read {path}: {err}") from err


def _by_manifest(reg: RegistryClient, path: Path, flag: str) -> bytes:
    from client.api import hash_manifest
    from client.core.descent.fingerprint import MAGIC

    if path.is_file() and _head(path) == MAGIC:
        raise InvalidInputError(f"{path} is a fingerprint, which names no manifest: give {flag} REF")
    _, digest, _, _ = hash_manifest(path)
    for kind, r in reg.find(digest, ["manifest"]):
        if kind == "manifest" and r.signed.record.kind is Kind.CHECKPOINT:
            return r.id
    raise NotFoundError(f"no registered checkpoint has the manifest of {path} (blake3:{digest.hex()}); "
                        f"give {flag} REF")


def _registration(reg: RegistryClient, rid: bytes) -> Registration:
    r = reg.by_id(rid)
    r.signed.verify()
    return Registration(r.id, r.index, r.signed.record.timestamp)


def attest(args: argparse.Namespace, result: Comparison) -> tuple[dict[str, Any], Comparison]:
    """Register the attestation; returns what to print about it, and ``result`` with the ledger order."""
    from client.api import Registrar
    from client.core.descent import ledger_evidence as dl

    if args.key is None:
        raise InvalidInputError("--attest needs --key")
    with Registrar(load_signer(args.key), args.server, client=registry_client(args)) as r:
        subject = resolve_ref(r.client, args.subject) if args.subject else _by_manifest(r.client, args.a, "--subject")
        obj = resolve_ref(r.client, args.object) if args.object else _by_manifest(r.client, args.b, "--object")
        order = ledger_order(_registration(r.client, subject), _registration(r.client, obj), proved=False)
        result = dataclasses.replace(result, direction=dataclasses.replace(result.direction, ledger=order))
        report = dl.canonical_report(result, subject, obj)
        if args.evidence_out is not None:
            args.evidence_out.write_bytes(report)
        evidence = dl.evidence_digest(report)
        text = dl.summary(result)
        got = r.attest(Claim.DESCENT_TEST.value, subject, obj, evidence=evidence, summary=text)
    return {"id": got.id.hex(), "index": got.index, "claim": Claim.DESCENT_TEST.value, "subject": subject.hex(),
            "object": obj.hex(), "evidence": evidence.text(), "summary": text}, result
