"""``provenance hash``: manifests of model folders and datasets (docs/manifest.md).

    provenance hash PATH                       b3sum-style lines, then the manifest digest
    provenance hash PATH --json                the manifest as JSON
    provenance hash PATH --format oms          an OpenSSF Model Signing v1.0 in-toto statement
    provenance hash PATH --output FILE         also write the canonical manifest bytes to FILE
    provenance hash --verify MANIFEST PATH     re-hash and list every difference (exit 1 if any)
    provenance hash --verify OMS PATH          the same against an OMS statement or bundle (client/cli/oms_cmds.py)

Thin: parse flags, call :mod:`client.hashing` and :mod:`client.core.manifest`, print.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from client.errors import FormatError, InvalidInputError


def register(sub: Any) -> None:
    p = sub.add_parser("hash", help="hash a file or folder into a BLAKE3 manifest (files, chunks, tensors)")
    p.add_argument("path", metavar="PATH", help="a file or a directory")
    p.add_argument("--json", action="store_true", help="print the manifest (or the differences) as JSON")
    p.add_argument("--format", choices=("manifest", "oms"), default="manifest", help="output format")
    p.add_argument("--verify", metavar="MANIFEST",
                   help="compare PATH against a manifest (JSON or canonical) or an OMS statement or bundle")
    p.add_argument("--oms-key", metavar="PEM", default=None,
                   help="with --verify OMS-BUNDLE: the OMS signer's public key, to check the signature too")
    p.add_argument("--output", metavar="FILE", help="write the canonical manifest bytes to FILE")
    p.add_argument("--chunk-size", type=int, default=None, help="chunk size in bytes (default 4 MiB)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="worker threads")
    p.add_argument("--allow-symlinks", action="store_true", help="record symlinks as links instead of refusing")
    p.add_argument("--no-tensors", action="store_true", help="do not parse tensor formats (files and chunks only)")
    p.add_argument("--no-progress", action="store_true", help="never draw a progress bar")
    p.set_defaults(func=run)


def _load_manifest(path: str) -> Any:
    from client.core import jsonlimits
    from client.core.manifest import codec, jsonform

    try:
        with open(path, "rb") as f:
            # read(n) sets aside n bytes up front: ask for the file's size, not the 8 GiB bound (make fuzz)
            size = os.fstat(f.fileno()).st_size
            if size > codec.MAX_ENCODED_SIZE:
                raise FormatError(f"manifest {path!r} is {size} bytes, more than {codec.MAX_ENCODED_SIZE}")
            data = f.read(size)
    except OSError as e:
        raise InvalidInputError(f"cannot read manifest {path!r}: {e.strerror}") from e
    if data.startswith(codec.MAGIC):
        return codec.decode(data)
    try:
        obj = jsonlimits.loads(data, "it")
    except FormatError as e:
        raise FormatError(f"{path!r} is neither a canonical manifest nor manifest JSON: {e}") from e
    return jsonform.from_json(obj)


def run(args: argparse.Namespace) -> int:
    from client.core.manifest import codec, oms
    from client.core.manifest.diff import compare
    from client.core.manifest.model import DEFAULT_CHUNK_SIZE, FORMAT_VERSION
    from client.hashing import HashConfig, hash_path
    from client.hashing.progress import ProgressBar

    if args.verify:
        from client.cli.oms_cmds import oms_document, verify_files

        oms_data = oms_document(args.verify)
        if oms_data is not None:
            return verify_files(args, oms_data)
    expected = _load_manifest(args.verify) if args.verify else None
    chunk_size = args.chunk_size or (expected.chunk_size if expected is not None else DEFAULT_CHUNK_SIZE)
    if expected is not None and chunk_size != expected.chunk_size:
        raise InvalidInputError(f"--chunk-size {chunk_size} differs from the manifest's {expected.chunk_size}")
    config = HashConfig(
        chunk_size=chunk_size,
        threads=args.threads,
        processes=args.threads if args.threads > 1 else 0,
        tensors=not args.no_tensors,
        allow_symlinks=args.allow_symlinks,
        version=expected.version if expected is not None else FORMAT_VERSION,  # verify in the manifest's version
    )
    total = None
    if os.path.isfile(args.path):
        total = os.path.getsize(args.path)
    skipped: list[str] = []
    bar = ProgressBar(sys.stderr, total_bytes=total) if not args.no_progress else None
    progress = bar if bar is not None else _none
    try:
        if expected is None and args.format == "manifest":
            return _stream(args, config, progress)
        manifest = hash_path(args.path, config, progress=progress, on_skip=skipped.append)
    finally:
        if bar is not None:
            bar.close()

    if expected is not None:
        diffs = compare(expected, manifest)
        if args.json:
            sys.stdout.write(json.dumps({"ok": not diffs, "differences": [d.to_json() for d in diffs]}) + "\n")
        elif diffs:
            for d in diffs:
                print(d)
            print(f"FAILED: {len(diffs)} differences in {len({d.path for d in diffs})} paths", file=sys.stderr)
        else:
            print(f"OK: {len(manifest.entries)} entries match manifest {codec.manifest_digest(expected).hex()}")
        return 1 if diffs else 0

    if args.output:
        _write_atomically(args.output, [codec.encode(manifest)])
    name = os.path.basename(os.path.normpath(os.path.abspath(args.path)))
    stmt = oms.statement(manifest, name, single_file=os.path.isfile(args.path), skipped=skipped)
    sys.stdout.write(json.dumps(stmt, indent=2) + "\n")
    return 0


def _stream(args: argparse.Namespace, config: Any, progress: Any) -> int:
    """Default and --json output, streamed: memory stays bounded however many files the tree holds."""
    from client.core.manifest import codec, jsonform
    from client.core.manifest.model import FileEntry
    from client.hashing import iter_entries

    enc = codec.StreamEncoder(config.chunk_size, config.version)
    out = sys.stdout
    tmp = f"{args.output}.partial" if args.output else None
    raw = open(tmp, "wb") if tmp else None  # noqa: SIM115 - closed below, renamed on success
    files = size = 0
    symlinks: list[dict[str, str]] = []
    try:
        if raw:
            raw.write(enc.header)
        if args.json:
            out.write(
                f'{{"format": "{jsonform.JSON_FORMAT}", "version": {enc.version}, "algorithm": "blake3", '
                f'"chunk_size": {config.chunk_size}, "files": ['
            )
        for e in iter_entries(args.path, config, progress=progress):
            piece = enc.add(e)
            if raw:
                raw.write(piece)
            if isinstance(e, FileEntry):
                files, size = files + 1, size + e.size
                if args.json:
                    out.write((", " if files > 1 else "") + json.dumps(jsonform.file_json(e)))
                else:
                    out.write(f"{e.blake3.hex()}  {e.path}\n")
            elif args.json:
                symlinks.append({"path": e.path, "target": e.target})
            else:
                out.write(f"{'symlink':<64}  {e.path} -> {e.target}\n")
        trailer, digest = enc.finish()
        if raw and tmp:
            raw.write(trailer)
            raw.close()
            os.replace(tmp, args.output)
            raw = None
    finally:
        if raw and tmp:
            raw.close()
            os.unlink(tmp)
    if args.json:
        out.write(f'], "symlinks": {json.dumps(symlinks)}, "digest": "{digest.hex()}"}}\n')
    else:
        out.write(f"manifest blake3:{digest.hex()}  ({files} files, {size} bytes, chunk size {config.chunk_size})\n")
    return 0


def _write_atomically(path: str, pieces: list[bytes]) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        for p in pieces:
            f.write(p)
    os.replace(tmp, path)


def _none(_b: int, _f: int) -> None:
    return None
