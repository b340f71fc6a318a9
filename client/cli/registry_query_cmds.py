"""Registry read commands: ``show``, ``lineage``, ``find``, ``prove``, ``verify`` (offline). Thin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.cli._connect import ledger_client, registry_client
from client.cli._registry_common import (
    add_common,
    add_policy_arg,
    fail_json,
    pick_checkpoint,
    policy_log_key,
    print_json,
    read_log_key,
    read_policy,
    resolve_ref,
    trusted_key_and_advance,
)
from client.core.records.display import safe_text
from client.core.records.jsonform import describe, named_label, record_json, short
from client.core.trust import evidence_text
from client.errors import InconsistencyError, InvalidInputError, VerificationError
from client.remote.registry import RemoteRecord

if TYPE_CHECKING:
    from client.core.witness_policy import WitnessPolicy


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("show", help="show a record (REF: id, @INDEX or NAME@VERSION), proved in the log")
    p.add_argument("ref")
    p.add_argument("--log-key", default=None, metavar="KEY|FILE", help="pin the log key (default: trust state)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE", help="trust state file")
    add_policy_arg(p)
    add_common(p)
    p.set_defaults(func=_show)

    p = subparsers.add_parser("lineage", help="a record's ancestors (or descendants) as a tree")
    p.add_argument("ref")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--descendants", action="store_true")
    p.add_argument("--model-card", action="store_true",
                   help="print the Hugging Face model-card YAML header (base_model, base_model_relation) instead")
    add_common(p)
    p.set_defaults(func=_lineage)

    p = subparsers.add_parser("find", help="records containing a manifest, file, tensor or chunk digest")
    p.add_argument("digest", help="64 hex digits (BLAKE3), optionally prefixed blake3:, or sha256:<hex> (a file "
                                  "digest an OMS signature lists)")
    p.add_argument("--kind", action="append", choices=["manifest", "file", "tensor", "chunk", "oms-file"], default=[])
    add_common(p)
    p.set_defaults(func=_find)

    p = subparsers.add_parser("prove", help="write a self-contained proof bundle for a record")
    p.add_argument("ref")
    p.add_argument("--lineage-to", default=None, metavar="ANCESTOR", help="include the lineage path to ANCESTOR")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="default: stdout")
    p.add_argument("--format", choices=["json", "tlog-proof"], default="json",
                   help="tlog-proof: the C2SP text form; a record too large for its 64 KiB 'extra' line is "
                        "written without it (hash-only; hand the entry over with --entry-out)")
    p.add_argument("--entry-out", type=Path, default=None, metavar="FILE",
                   help="with --format tlog-proof: also write the record's entry bytes to FILE")
    p.add_argument("--log-key", default=None, metavar="KEY|FILE", help="pin the log key (default: trust state)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE", help="trust state file")
    add_policy_arg(p)
    add_common(p)
    p.set_defaults(func=_prove)

    p = subparsers.add_parser("verify", help="verify a proof bundle offline")
    p.add_argument("bundle", type=Path)
    p.add_argument("--log-key", default=None, metavar="KEY|FILE",
                   help="the log's verifier key (required unless --policy lists the log)")
    add_policy_arg(p)
    p.add_argument("--entry", type=Path, default=None, metavar="FILE",
                   help="a tlog-proof's entry bytes, for a proof without an 'extra' line (prove --entry-out)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--accept-unproven-key-status", action="store_true",
                   help="accept a bundle without the log's key-status note (made before bundles had one); the "
                        "report then warns that a signer's revocation or rotation may be missing")
    p.set_defaults(func=_verify)


def _label(r: RemoteRecord) -> str:
    s = r.signed.record.statement
    return named_label(s, r.id) or f"{s.KIND.label} [{short(r.id)}]"


def _record_obj(r: RemoteRecord) -> dict[str, Any]:
    return {"id": r.id.hex(), "index": r.index, "record": record_json(r.signed.record),
            "description": describe(r.signed.record.statement)}


def _show(args: argparse.Namespace) -> int:
    with registry_client(args) as reg:
        r = reg.by_id(resolve_ref(reg, args.ref))
        r.signed.verify()
        signer = reg.identity(key=r.signed.record.signer)
        about = reg.about(r.id)
    try:
        size, witnessed = _prove_included(args, r)
    except InconsistencyError as err:
        sys.stderr.write(evidence_text(err))
        return 1
    if args.json:
        obj = _record_obj(r)
        obj["included_in_tree_size"] = size
        obj["witnessed_by"] = witnessed
        obj["signer"] = {"name": signer.name, "status": signer.status}
        obj["about"] = [_record_obj(a) for a in about]
        print_json(obj)
        return 0
    print(f"{_label(r)} at index {r.index}")
    print(f"  {describe(r.signed.record.statement)}")
    print(f"  id {r.id.hex()}")
    print(f"  signed by {signer.name!r} (key {signer.status}); signature verified")
    print(f"  proved included in the log's checkpoint of size {size} (consistent with the one trusted before)")
    if witnessed is not None:
        print(f"  that checkpoint meets the witness policy: cosigned by {', '.join(witnessed) or 'no one needed'}")
    for a in about:
        print(f"  claim at index {a.index}: {describe(a.signed.record.statement)}")
    return 0


def _prove_included(args: argparse.Namespace, r: RemoteRecord) -> tuple[int, list[str] | None]:
    """Trust the latest checkpoint (consistency-checked; with --policy the cosigned one, which must meet it)
    and verify the record's inclusion in it. Returns its size and, with a policy, the witnesses that cosigned."""
    from client.core.checkpoint import open_checkpoint
    from client.core.merkle import verify_inclusion
    from client.core.note import Verifier
    from client.core.witnessed import check_signatures

    policy = read_policy(args.policy)
    with ledger_client(args) as c:
        note = pick_checkpoint(c, policy)
        pinned = read_log_key(args.log_key) if args.log_key else None
        key = trusted_key_and_advance(c, note, pinned, args.state, policy)
        cp = open_checkpoint(note, Verifier.from_text(key))
        if r.index >= cp.size:
            raise VerificationError(f"the record at index {r.index} is not yet in the newest checkpoint the "
                                    f"witnesses cosigned (size {cp.size}); try again shortly")
        proof = c.inclusion_proof(index=r.index, tree_size=cp.size)
    verify_inclusion(r.index, cp.size, r.id, list(proof.hashes), cp.root)
    if policy is None:
        return cp.size, None
    sig = check_signatures(note, Verifier.from_text(key), policy)
    return cp.size, [w.name for w in sig.witnesses if w.status == "verified"]


