"""Descent against the ledger: ``match SUSPECT`` and ``verify-fingerprint FILE`` (a reveal). Thin.

``match`` hashes and fingerprints a local model, asks the ledger's ``Match``, then re-checks what
it can without trusting the server (:mod:`client.core.descent.ledger_evidence`): each reported record's
signature and inclusion in the log's latest checkpoint (consistency-checked against the trust
state), each exact candidate's manifest against its signed digest with the shared fractions
recomputed, and for the top related candidates the published fingerprint against its signed
digest with the descent test rerun locally.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from client.cli._connect import ledger_client, registry_client
from client.cli._registry_common import add_common, print_json, read_log_key, resolve_ref
from client.core.records.display import safe_text
from client.core.signer_time import signer_time
from client.errors import InconsistencyError, InvalidInputError, ProvenanceError, VerificationError

RECHECK_DEFAULT = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("match", help="which registered checkpoints share content with, or descend like, a model",
                       description="Hash and fingerprint SUSPECT and ask the ledger which registered checkpoints "
                                   "share exact tensors or chunks with it, and which published fingerprints the "
                                   "descent test finds related; each with its record, log index and time.")
    p.add_argument("suspect", type=Path, help="model file or folder (or a .plfp fingerprint: statistical only)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    p.add_argument("--limit", type=int, default=20, help="candidates of each kind (default 20)")
    p.add_argument("--recheck", type=int, default=RECHECK_DEFAULT, metavar="N",
                   help=f"rerun the descent test locally on the top N related candidates (default {RECHECK_DEFAULT})")
    p.add_argument("--log-key", default=None, metavar="KEY|FILE", help="pin the log key (default: trust state)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE", help="trust state file")
    add_common(p)
    p.set_defaults(func=_match)

    p = sub.add_parser("verify-fingerprint", help="reveal: check fingerprint bytes against a record's commitment",
                       description="Check that FILE (a fingerprint, or a model to fingerprint) is the fingerprint a "
                                   "checkpoint record publishes or commits to: offline against a proof bundle "
                                   "(--bundle with --log-key), or against a record on a server (--record).")
    p.add_argument("file", type=Path, help="fingerprint file (.plfp) or model")
    p.add_argument("--bundle", type=Path, default=None, help="proof bundle of the record (provenance prove)")
    p.add_argument("--log-key", default=None, metavar="KEY|FILE", help="the log's verifier key (with --bundle)")
    p.add_argument("--record", default=None, metavar="REF", help="the record on --server (id, @INDEX, NAME@VERSION)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE", help="trust state file (with --record)")
    add_common(p)
    p.set_defaults(func=_verify_fingerprint)


def _when(ts: int) -> str:
    """A record's time (the signer's own claim): total, see :mod:`client.core.signer_time`."""
    return signer_time(ts)


def _is_fingerprint_file(path: Path) -> bool:
    from client.core.descent.fingerprint import MAGIC

    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == MAGIC
    except OSError as err:
        raise InvalidInputError(f"cannot read {path}: {err}") from err


def _suspect(path: Path) -> tuple[Any, Any, bytes]:
    """(manifest or None for a fingerprint file, fingerprint, its canonical bytes)."""
    from client.cli.compare_cmd import load_fingerprint
    from client.hashing import hash_path

    fp = load_fingerprint(path)
    manifest = None if _is_fingerprint_file(path) else hash_path(str(path))
    return manifest, fp, fp.encode()


def _record_facts(r: Any, names: dict[bytes, str], reg: Any) -> dict[str, Any]:
    from client.core.records import ModelCheckpoint, key_text

    rec = r.signed.record
    s = rec.statement
    if rec.signer not in names:
        try:
            names[rec.signer] = reg.identity(key=rec.signer).name
        except ProvenanceError:  # a name is a courtesy; the key below is what is proved
            names[rec.signer] = "?"
    out: dict[str, Any] = {"id": r.id.hex(), "index": r.index, "signer": key_text(rec.signer),
                           "signer_name": names[rec.signer], "timestamp": rec.timestamp, "time": _when(rec.timestamp)}
    if isinstance(s, ModelCheckpoint):
        out.update(model=s.model, version=s.version, step=s.step)
    return out


def _match(args: argparse.Namespace) -> int:
    from client.core.descent import ledger_evidence as dl
    from client.core.trust import evidence_text

    if not 0 < args.alpha < 1:
        raise InvalidInputError("--alpha must be between 0 and 1")
    manifest, fp, fp_bytes = _suspect(args.suspect)
    digests = dl.suspect_digests(manifest, fp)
    names: dict[bytes, str] = {}
    exact_out: list[dict[str, Any]] = []
    related_out: list[dict[str, Any]] = []
    with registry_client(args) as reg:
        exact, related, searched = reg.match(digests.tensors, digests.chunks, fp_bytes, alpha=args.alpha,
                                             limit=args.limit)
        for c in exact:
            c.record.signed.verify()
            check = dl.check_exact(digests, c.record.signed.record, reg.manifest(dl.checkpoint_of(
                c.record.signed.record).manifest), c.tensors, c.chunks)
            exact_out.append({**_record_facts(c.record, names, reg), "how": "shared tensors or chunks",
                              "shared_tensors": check.shared_tensors, "shared_chunks": check.shared_chunks,
                              "suspect_in_candidate": check.suspect_in_candidate,
                              "candidate_in_suspect": check.candidate_in_suspect,
                              "server_claim_confirmed": check.confirms_server, "_r": c.record})
        for rank, m in enumerate(related):
            m.record.signed.verify()
            item: dict[str, Any] = {**_record_facts(m.record, names, reg), "how": "descent test",
                                    "fingerprint": f"blake3:{m.fingerprint_digest.hex()}", "verdict": m.verdict,
                                    "log10_p": m.log10_p, "adjusted_log10_p": m.adjusted_log10_p,
                                    "significant": m.significant, "screen_score": m.screen_score,
                                    "rechecked": None, "_r": m.record}
            if rank < args.recheck and m.significant:
                theirs = dl.published_fingerprint(m.record.signed.record, reg.fingerprint(m.fingerprint_digest))
                result, adjusted = dl.recheck_related(fp, theirs, args.alpha, searched)
                item["rechecked"] = {"verdict": result.verdict, "basis": result.basis, "log10_p": result.log10_p,
                                     "adjusted_log10_p": adjusted,
                                     "agrees": result.verdict == m.verdict and (adjusted < math.log10(args.alpha)
                                                                                or result.basis == "exact")}
            related_out.append(item)
    try:
        items = exact_out + related_out
        size = _prove_all(args, [item.pop("_r") for item in items])
        for item in items:
            item["proved_in_tree_size"] = size
    except InconsistencyError as err:
        sys.stderr.write(evidence_text(err))
        return 1
    if args.json:
        print_json({"suspect": str(args.suspect), "fingerprint": fp.digest(), "searched_fingerprints": searched,
                    "alpha": args.alpha, "exact": dl.finite_json(exact_out), "related": dl.finite_json(related_out)})
        return 0
    _print_text(args, exact_out, related_out, searched)
    return 0


def _prove_all(args: argparse.Namespace, records: list[Any]) -> int:
    """Trust the log's latest checkpoint (consistency-checked against the trust state) and verify every
    record's inclusion in it; returns its tree size (0 when there are no records)."""
    from client.cli._registry_common import trusted_key_and_advance
    from client.core.checkpoint import open_checkpoint
    from client.core.merkle import verify_inclusion
    from client.core.note import Verifier

    if not records:
        return 0
    with ledger_client(args) as c:
        note = c.checkpoint()
        pinned = read_log_key(args.log_key) if args.log_key else None
        key = trusted_key_and_advance(c, note, pinned, args.state)
        cp = open_checkpoint(note, Verifier.from_text(key))
        for r in records:
            proof = c.inclusion_proof(index=r.index, tree_size=cp.size)
            verify_inclusion(r.index, cp.size, r.id, list(proof.hashes), cp.root)
    return int(cp.size)


