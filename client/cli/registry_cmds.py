"""Registry write commands: ``keygen``, ``identity register|rotate|revoke``, ``register dataset|checkpoint``
(``register oms`` and ``--model-card`` live in ``oms_cmds.py`` and ``hf_cmds.py``), ``attest``, ``dispute``.
Thin: parse flags, call :mod:`client.api`, print."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from client.cli import hf_cmds, oms_cmds
from client.cli._connect import registry_client
from client.cli._registry_common import (
    add_common,
    load_signer,
    print_json,
    resolve_ref,
    split_ref,
    write_private_key,
)
from client.core.records import Claim, DatasetRelation, DatasetRole, Digest, ModelRelation, key_text, parse_key
from client.remote.registry import Registered


def _values(enum: Any) -> set[str]:
    return {m.value for m in enum}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keygen", help="create an Ed25519 signing key (file mode 0600); print the public key")
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_keygen)

    ident = subparsers.add_parser("identity", help="register, rotate or revoke a signer key under a name")
    isub = ident.add_subparsers(dest="identity_command", required=True, metavar="ACTION")
    p = isub.add_parser("register", help="register --key under NAME (signed by that key)")
    p.add_argument("name")
    add_common(p, key=True)
    p.set_defaults(func=_identity_register)
    p = isub.add_parser("rotate", help="make --new-key NAME's key (signed by the current --key)")
    p.add_argument("name")
    p.add_argument("--new-key", type=Path, required=True, metavar="FILE")
    add_common(p, key=True)
    p.set_defaults(func=_identity_rotate)
    p = isub.add_parser("revoke", help="revoke a key of NAME (default: --key itself)")
    p.add_argument("name")
    p.add_argument("--revoke", default=None, metavar="ed25519:KEY", help="the public key to revoke")
    add_common(p, key=True)
    p.set_defaults(func=_identity_revoke)

    reg = subparsers.add_parser("register", help="hash and register a dataset or a checkpoint")
    rsub = reg.add_subparsers(dest="register_command", required=True, metavar="KIND")
    p = rsub.add_parser("dataset", help="register the dataset at PATH")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--version", default="1")
    p.add_argument("--license", default="")
    p.add_argument("--source", action="append", default=[], metavar="TEXT", help="a source description (repeat)")
    p.add_argument("--parent", action="append", default=[], metavar="REF[:RELATION]",
                   help=f"parent dataset; relation one of {', '.join(sorted(_values(DatasetRelation)))}")
    add_common(p, key=True)
    p.set_defaults(func=_register_dataset)
    p = rsub.add_parser("checkpoint", help="register the checkpoint at PATH")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--step", type=int, required=True)
    p.add_argument("--run", default="")
    p.add_argument("--format", default=None, help="default: the tensor format found (e.g. safetensors)")
    p.add_argument("--parent", action="append", default=[], metavar="REF[:RELATION]",
                   help=f"parent checkpoint; relation one of {', '.join(sorted(_values(ModelRelation)))}")
    p.add_argument("--dataset", action="append", default=[], metavar="REF[:ROLE]",
                   help=f"training data; role one of {', '.join(sorted(_values(DatasetRole)))}")
    p.add_argument("--config-digest", default=None, metavar="ALG:HEX", help="digest of the training configuration")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fingerprint", choices=["auto", "publish", "commit", "none"], default="auto",
                   help="publish the model fingerprint (found by `match`), commit to its digest only (reveal "
                        "later), or none; default auto: publish when PATH holds a model, else none")
    p.add_argument("--fingerprint-out", type=Path, default=None, metavar="FILE",
                   help="also write the fingerprint bytes here (keep them to reveal a committed fingerprint)")
    hf_cmds.add_register_flags(p)
    add_common(p, key=True)
    p.set_defaults(func=_register_checkpoint)
    oms_cmds.add_register_parser(rsub, add_common)

    p = subparsers.add_parser("attest", help="sign a claim about records")
    p.add_argument("subject", metavar="SUBJECT_REF")
    p.add_argument("claim", choices=sorted(_values(Claim) - {Claim.OMS_SIGNATURE.value}),
                   help="(an oms-signature is recorded by `register oms`, which carries the OMS document)")
    p.add_argument("object", metavar="OBJECT", help="a record REF, or a manifest digest for weights-match-manifest")
    p.add_argument("--evidence", default=None, metavar="ALG:HEX")
    p.add_argument("--summary", default="")
    add_common(p, key=True)
    p.set_defaults(func=_attest)

    p = subparsers.add_parser("dispute", help="contest a record or a claim")
    p.add_argument("target", metavar="REF")
    p.add_argument("--reason", required=True)
    p.add_argument("--evidence", default=None, metavar="ALG:HEX")
    add_common(p, key=True)
    p.set_defaults(func=_dispute)


def _keygen(args: argparse.Namespace) -> int:
    from client.core.records import RecordSigner

    signer = RecordSigner.generate()
    write_private_key(args.out, signer)
    if args.json:
        print_json({"public_key": key_text(signer.public_key), "private_key_file": str(args.out)})
    else:
        print(key_text(signer.public_key))
    return 0


def _registrar(args: argparse.Namespace) -> Any:
    from client.api import Registrar

    return Registrar(load_signer(args.key), args.server, client=registry_client(args))


def _report(args: argparse.Namespace, what: str, got: Registered) -> int:
    if args.json:
        print_json({"id": got.id.hex(), "index": got.index, "duplicate": got.duplicate, "kind": what})
    else:
        note = " (already registered)" if got.duplicate else ""
        print(f"registered {what}: id {got.id.hex()} at index {got.index}{note}")
    return 0


def _identity_register(args: argparse.Namespace) -> int:
    with _registrar(args) as r:
        return _report(args, f"identity {args.name}", r.register_identity(args.name))


def _identity_rotate(args: argparse.Namespace) -> int:
    with _registrar(args) as r:
        return _report(args, f"rotation of {args.name}", r.rotate_identity(args.name, load_signer(args.new_key)))


def _identity_revoke(args: argparse.Namespace) -> int:
    key = parse_key(args.revoke) if args.revoke else None
    with _registrar(args) as r:
        return _report(args, f"revocation under {args.name}", r.revoke_identity(args.name, key))


def _register_dataset(args: argparse.Namespace) -> int:
    with _registrar(args) as r:
        parents = []
        for text in args.parent:
            ref, rel = split_ref(text, _values(DatasetRelation), "other")
            parents.append((resolve_ref(r.client, ref), rel))
        got = r.register_dataset(args.path, name=args.name, version=args.version, license=args.license,
                                 sources=args.source, parents=parents)
        return _report(args, f"dataset {args.name} {args.version}", got)


def _register_checkpoint(args: argparse.Namespace) -> int:
    from client.errors import InvalidInputError

    meta: dict[str, str] = {}
    for item in args.meta:
        k, sep, v = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--meta {item!r} must be KEY=VALUE")
        meta[k] = v
    with _registrar(args) as r:
        parents, datasets = [], []
        for text in args.parent:
            ref, rel = split_ref(text, _values(ModelRelation), "other")
            parents.append((resolve_ref(r.client, ref), rel))
        for text in args.dataset:
            ref, role = split_ref(text, _values(DatasetRole), "pretraining")
            datasets.append((resolve_ref(r.client, ref), role))
        if args.model_card is not None:  # Hugging Face lineage in (client/cli/hf_cmds.py)
            card_parents, card_meta = hf_cmds.card_parents(r.client, args)
            parents += card_parents
            meta.update(card_meta)
        fields: dict[str, Any] = dict(model=args.name, step=args.step, run=args.run, parents=parents,
                                      datasets=datasets, metadata=meta)
        if args.format is not None:
            fields["format"] = args.format
        if args.config_digest:
            fields["config"] = Digest.parse(args.config_digest)
        reg = r.register_model(args.path, fingerprint=args.fingerprint, **fields)
    if args.fingerprint_out is not None and reg.fingerprint is not None:
        args.fingerprint_out.write_bytes(reg.fingerprint)
    got, fc = reg.registered, reg.commitment
    if args.json:
        print_json({"id": got.id.hex(), "index": got.index, "duplicate": got.duplicate,
                    "kind": f"checkpoint {args.name} step {args.step}",
                    "fingerprint": None if fc is None else {"digest": f"blake3:{fc.digest.hex()}", "mode": fc.mode}})
        return 0
    _report(args, f"checkpoint {args.name} step {args.step}", got)
    if fc is not None:
        print(f"fingerprint {fc.mode}: blake3:{fc.digest.hex()}")
        if not fc.published and args.fingerprint_out is None:
            print("keep the fingerprint to reveal it: `provenance fingerprint PATH` rebuilds it, or pass "
                  "--fingerprint-out next time")
    return 0


def _attest(args: argparse.Namespace) -> int:
    claim = Claim.parse(args.claim)
    evidence = Digest.parse(args.evidence) if args.evidence else None
    with _registrar(args) as r:
        subject = resolve_ref(r.client, args.subject)
        if claim.object_is_record:
            obj = resolve_ref(r.client, args.object)
        else:
            obj = Digest.parse(args.object if ":" in args.object else "blake3:" + args.object).value
        got = r.attest(claim.value, subject, obj, evidence=evidence, summary=args.summary)
        return _report(args, f"attestation ({claim.value})", got)


def _dispute(args: argparse.Namespace) -> int:
    evidence = Digest.parse(args.evidence) if args.evidence else None
    with _registrar(args) as r:
        got = r.dispute(resolve_ref(r.client, args.target), args.reason, evidence=evidence)
        return _report(args, "dispute", got)