def _lineage(args: argparse.Namespace) -> int:
    with registry_client(args) as reg:
        rid = resolve_ref(reg, args.ref)
        if args.model_card:  # Hugging Face lineage out (client/cli/hf_cmds.py)
            from client.cli.hf_cmds import card_text

            sys.stdout.write(card_text(reg, rid))
            return 0
        nodes, edges = reg.lineage(rid, args.depth, descendants=args.descendants)
    if args.json:
        print_json({"records": [_record_obj(n) for n in nodes],
                    "edges": [{"child": e.child.hex(), "parent": e.parent.hex(), "relation": e.relation,
                               "depth": e.depth} for e in edges]})
        return 0
    by_id = {n.id: n for n in nodes}
    below: dict[bytes, list[tuple[bytes, str]]] = {}
    for e in edges:
        a, b = (e.child, e.parent) if not args.descendants else (e.parent, e.child)
        below.setdefault(a, []).append((b, e.relation))
    shown: set[bytes] = set()

    def walk(node: bytes, prefix: str) -> None:
        kids = below.get(node, [])
        for i, (kid, rel) in enumerate(kids):
            last = i == len(kids) - 1
            again = " (shown above)" if kid in shown else ""
            print(f"{prefix}{'└── ' if last else '├── '}{safe_text(rel)}: {_label(by_id[kid])}{again}")
            if not again:
                shown.add(kid)
                walk(kid, prefix + ("    " if last else "│   "))

    print(_label(by_id[rid]))
    shown.add(rid)
    walk(rid, "")
    return 0


def _find(args: argparse.Namespace) -> int:
    from client.core.records import Digest

    text = args.digest if ":" in args.digest else "blake3:" + args.digest
    parsed = Digest.parse(text)
    kinds = args.kind
    if parsed.algorithm.value == "sha256":  # SHA-256 file digests come from OMS attestations (docs/registry.md)
        if any(k != "oms-file" for k in kinds):
            raise InvalidInputError("a sha256: digest is found only as an oms-file (BLAKE3 names the other kinds)")
        kinds = ["oms-file"]
    digest = parsed.value
    with registry_client(args) as reg:
        matches = reg.find(digest, kinds)
    if args.json:
        print_json([{"kind": k, **_record_obj(r)} for k, r in matches])
        return 0
    if not matches:
        print("no record contains this digest")
        return 0
    for i, (kind, r) in enumerate(matches):
        first = " (first registration)" if i == 0 else ""
        if kind == "oms-file":
            print(f"index {r.index}: {_label(r)} has a file with this SHA-256, per an OMS signature about it")
        elif kind == "oms-attestation":
            print(f"index {r.index}: {_label(r)}: an OMS signature listing the file")
        else:
            print(f"index {r.index}: {_label(r)} contains it as a {kind}{first}")
    return 0