def _label(item: dict[str, Any]) -> str:
    what = safe_text(f"{item.get('model', '?')} {item.get('version', '')}".strip())  # signer-chosen
    return (f"index {item['index']}: {what} [{item['id'][:12]}] signed by {item['signer_name']!r} "
            f"at {item['time']} (signer's clock)")


def _print_text(args: argparse.Namespace, exact: list[dict[str, Any]], related: list[dict[str, Any]],
                searched: int) -> None:
    from client.cli.compare_cmd import _fmt_p

    w = sys.stdout.write
    w(f"exact matches ({len(exact)}), earliest registration first:\n" if exact else "no exact matches\n")
    for e in exact:
        w(f"  {_label(e)}\n    shares {e['shared_tensors']} tensors, {e['shared_chunks']} chunks: "
          f"{e['suspect_in_candidate']:.1%} of the suspect's tensor bytes, {e['candidate_in_suspect']:.1%} of "
          f"the candidate's (recomputed from its signed manifest)\n")
    sig = [r for r in related if r["significant"]]
    w(f"related by the descent test ({len(sig)} of {searched} published fingerprints):\n" if sig
      else f"no published fingerprint (of {searched}) is related at alpha {args.alpha}\n")
    for r in sig:
        p = _fmt_p(r["adjusted_log10_p"]) if r["log10_p"] != float("-inf") else "0 (shared tensors)"
        check = r["rechecked"]
        again = "" if check is None else (" — rechecked locally: " + ("agrees" if check["agrees"] else
                                                                     f"DISAGREES ({check['verdict']})"))
        w(f"  {_label(r)}\n    {r['verdict']}, p {p} after {searched} fingerprints{again}\n")
    if exact or sig:
        w(f"every record above is signed and proved included in the log (tree size "
          f"{(exact + related)[0]['proved_in_tree_size']}); lower index = registered earlier\n")


