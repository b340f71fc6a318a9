"""OpenSSF Model Signing in: ``register oms`` and ``hash --verify STATEMENT PATH`` (docs/manifest.md, "OMS in").

    provenance register oms BUNDLE --checkpoint REF [--oms-key PEM] [--model PATH] --key KEY
    provenance hash --verify STATEMENT PATH [--oms-key PEM]

Thin: read files, call :mod:`client.core.manifest.oms_in` / ``oms_verify`` and
:mod:`client.core.records.oms_claim`, print.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from client.errors import InvalidInputError


def read_bounded(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` if at most ``limit``; InvalidInputError (naming ``what``) otherwise."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise InvalidInputError(f"{what} {str(path)!r} is {size} bytes, more than {limit}")
            return f.read(size)
    except OSError as err:
        raise InvalidInputError(f"cannot read {what} {str(path)!r}: {err.strerror}") from err


def oms_document(path: str) -> bytes | None:
    """The bytes of ``path`` when it is an OMS document (else None: a manifest, for the caller to read)."""
    from client.core.manifest.oms_in import MAX_DOCUMENT, looks_like_oms

    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError as err:
        raise InvalidInputError(f"cannot read {path!r}: {err.strerror}") from err
    return read_bounded(path, MAX_DOCUMENT, "OMS statement") if looks_like_oms(head) else None


def add_register_parser(rsub: Any, add_common: Any) -> None:
    p = rsub.add_parser("oms", help="record an OpenSSF Model Signing bundle as a signed attestation of a checkpoint")
    p.add_argument("bundle", type=Path, help="the OMS signature (sigstore bundle or DSSE envelope JSON)")
    p.add_argument("--checkpoint", "--subject", dest="checkpoint", required=True, metavar="REF",
                   help="the checkpoint it signs: id, @INDEX or NAME@VERSION")
    p.add_argument("--oms-key", type=Path, default=None, metavar="PEM",
                   help="the OMS signer's public key (needed unless the bundle holds a certificate)")
    p.add_argument("--model", type=Path, default=None, metavar="PATH",
                   help="the model files: needed for a SHA-256 statement (re-hashed with SHA-256 and BLAKE3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="hashing threads (with --model)")
    add_common(p, key=True)
    p.set_defaults(func=run_register)


def _key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    from client.core.manifest.oms_verify import load_public_key
    from client.errors import FormatError

    try:
        return load_public_key(read_bounded(path, 64 * 1024, "OMS public key"))[1]
    except FormatError as err:
        raise InvalidInputError(f"--oms-key {str(path)!r}: {err}") from err


def _check_files(stmt: Any, manifest: Any, manifest_digest: bytes, model: Path | None, threads: int) -> list[Any]:
    """The differences between the statement and the checkpoint: its manifest's BLAKE3 digests, or for a
    SHA-256 statement the files at ``model`` (first checked to be the manifest's files by BLAKE3)."""
    from client.core.manifest.oms_verify import compare_digests, manifest_files

    if stmt.hash_type == "blake3":
        return compare_digests(stmt, manifest_files(manifest))
    if model is None:
        raise InvalidInputError("a SHA-256 OMS statement can be checked only against the files: give --model PATH "
                                "(the registry holds BLAKE3 digests only)")
    from client.hashing.oms_files import file_digests

    follow = stmt.allow_symlinks
    drift = compare_digests(_as_blake3(manifest_files(manifest)), file_digests(str(model), "blake3",
                                                                              follow_symlinks=follow, threads=threads))
    if drift:
        raise InvalidInputError(f"--model {str(model)!r} is not the checkpoint's files (manifest blake3:"
                                f"{manifest_digest.hex()}): {'; '.join(str(d) for d in drift[:5])}")
    return compare_digests(stmt, file_digests(str(model), "sha256", follow_symlinks=stmt.allow_symlinks,
                                              threads=threads))


def _as_blake3(files: dict[str, bytes]) -> Any:
    """The checkpoint's files as a BLAKE3 statement-like value, to list how local files differ from them."""
    from client.core.manifest.oms_in import OmsResource, OmsStatement

    res = tuple(OmsResource(p, "blake3", d) for p, d in sorted(files.items()))
    return OmsStatement("", b"", "blake3", False, (), res)


def run_register(args: argparse.Namespace) -> int:
    from client.cli._registry_common import print_json, resolve_ref
    from client.cli.registry_cmds import _registrar, _report
    from client.core.manifest import codec
    from client.core.manifest.oms_in import parse_document
    from client.core.records import Attestation, Claim, Digest, DigestAlgorithm, ModelCheckpoint, OmsAttachment
    from client.core.records.attachment import MAX_OMS_DOCUMENT
    from client.core.records.model import MAX_TEXT
    from client.core.records.oms_claim import check_oms_attestation

    data = read_bounded(args.bundle, MAX_OMS_DOCUMENT, "OMS bundle")
    doc = parse_document(data)
    if not doc.signed:
        raise InvalidInputError(f"{str(args.bundle)!r} is a plain statement: only a signed OMS bundle is recorded")
    key = _key(args.oms_key)
    with _registrar(args) as r:
        subject = resolve_ref(r.client, args.checkpoint)
        cp = r.client.by_id(subject).signed.record.statement
        if not isinstance(cp, ModelCheckpoint):
            raise InvalidInputError(f"{args.checkpoint!r} is a {cp.KIND.label} record, not a checkpoint")
        manifest = codec.decode(r.client.manifest(cp.manifest))
        if codec.manifest_digest(manifest) != cp.manifest:
            raise InvalidInputError("the registry served another manifest than the checkpoint names")
        diffs = _check_files(doc.statement, manifest, cp.manifest, args.model, args.threads)
        if diffs:
            for d in diffs:
                print(d, file=sys.stderr)
            raise InvalidInputError(f"the OMS statement does not match checkpoint {args.checkpoint!r}: "
                                    f"{len(diffs)} differences")
        att = Attestation(Claim.OMS_SIGNATURE, subject, doc.statement.root,
                          Digest(DigestAlgorithm.SHA256, hashlib.sha256(data).digest()), "",
                          OmsAttachment(data, key or b""))
        check = check_oms_attestation(att)
        att = Attestation(att.claim, att.subject, att.object, att.evidence, check.summary()[:MAX_TEXT], att.oms)
        got = r.submit(r.sign(att))
    if args.json:
        print_json({"id": got.id.hex(), "index": got.index, "duplicate": got.duplicate, "kind": "attestation",
                    "claim": Claim.OMS_SIGNATURE.value, "oms_model_digest": f"sha256:{doc.statement.root.hex()}",
                    "signer": check.signer.describe()})
        return 0
    _report(args, "attestation (oms-signature)", got)
    print(f"  {check.summary()}")
    return 0


def verify_files(args: argparse.Namespace, data: bytes) -> int:
    """``hash --verify`` with an OMS statement: every file's digest, and the signature when a key is at hand."""
    from client.core.manifest.oms_in import parse_document
    from client.core.manifest.oms_verify import compare_digests, verify_signature
    from client.hashing.oms_files import file_digests

    doc = parse_document(data)
    stmt = doc.statement
    signer = None
    key = _key(getattr(args, "oms_key", None))
    if doc.signed and (key is not None or doc.certificates):
        signer = verify_signature(doc, key)
    actual = file_digests(args.path, stmt.hash_type, follow_symlinks=stmt.allow_symlinks, threads=args.threads)
    inside = os.path.relpath(os.path.realpath(args.verify), os.path.realpath(args.path))
    if os.path.isdir(args.path) and not inside.startswith(".."):  # a signature kept in the model folder
        actual.pop(inside.replace(os.sep, "/"), None)                # is not a model file (as model-signing's CLI)
    diffs = compare_digests(stmt, actual)
    sig = ("signature verified: " + signer.describe() if signer is not None else
           "signature not checked (give --oms-key PEM)" if doc.signed else "unsigned statement")
    if args.json:
        sys.stdout.write(json.dumps({"ok": not diffs, "differences": [d.to_json() for d in diffs],
                                     "algorithm": stmt.hash_type, "oms_model_digest": f"sha256:{stmt.root.hex()}",
                                     "signature": None if signer is None else signer.describe()}) + "\n")
    elif diffs:
        for d in diffs:
            print(d)
        print(f"FAILED: {len(diffs)} differences in {len({d.path for d in diffs})} paths", file=sys.stderr)
    else:
        print(f"OK: {len(stmt.resources)} files match OMS statement sha256:{stmt.root.hex()} ({stmt.hash_type}); {sig}")
    return 1 if diffs else 0