def _prove(args: argparse.Namespace) -> int:
    from client.core.bundle import format_tlog_proof, parse, verify_bundle
    from client.core.bundle.tlog_proof import TlogProof, extra_fits

    with registry_client(args) as reg:
        rid = resolve_ref(reg, args.ref)
        ancestor = resolve_ref(reg, args.lineage_to) if args.lineage_to else None
        data = reg.prove(rid, ancestor)
    bundle = parse(data)
    pinned = read_log_key(args.log_key) if args.log_key else None
    policy = read_policy(args.policy)
    try:
        with ledger_client(args) as c:
            key = trusted_key_and_advance(c, bundle.checkpoint, pinned, args.state, policy)
    except InconsistencyError as err:
        sys.stderr.write(evidence_text(err))
        return 1
    # Never hand out a bundle that does not verify; one without key status (a store indexed before
    # key-status notes) is handed out with a warning, and `verify` refuses it unless told to accept it.
    report = verify_bundle(data, key, accept_unproven_key_status=True, policy=policy)
    if report.key_status_warning is not None:
        print(f"warning: {report.key_status_warning}", file=sys.stderr)
    if args.format == "tlog-proof":
        r = bundle.records[0]
        fits = extra_fits(r.leaf)
        data = format_tlog_proof(TlogProof(r.leaf if fits else None, r.index, r.inclusion_proof, bundle.checkpoint))
        if args.entry_out is not None:
            args.entry_out.write_bytes(r.leaf)
        if not fits:
            print(f"note: the record is {len(r.leaf)} bytes, too large for a tlog-proof 'extra' line (64 KiB); "
                  "the proof is written without it: verify with --entry FILE"
                  + ("" if args.entry_out is not None else " (write the entry with --entry-out FILE)"),
                  file=sys.stderr)
    elif args.entry_out is not None:
        raise InvalidInputError("--entry-out goes with --format tlog-proof")
    if args.output is None:
        sys.stdout.buffer.write(data)
    else:
        args.output.write_bytes(data)
        if args.json:
            print_json({"bundle": str(args.output), "subject": rid.hex(), "records": len(bundle.records)})
        else:
            print(f"wrote {args.output}: {len(bundle.records)} records, verified against log key {key}")
    return 0


def _supplied_entry(path: Path | None, data: bytes) -> bytes | None:
    """``verify --entry FILE``'s bytes; a usage error (exit 2) when a hash-only tlog-proof has none."""
    if path is None:
        if b"\nextra " not in data.partition(b"\n\n")[0]:
            raise InvalidInputError("this tlog-proof has no 'extra' line: give the record's entry with --entry FILE")
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read --entry {path}: {err}") from err


def _verify(args: argparse.Namespace) -> int:
    from client.core.bundle import report_json, report_text, verify_bundle, verify_tlog_proof
    from client.core.bundle.report import signatures_json, witness_lines
    from client.core.bundle.tlog_proof import HEADER
    from client.core.bundle.verify import BundleQuorumError

    policy = read_policy(args.policy)
    try:
        data = args.bundle.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {args.bundle}: {err}") from err
    key = _verify_key(args.log_key, policy, data)
    try:
        if data.startswith(HEADER.encode() + b"\n"):
            report = verify_tlog_proof(data, key, _supplied_entry(args.entry, data), policy=policy)
        else:
            report = verify_bundle(data, key, accept_unproven_key_status=args.accept_unproven_key_status,
                                   policy=policy)
    except VerificationError as err:
        sig = err.report if isinstance(err, BundleQuorumError) else None
        if args.json:
            print_json(fail_json(err) | ({"witnesses": signatures_json(sig)} if sig is not None else {}))
        print(f"NOT VERIFIED: {err}", file=sys.stderr)
        if sig is not None:
            print("\n".join(witness_lines(sig)).lstrip("\n"), file=sys.stderr)
        return 1
    if args.json:
        print_json(report_json(report))
    else:
        print(report_text(report), end="")
    return 0


def _verify_key(log_key: str | None, policy: WitnessPolicy | None, data: bytes) -> str:
    """``--log-key``, else the key ``--policy`` lists for the bundle's log; a usage error when neither gives one."""
    if log_key is not None:
        return read_log_key(log_key)
    origin = _claimed_origin(data)
    key = policy_log_key(policy, origin) if origin is not None else None
    if key is None:
        why = "the policy does not list this bundle's log" if policy is not None else "no --policy either"
        raise InvalidInputError(f"give --log-key (or a --policy that lists the log): {why}")
    return key


def _claimed_origin(data: bytes) -> str | None:
    """The origin a bundle or tlog-proof says its checkpoint is of (unchecked: only to pick a key to check with)."""
    import json

    from client.core.bundle.tlog_proof import HEADER, parse_tlog_proof
    from client.errors import FormatError

    try:
        if data.startswith(HEADER.encode() + b"\n"):
            return parse_tlog_proof(data).checkpoint.split(b"\n", 1)[0].decode()
        obj = json.loads(data)
        origin = obj.get("origin") if isinstance(obj, dict) else None
        return origin if isinstance(origin, str) else None
    except (FormatError, ValueError, UnicodeDecodeError):
        return None