def _fingerprint_bytes(path: Path) -> bytes:
    from client.cli.compare_cmd import load_fingerprint

    if _is_fingerprint_file(path):
        return path.read_bytes()  # exactly the bytes shown: never re-encoded
    data: bytes = load_fingerprint(path).encode()
    return data


def _verify_fingerprint(args: argparse.Namespace) -> int:
    from client.core.descent import ledger_evidence as dl
    from client.core.trust import evidence_text

    data = _fingerprint_bytes(args.file)
    if (args.bundle is None) == (args.record is None):
        raise InvalidInputError("give either --bundle (with --log-key; offline) or --record (with --server)")
    try:
        if args.bundle is not None:
            record, index, proof = _from_bundle(args)
        else:
            record, index, proof = _from_server(args)
        s = dl.check_reveal(record, data)
    except InconsistencyError as err:
        sys.stderr.write(evidence_text(err))
        return 1
    except VerificationError as err:
        if args.json:
            print_json({"verified": False, "error": str(err), "type": type(err).__name__})
        print(f"NOT VERIFIED: {err}", file=sys.stderr)
        return 1
    assert s.fingerprint is not None
    if args.json:
        print_json({"verified": True, "index": index, "model": s.model, "version": s.version,
                    "fingerprint": f"blake3:{s.fingerprint.digest.hex()}", "mode": s.fingerprint.mode,
                    "timestamp": record.timestamp, "proof": proof})
    else:
        print(f"VERIFIED: {args.file} is the fingerprint {s.fingerprint.mode} by checkpoint {s.model!r} "
              f"{safe_text(s.version)} at index {index} (blake3:{s.fingerprint.digest.hex()}); {proof}")
    return 0


def _from_bundle(args: argparse.Namespace) -> tuple[Any, int, str]:
    from client.core.bundle import verify_bundle

    if args.log_key is None:
        raise InvalidInputError("--bundle needs --log-key")
    try:
        raw = args.bundle.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {args.bundle}: {err}") from err
    report = verify_bundle(raw, read_log_key(args.log_key))
    subject = next(r for r in report.records if r.role == "subject")
    return (subject.signed.record, subject.index,
            f"bundle verified offline: included in the checkpoint of size {report.tree_size}")


def _from_server(args: argparse.Namespace) -> tuple[Any, int, str]:
    with registry_client(args) as reg:
        r = reg.by_id(resolve_ref(reg, args.record))
    r.signed.verify()
    size = _prove_all(args, [r])
    return r.signed.record, r.index, f"record signature verified, proved included in the checkpoint of size {size}"
